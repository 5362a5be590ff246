"""Datasets and data pipelines of lumen_mm."""
from .multitask import LumenMultiTaskDataset
from .prompts import LUMEN_META_KEYS, LumenDetPrompts, LumenGroundPrompts

__all__ = [
    'LumenMultiTaskDataset', 'LumenDetPrompts', 'LumenGroundPrompts',
    'LUMEN_META_KEYS'
]
