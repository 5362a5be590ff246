from .heatmap_head import HeatmapHead, PeakSelector

__all__ = ['HeatmapHead', 'PeakSelector']
