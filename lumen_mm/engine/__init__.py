"""Training machinery: trainable-only checkpoints, distributed set-up,
subnormal floats flushed and bfloat16 autocast on the CPU."""
from .checkpoint import (TrainableCheckpointHook, fill_frozen,
                         filter_trainable, load_trainable_checkpoint,
                         trainable_keys)
from .cpu_amp import CpuAmpOptimWrapper
from .denormal import FlushDenormalHook, flushes_denormals
from .dist import LumenFSDPStrategy, fsdp_auto_wrap_policy

__all__ = [
    'CpuAmpOptimWrapper', 'FlushDenormalHook', 'LumenFSDPStrategy',
    'TrainableCheckpointHook', 'fill_frozen', 'filter_trainable',
    'flushes_denormals', 'fsdp_auto_wrap_policy',
    'load_trainable_checkpoint', 'trainable_keys'
]
