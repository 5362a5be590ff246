"""Distributed training on machines without a GPU."""
import torch
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` (``tools/dist_train.sh``) run DDP on CPUs.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, which fails
    without a GPU, and wraps the model in DDP with ``device_ids`` of a GPU.
    Without CUDA this initialises the process group with gloo first (mmengine
    then skips its own set-up) and asks for a CPU DDP wrapper.
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
