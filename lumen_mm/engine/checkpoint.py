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
import glob
import hashlib
import json
import os
import os.path as osp
import re
from typing import Any, Dict, List, Optional

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from lumen_mm.utils.safe_load import take_mmengine_read

TRAINABLE_ONLY = 'trainable_only'  # key in checkpoint['meta']
TOKENIZER_FINGERPRINT = 'tokenizer_fingerprint'  # key in checkpoint['meta']
# key in checkpoint['meta']: name prefixes whose trained entries a
# trainable-only checkpoint leaves to the model's pretrained files (an export
# keeps the merged LLaVA apart from the heads)
FROM_PRETRAINED = 'from_pretrained'
# Config key (`--cfg-options strict_load=False`): load a checkpoint that does
# not fit the model (keys, tokenizer) with a warning instead of an error.
STRICT_LOAD = 'strict_load'
OPT_OUT = (f'To load it anyway (what does not fit keeps its initial '
           f'values), set `{STRICT_LOAD}=False` in the config or pass '
           f'`--cfg-options {STRICT_LOAD}=False`.')


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def find_tokenizer(model: nn.Module) -> Optional[Any]:
    """The Hugging Face tokenizer a module of ``model`` holds (Lumen's
    ``backbone.tokenizer``), or ``None``."""
    for module in _unwrap(model).modules():
        tokenizer = getattr(module, 'tokenizer', None)
        if hasattr(tokenizer, 'get_vocab'):
            return tokenizer
    return None


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """``'<size>-<sha256[:16]>'`` of the token -> id map (added tokens
    included) and the special tokens: same size, moved ids, other hash."""
    special = {
        str(k): str(v)
        for k, v in tokenizer.special_tokens_map.items()
    }
    vocab = tokenizer.get_vocab()
    payload = json.dumps([sorted(vocab.items()), sorted(special.items())],
                         ensure_ascii=False)
    digest = hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]
    return f'{len(vocab)}-{digest}'


def add_tokenizer_fingerprint(model: nn.Module, meta: dict) -> None:
    """Record the fingerprint of ``model``'s tokenizer in ``meta``."""
    tokenizer = find_tokenizer(model)
    if tokenizer is not None:
        meta[TOKENIZER_FINGERPRINT] = tokenizer_fingerprint(tokenizer)


def checkpoint_mismatch(model: nn.Module,
                        checkpoint: dict,
                        revise_keys=((r'^module\.', ''), )) -> List[str]:
    """How ``checkpoint`` does not fit ``model``, in words (empty: it fits):
    missing and unexpected keys, shape mismatches, another tokenizer."""
    problems = []
    state = checkpoint.get('state_dict', checkpoint)
    revised = {}
    for name, value in state.items():
        for pattern, replacement in revise_keys:
            name = re.sub(pattern, replacement, name)
        revised[name] = value
    own = _unwrap(model).state_dict()
    expected = set(own)
    meta = checkpoint.get('meta') or {}
    if meta.get(TRAINABLE_ONLY):  # (before TrainableCheckpointHook fills it)
        expected = _trained_expected(model, own, meta)
    missing = sorted(expected - set(revised))
    unexpected = sorted(set(revised) - set(own))
    shapes = [
        f'{k}: checkpoint {tuple(revised[k].shape)}, model '
        f'{tuple(own[k].shape)}' for k in sorted(set(own) & set(revised))
        if hasattr(revised[k], 'shape') and revised[k].shape != own[k].shape
    ]
    if missing:
        problems.append(f'{len(missing)} keys of the model are missing '
                        f'(e.g. {missing[:3]})')
    if unexpected:
        problems.append(f'{len(unexpected)} keys are not in the model '
                        f'(e.g. {unexpected[:3]})')
    if shapes:
        problems.append(f'{len(shapes)} shapes differ (e.g. {shapes[:2]})')
    saved = (checkpoint.get('meta') or {}).get(TOKENIZER_FINGERPRINT)
    tokenizer = find_tokenizer(model)
    if saved is not None and tokenizer is not None:
        current = tokenizer_fingerprint(tokenizer)
        if current != saved:
            problems.append(
                f'it was trained with tokenizer {saved} but the model has '
                f'tokenizer {current} (size-hash of the token->id map: token '
                'ids differ, so every embedding row would mean another '
                'token). Point the config\'s `tokenizer` (or `pretrained`) '
                'at the tokenizer the checkpoint was trained with')
    return problems


def _trained_expected(model: nn.Module, own, meta: dict) -> set:
    """Names a trainable-only checkpoint must hold: the trained entries of
    the state dict (``trainable_keys`` also names non-persistent buffers)
    but those under ``meta[FROM_PRETRAINED]`` prefixes."""
    prefixes = tuple(meta.get(FROM_PRETRAINED) or ())
    return {
        k for k in trainable_keys(model) & set(own)
        if not (prefixes and k.startswith(prefixes))
    }


