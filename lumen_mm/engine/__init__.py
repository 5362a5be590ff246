"""Training machinery: trainable-only checkpoints, checkpoints checked on
load and saved atomically, distributed set-up, subnormal floats flushed and
bfloat16 autocast on the CPU."""
from .checkpoint import (CheckpointMismatchError, LumenCheckpointHook,
                         TrainableCheckpointHook, fill_frozen,
                         filter_trainable, find_resumable_checkpoint,
                         load_trainable_checkpoint, tokenizer_fingerprint,
                         trainable_keys)
from .cpu_amp import CpuAmpOptimWrapper
from .denormal import FlushDenormalHook, flushes_denormals
from .dist import LumenFSDPStrategy, fsdp_auto_wrap_policy
from .runner import DieWithParent, LumenRunner

__all__ = [
    'CheckpointMismatchError', 'DieWithParent', 'LumenCheckpointHook',
    'LumenRunner', 'find_resumable_checkpoint', 'tokenizer_fingerprint',
    'CpuAmpOptimWrapper', 'FlushDenormalHook', 'LumenFSDPStrategy',
    'TrainableCheckpointHook', 'fill_frozen', 'filter_trainable',
    'flushes_denormals', 'fsdp_auto_wrap_policy',
    'load_trainable_checkpoint', 'trainable_keys'
]
