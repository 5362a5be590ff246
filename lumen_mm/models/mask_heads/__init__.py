from .sam_mask_head import SamMaskHead

__all__ = ['SamMaskHead']
