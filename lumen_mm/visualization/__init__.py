"""Drawing Lumen's answers (boxes, masks, keypoints, heatmaps)."""
from .lumen_visualizer import (LumenLocalVisualizer, LumenVisualizationHook,
                               heatmaps_to_image, overlay_heatmap,
                               skeleton_meta)

__all__ = [
    'LumenLocalVisualizer', 'LumenVisualizationHook', 'heatmaps_to_image',
    'overlay_heatmap', 'skeleton_meta'
]
