"""Drawing Lumen's answers (boxes, masks, keypoints, heatmaps)."""
from .lumen_visualizer import (LumenLocalVisualizer, heatmaps_to_image,
                               overlay_heatmap, skeleton_meta)

__all__ = [
    'LumenLocalVisualizer', 'heatmaps_to_image', 'overlay_heatmap',
    'skeleton_meta'
]
