"""Helpers shared by lumen_mm's tools and modules."""
from .safe_load import (CheckpointFormatError, CorruptCheckpointError,
                        UnsafeCheckpointError, UnsafeDataFileError,
                        load_checkpoint, load_plain_pickle,
                        mmengine_safe_globals, verify_checkpoint_file)

__all__ = [
    'CheckpointFormatError', 'CorruptCheckpointError',
    'UnsafeCheckpointError', 'UnsafeDataFileError', 'load_checkpoint',
    'load_plain_pickle', 'mmengine_safe_globals', 'verify_checkpoint_file'
]
