from .dense_aligner import ConvDenseAligner, TransformerDenseAligner

__all__ = ['TransformerDenseAligner', 'ConvDenseAligner']
