"""Converters from released checkpoint and annotation layouts to the ones
lumen_mm loads."""
from .aic import AIC_KEYPOINTS, convert_aic_to_coco
from .llava_v1 import ConversionError, convert_llava_v1, read_llava_v1_config

__all__ = [
    'AIC_KEYPOINTS', 'ConversionError', 'convert_aic_to_coco',
    'convert_llava_v1', 'read_llava_v1_config'
]
