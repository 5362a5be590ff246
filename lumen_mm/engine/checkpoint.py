"""Training checkpoints that hold only what was trained.

Lumen trains LoRA on the language model, the rows of its new special tokens,
the dense aligner and the heads; CLIP, the projector and the 7B language
model stay as loaded from their pretrained files. Saving the whole model
every time would write ~14 GB per checkpoint, of which a few hundred MB
changed. :class:`TrainableCheckpointHook` keeps in ``state_dict`` the
parameters with ``requires_grad`` and the buffers of the modules that own
them, marks the checkpoint, and when a marked checkpoint is loaded
(``load_from``, ``--resume``, ``tools/test.py``) fills the rest in from the
model as built, whose frozen part came from its own pretrained files.
"""
from typing import Dict

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

TRAINABLE_ONLY = 'trainable_only'  # key in checkpoint['meta']


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _strip_module(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Names without the ``module.`` of a DDP-wrapped save."""
    return {k[7:] if k.startswith('module.') else k: v
            for k, v in state.items()}


# What FSDP (and its activation checkpointing) put into module names, absent
# from its full state dicts
_WRAPPER_NAMES = ('_fsdp_wrapped_module', '_checkpoint_wrapped_module')


def _clean_name(name: str) -> str:
    return '.'.join(part for part in name.split('.')
                    if part not in _WRAPPER_NAMES)


def trainable_keys(model: nn.Module) -> set:
    """State-dict names of trainable parameters and of the buffers of the
    modules that hold them (their running statistics change too).

    The names are those of the unwrapped model, also under FSDP, whose
    nested units add ``_fsdp_wrapped_module.`` to module names but not to
    the keys of its full state dicts."""
    model = _unwrap(model)
    keys = set()
    for prefix, module in model.named_modules():
        prefix = _clean_name(prefix)
        own = list(module.named_parameters(recurse=False))
        trained = [name for name, p in own if p.requires_grad]
        if not trained:
            continue
        dot = f'{prefix}.' if prefix else ''
        keys.update(dot + name for name in trained)
        keys.update(dot + name for name, _ in module.named_buffers(
            recurse=False))
    return keys


def filter_trainable(model: nn.Module,
                     state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The entries of ``state_dict`` that :func:`trainable_keys` names."""
    keys = trainable_keys(model)
    if not keys:
        raise ValueError(
            'The model has no trainable parameter: a trainable-only '
            'checkpoint would be empty. Remove TrainableCheckpointHook or '
            'unfreeze what should train.')
    kept = {k: v for k, v in state_dict.items() if k in keys}
    if state_dict and not kept:  # (FSDP's ranks but 0 save an empty one)
        raise KeyError(
            f'None of the {len(keys)} trainable names (e.g. '
            f'{sorted(keys)[:2]}) is a key of the state dict (e.g. '
            f'{sorted(state_dict)[:2]}): a model wrapper renamed them.')
    return kept


def fill_frozen(model: nn.Module,
                state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Complete a trainable-only ``state_dict`` with the model's own
    tensors, so that loading it is a full, strict load.

    Under FSDP the model's full state dict exists on rank 0 only (and would
    gather the whole model there): the names are checked, and the trained
    entries alone are returned; mmengine's ``FSDPStrategy`` loads them
    non-strictly into the sharded model, whose frozen part stays as built.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel
    if isinstance(model, FullyShardedDataParallel):
        _check_known(state_dict, {
            _clean_name(name)
            for name, _ in [*model.named_parameters(), *model.named_buffers()]
        })
        return dict(state_dict)
    own = _unwrap(model).state_dict()
    _check_known(state_dict, own)
    return {k: state_dict.get(k, v) for k, v in own.items()}


def _check_known(state_dict: Dict[str, Tensor], names) -> None:
    unknown = set(state_dict) - set(names)
    if unknown:
        raise KeyError(
            f'The checkpoint holds {len(unknown)} entries the model lacks, '
            f'e.g. {sorted(unknown)[:3]}: it was saved from a different '
            'model config (LoRA targets, heads, aligner?).')


def load_trainable_checkpoint(model: nn.Module,
                              filename: str,
                              map_location: str = 'cpu') -> dict:
    """Load a (possibly trainable-only) mmengine checkpoint onto ``model``.

    ``model`` must have been built from the same config, so that its frozen
    part holds the pretrained weights. Returns the checkpoint.
    """
    from lumen_mm.utils import load_checkpoint
    checkpoint = load_checkpoint(filename, map_location=map_location)
    state = _strip_module(checkpoint.get('state_dict', checkpoint))
    if checkpoint.get('meta', {}).get(TRAINABLE_ONLY):
        state = fill_frozen(model, state)
    _unwrap(model).load_state_dict(state, strict=True)
    return checkpoint


@HOOKS.register_module()
class TrainableCheckpointHook(Hook):
    """Save only the trained weights; load them back onto the base model.

    Add it to ``custom_hooks``; it works with mmengine's ``CheckpointHook``
    (which decides when to save) and with ``load_from``/``resume``. The
    optimizer, scheduler and message-hub states are kept as they are, so
    resuming continues exactly.

    Args:
        enabled: ``False`` saves full checkpoints (and still loads
            trainable-only ones).
    """

    priority = 'VERY_LOW'  # after hooks that add to the checkpoint

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.enabled:
            return
        checkpoint['state_dict'] = filter_trainable(runner.model,
                                                    checkpoint['state_dict'])
        checkpoint.setdefault('meta', {})[TRAINABLE_ONLY] = True

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Called by the Runner before the state dict goes into the model.
        if not checkpoint.get('meta', {}).get(TRAINABLE_ONLY):
            return
        checkpoint['state_dict'] = fill_frozen(
            runner.model, _strip_module(checkpoint['state_dict']))

