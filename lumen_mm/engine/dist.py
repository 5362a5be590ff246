"""Distributed training on machines without a GPU; FSDP's strategy and wrap
policy."""
from functools import partial
from typing import Sequence

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.config import Config
from mmengine.registry import STRATEGIES
from torch import nn

# Module classes FSDP never makes units of their own: peft's trainable-tokens
# layer merges the new token rows into its embedding's weight instead of
# calling the embedding, so the two must be gathered together.
FSDP_NO_WRAP_MODULES = ('Embedding', )


def fsdp_auto_wrap_policy(module: nn.Module,
                          recurse: bool,
                          nonwrapped_numel: int,
                          min_num_params: int = int(1e7),
                          no_wrap_modules: Sequence[str] = FSDP_NO_WRAP_MODULES
                          ) -> bool:
    """torch's ``size_based_auto_wrap_policy`` that does not wrap modules
    whose class is named in ``no_wrap_modules`` (nor, as torch's, module
    lists and dicts): their parameters join the smallest enclosing unit that
    reaches ``min_num_params``.

    The size-based policy alone wraps the 7B model's 131M-parameter token
    embedding apart from peft's trainable-tokens layer around it, which then
    reads the local shard of its weight (``index_copy_(): ... dimensionality
    must match``).
    """
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy
    excluded = set(size_based_auto_wrap_policy.EXCLUDE_WRAP_MODULES)
    if type(module).__name__ in no_wrap_modules:
        excluded.add(type(module))
    return size_based_auto_wrap_policy(
        module, recurse, nonwrapped_numel, min_num_params=min_num_params,
        exclude_wrap_modules=excluded)


@STRATEGIES.register_module()
class LumenFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` with three fixes (mmengine 0.10, torch
    2.x).

    * Without CUDA the model is sharded on the CPU (gloo): mmengine passes
      the local rank as FSDP's ``device_id``, a GPU index ("Found no NVIDIA
      driver on your system").
    * ``clip_grad=dict(max_norm=...)`` clips by the norm of the whole
      gradient (FSDP's ``clip_grad_norm_``): mmengine's ``OptimWrapper``
      clips each rank's shard by the shard's own norm, so every rank scaled
      its part differently and logged a different ``grad_norm``.
    * Resuming loads the optimizer state: mmengine calls
      ``FSDP.optim_state_dict_to_load(state_dict, model, optim)``, the
      argument order of torch 2.0; torch 2.1 and later take ``(model, optim,
      state_dict)`` and fail with ``TypeError: unhashable type: 'dict'``.
    """

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        if not torch.cuda.is_available():
            self.model_wrapper = dict(self.model_wrapper or {},
                                      device_id='cpu')
        return super()._wrap_model(model)

    def build_optim_wrapper(self, optim_wrapper, model=None):
        optim_wrapper = super().build_optim_wrapper(optim_wrapper, model)
        clip = getattr(optim_wrapper, 'clip_func', None)
        if clip is torch.nn.utils.clip_grad_norm_:
            optim_wrapper.clip_func = partial(_fsdp_clip_grad_norm,
                                              model or self.model)
        return optim_wrapper

    def load_optim_state_dict(self, state_dict: dict) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        optimizer = self.optim_wrapper.optimizer
        self.optim_wrapper.load_state_dict(
            FSDP.optim_state_dict_to_load(self.model, optimizer, state_dict))


def _fsdp_clip_grad_norm(model: nn.Module, params, max_norm: float,
                         norm_type: float = 2.0, **kwargs) -> torch.Tensor:
    """``clip_grad_norm_`` over all ranks' shards (the same on every rank);
    ``params`` are the local shards mmengine passes in."""
    return model.clip_grad_norm_(max_norm, norm_type)


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` (``tools/dist_train.sh``) run DDP on CPUs.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, which fails
    without a GPU, and wraps the model in DDP with ``device_ids`` of a GPU.
    Without CUDA this initialises the process group with gloo first (mmengine
    then skips its own set-up) and asks for a CPU DDP wrapper. FSDP
    (``FlexibleRunner``) finds the group set up too, and
    :class:`LumenFSDPStrategy` puts its model on the CPU.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    if wrapper['type'] == 'MMDistributedDataParallel':
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
        wrapper['device_ids'] = None  # CPU modules
    cfg.model_wrapper_cfg = wrapper