def check_checkpoint_fits(model: nn.Module,
                          checkpoint: dict,
                          filename: str,
                          strict: bool = True,
                          logger: Any = None,
                          revise_keys=((r'^module\.', ''), ),
                          opt_out: str = OPT_OUT) -> None:
    """Raise :class:`CheckpointMismatchError` (``strict``) or warn when
    ``checkpoint`` does not fit ``model`` (:func:`checkpoint_mismatch`)."""
    problems = checkpoint_mismatch(model, checkpoint, revise_keys)
    if not problems:
        return
    message = (f'Checkpoint {filename!r} does not fit this model: '
               + '; '.join(problems) + '. Was it saved from another config? '
               'Pass the checkpoint of this config.')
    if strict:
        raise CheckpointMismatchError(f'{message} {opt_out}')
    from mmengine.logging import print_log
    print_log(f'{message} Loading it anyway ({STRICT_LOAD}=False).',
              logger=logger or 'current', level=30)


def check_mmengine_load(model: nn.Module, state_dict: dict) -> None:
    """Check the state dict that mmengine's ``load_state_dict`` hands
    ``model`` outside a Runner (mmdet's ``init_detector`` and
    ``DetInferencer``): mmengine loads it non-strictly, with one warning, and
    the model ran half random. A Runner's load was checked (and its
    ``strict_load`` honoured) by :class:`LumenCheckpointHook` already."""
    read = take_mmengine_read(state_dict)
    if read is not None:
        check_checkpoint_fits(
            model, dict(state_dict=state_dict, meta=read['meta']),
            read['filename'],
            opt_out='Outside the tools there is no opt-out: '
            'tools/test.py takes `--cfg-options strict_load=False`.')


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
                state_dict: Dict[str, Tensor],
                strict: bool = True,
                meta: Optional[dict] = None) -> Dict[str, Tensor]:
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
    lacking = sorted(
        _trained_expected(model, own, meta or {}) - set(state_dict))
    if lacking:
        message = (
            f'The trainable-only checkpoint lacks {len(lacking)} trained '
            f'entries of this model (e.g. {lacking[:3]}): they would stay '
            'randomly initialised. It was saved from a config that trains '
            'less (or is incomplete): pass the checkpoint of this config.')
        if strict:
            raise CheckpointMismatchError(f'{message} {OPT_OUT}')
        from mmengine.logging import print_log
        print_log(message, logger='current', level=30)
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
                              map_location: str = 'cpu',
                              strict: bool = True) -> dict:
    """Load a (possibly trainable-only) mmengine checkpoint onto ``model``.

    ``model`` must have been built from the same config, so that its frozen
    part holds the pretrained weights. Returns the checkpoint. A checkpoint
    that does not fit (keys, shapes, tokenizer) raises
    :class:`CheckpointMismatchError`; ``strict=False`` loads what fits.
    """
    from lumen_mm.utils import load_checkpoint
    checkpoint = load_checkpoint(filename, map_location=map_location)
    state = _strip_module(checkpoint.get('state_dict', checkpoint))
    if (checkpoint.get('meta') or {}).get(TRAINABLE_ONLY):
        state = fill_frozen(model, state, strict=strict,
                            meta=checkpoint['meta'])
    full = dict(checkpoint, state_dict=state)
    check_checkpoint_fits(model, full, filename, strict=strict)
    from mmengine.runner.checkpoint import load_state_dict
    load_state_dict(_unwrap(model), state, strict=False)  # skips bad shapes
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
            runner.model, _strip_module(checkpoint['state_dict']),
            strict=runner.cfg.get(STRICT_LOAD, True),
            meta=checkpoint['meta'])


def commit_file(tmp_path: str, path: str) -> None:
    """Move the complete file ``tmp_path`` to ``path`` atomically: its
    bytes reach the disk first, then the rename, then the directory entry.
    A reader (or a run killed at any point) sees the old file or the new
    one, never a part."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_path, path)
    directory = os.open(osp.dirname(osp.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file (commit_file)."""
    tmp_path = temporary_name(path)
    with open(tmp_path, 'w') as f:
        f.write(text)
    commit_file(tmp_path, path)


def temporary_name(path: str) -> str:
    """Where a save of ``path`` is written before it is complete: a hidden
    file in the same directory (``os.replace`` works within a file
    system)."""
    return osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp')


_STEP = re.compile(r'(?:iter|epoch)_(\d+)\.pth$')


