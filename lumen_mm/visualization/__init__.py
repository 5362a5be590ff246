"""Drawing Lumen's answers (boxes, masks, keypoints, heatmaps)."""
from .lumen_visualizer import (LumenLocalVisualizer, LumenVisualizationHook,
                               downscale_for_drawing, escape_mathtext,
                               heatmaps_to_image, overlay_heatmap,
                               skeleton_meta)

__all__ = [
    'LumenLocalVisualizer', 'LumenVisualizationHook', 'heatmaps_to_image',
    'overlay_heatmap', 'skeleton_meta', 'downscale_for_drawing',
    'escape_mathtext'
]
