"""Training machinery: trainable-only checkpoints, distributed set-up."""
from .checkpoint import (TrainableCheckpointHook, fill_frozen,
                         filter_trainable, load_trainable_checkpoint,
                         trainable_keys)

__all__ = [
    'TrainableCheckpointHook', 'fill_frozen', 'filter_trainable',
    'load_trainable_checkpoint', 'trainable_keys'
]
