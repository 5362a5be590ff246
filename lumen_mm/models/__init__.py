from .backbones import LlavaLMM
from .dense_heads import HeatmapHead, PeakSelector
from .detectors import Lumen
from .losses import LocWordsLoss
from .mask_heads import SamMaskHead
from .necks import ConvDenseAligner, TransformerDenseAligner

__all__ = [
    'LlavaLMM', 'TransformerDenseAligner', 'ConvDenseAligner', 'HeatmapHead',
    'PeakSelector', 'Lumen', 'SamMaskHead', 'LocWordsLoss'
]
