"""Datasets and data pipelines of lumen_mm."""
from .adapters import CocoFormatDataset, FSC147Dataset, LumenVOCDataset
from .counting import LumenCountingDataset
from .loading import LumenLoadImageFromFile, LumenResize
from .multitask import LumenConcatDataset, LumenMultiTaskDataset
from .packing import PackLumenInputs
from .prompts import (LumenCountPrompts, LumenDetPrompts, LumenGroundPrompts,
                      LumenPosePrompts, LumenVQAPrompts)
from .refcoco import LumenRefCocoDataset
from .referring_flip import RandomFlipReferring
from .sam_image import LumenSamImage
from .samplers import LumenMultiTaskSampler
from .vqa import LumenVQADataset

__all__ = [
    'LumenMultiTaskDataset', 'LumenConcatDataset', 'LumenDetPrompts',
    'LumenGroundPrompts', 'LumenCountPrompts', 'LumenPosePrompts',
    'LumenVQAPrompts', 'LumenCountingDataset', 'LumenVQADataset',
    'LumenRefCocoDataset', 'PackLumenInputs', 'LumenMultiTaskSampler',
    'LumenLoadImageFromFile', 'LumenResize', 'RandomFlipReferring',
    'LumenSamImage',
    'CocoFormatDataset', 'FSC147Dataset', 'LumenVOCDataset'
]
