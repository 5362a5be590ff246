"""Datasets and data pipelines of lumen_mm."""
from .adapters import CocoFormatDataset, FSC147Dataset, LumenVOCDataset
from .counting import LumenCountingDataset
from .loading import LumenLoadImageFromFile
from .multitask import LumenConcatDataset, LumenMultiTaskDataset
from .prompts import (LUMEN_META_KEYS,
                      LumenCountPrompts, LumenDetPrompts, LumenGroundPrompts,
                      LumenPosePrompts, LumenVQAPrompts)
from .refcoco import LumenRefCocoDataset
from .referring_flip import RandomFlipReferring
from .vqa import LumenVQADataset

__all__ = [
    'LumenMultiTaskDataset', 'LumenConcatDataset', 'LumenDetPrompts',
    'LumenGroundPrompts', 'LumenCountPrompts', 'LumenPosePrompts',
    'LumenVQAPrompts', 'LumenCountingDataset', 'LumenVQADataset',
    'LumenRefCocoDataset', 'LUMEN_META_KEYS',
    'LumenLoadImageFromFile', 'RandomFlipReferring',
    'CocoFormatDataset', 'FSC147Dataset', 'LumenVOCDataset'
]
