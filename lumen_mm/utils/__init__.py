"""Helpers shared by lumen_mm's tools and modules."""
from .safe_load import (UnsafeCheckpointError, load_checkpoint,
                        mmengine_safe_globals)

__all__ = ['UnsafeCheckpointError', 'load_checkpoint', 'mmengine_safe_globals']