def find_resumable_checkpoint(work_dir: str, logger: Any = None
                              ) -> Optional[str]:
    """The newest intact checkpoint of ``work_dir``, for ``--resume``.

    mmengine resumes from the path written in ``work_dir/last_checkpoint``;
    an empty or stale file (the path of a deleted or truncated checkpoint)
    stops the run although intact checkpoints are there. This takes the
    checkpoint ``last_checkpoint`` names if it is intact, else the
    ``iter_<N>.pth`` / ``epoch_<N>.pth`` of highest N that is (warning which
    one), and ``None`` when the directory holds no checkpoint.

    Raises:
        CorruptCheckpointError: checkpoints are there, but none is intact.
    """
    from mmengine.logging import print_log

    from lumen_mm.utils.safe_load import (CorruptCheckpointError,
                                          verify_checkpoint_file)
    named = None
    save_file = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(save_file):
        with open(save_file) as f:
            named = f.read().strip() or None
    found = [
        path for path in glob.glob(osp.join(work_dir, '*.pth'))
        if _STEP.search(path)
    ]
    found.sort(key=lambda p: int(_STEP.search(p).group(1)), reverse=True)
    candidates = ([named] if named else []) + [
        p for p in found if not named or osp.abspath(p) != osp.abspath(named)
    ]
    problems = []
    for path in candidates:
        if not osp.isfile(path):
            problems.append(f'{path}: missing')
            continue
        try:
            verify_checkpoint_file(path)
        except CorruptCheckpointError as e:
            problems.append(str(e).split(' Use another checkpoint')[0])
            continue
        if path != named:
            why = (f'{save_file} names {named!r}' if named else
                   f'{save_file} is empty or absent')
            print_log(
                f'Resuming from {path}, the newest intact checkpoint: {why} '
                f'({"; ".join(problems) or "not usable"}).',
                logger=logger or 'current', level=30)
        return path
    if problems:
        raise CorruptCheckpointError(
            f'Cannot resume in {work_dir!r}: no checkpoint there is intact '
            f'({"; ".join(problems)}). Start again without --resume, or '
            '--resume PATH with an intact checkpoint from elsewhere.')
    return None


@HOOKS.register_module()
class LumenCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` whose saves never leave the run
    without a usable checkpoint.

    mmengine 0.10.7's ``_save_checkpoint_with_step`` deletes the oldest kept
    checkpoint before it writes the new one, and writes ``last_checkpoint``
    in place: with ``max_keep_ckpts=1``, a run killed during a save had no
    checkpoint left. Here the new checkpoint is written completely first
    (under a temporary name, then renamed), then ``last_checkpoint`` is
    replaced atomically, and only then is the old checkpoint deleted. What
    the message hub records (``keep_ckpt_ids``, ``last_ckpt``) is what
    mmengine records, so resuming behaves as with mmengine's hook.

    Saves are atomic: ``runner.save_checkpoint`` writes a temporary name in
    the same directory, then :func:`commit_file` fsyncs and renames it
    (mmengine writes the final name in place, so a killed save left a
    partial file there); a partial save left by a killed run is removed
    when training starts. ``meta`` records the tokenizer's fingerprint.
    mmengine's ``save_best`` checkpoints are saved as mmengine saves them.

    Loading (``load_from``, ``--resume``, ``tools/test.py``, mmdet's tools)
    checks that the checkpoint fits the model (:func:`checkpoint_mismatch`:
    keys, shapes, tokenizer): mmengine loads non-strictly, with one warning,
    and evaluated a half-random model. ``strict_load=False`` in the config
    loads it with a warning. Under ``FlexibleRunner`` (FSDP, DeepSpeed) the
    model is sharded and only the strategy's own checks apply.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        add_tokenizer_fingerprint(runner.model,
                                  checkpoint.setdefault('meta', {}))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.runner import Runner
        take_mmengine_read()  # checked here, with the config's strict_load
        if not isinstance(runner, Runner):  # FlexibleRunner: sharded model
            return
        filename = (getattr(runner, 'checkpoint_file', None)
                    or runner._load_from or 'the checkpoint')
        check_checkpoint_fits(
            runner.model, checkpoint, filename,
            strict=runner.cfg.get(STRICT_LOAD, True), logger=runner.logger)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and osp.isdir(self.out_dir):
            # the partial save of a run killed while saving
            for path in glob.glob(osp.join(self.out_dir, '.*.pth.tmp')):
                os.remove(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine's method with the removal moved after the save
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        from mmengine.fileio.backends import LocalBackend
        from mmengine.runner import Runner
        atomic = (isinstance(self.file_backend, LocalBackend)
                  and isinstance(runner, Runner))  # not DeepSpeed's dirs
        runner.save_checkpoint(
            self.out_dir,
            temporary_name(ckpt_filename) if atomic else ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        if atomic:
            commit_file(temporary_name(self.last_ckpt), self.last_ckpt)
        write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'),
                          self.last_ckpt)
        if outdated is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed's directories
                self.file_backend.rmtree(path)
