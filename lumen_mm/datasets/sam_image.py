"""The image SAM sees: the original, its longest side at SAM's input size.

Lumen's LMM reads a small letterbox (448 px in the paper); upsampling that
letterbox to SAM's 1024 px input would give SAM less than COCO's native
resolution. ``LumenSamImage`` keeps the original image resized as
segment-anything's ``SamPredictor`` resizes it, and ``PackLumenInputs``
packs it as ``data_sample.sam_image`` with its size as ``sam_shape``.
"""
from typing import Optional

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from segment_anything.utils.transforms import ResizeLongestSide


@TRANSFORMS.register_module()
class LumenSamImage(BaseTransform):
    """Store the loaded image resized for SAM (``results['sam_img']``, RGB).

    Put it right after the image is loaded, before ``Resize``. Boxes and
    points move between Lumen's input frame and SAM's through the original
    frame (``scale_factor``, ``ori_shape``); a later horizontal ``RandomFlip``
    is applied to the SAM image when it is packed.

    Args:
        size: SAM's input size (``sam.image_encoder.img_size``): 1024 for
            the official SAMs, the tiny SAM's ``img_size`` otherwise.
        channel_order: of the loaded image, ``'bgr'`` as mmcv loads it.
    """

    def __init__(self, size: int = 1024, channel_order: str = 'bgr') -> None:
        if size < 1:
            raise ValueError(f'size must be SAM\'s input size, got {size}')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got "
                             f'{channel_order!r}')
        self.size = size
        self.channel_order = channel_order

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:  # a grey image loaded with color_type='grayscale'
            img = np.repeat(img[..., None], 3, axis=2)
        if self.channel_order == 'bgr':
            img = mmcv.bgr2rgb(img)
        # SamPredictor.set_image's resizing (PIL, antialiased), on uint8
        resizer = ResizeLongestSide(self.size)
        img = np.ascontiguousarray(img.astype(np.uint8))
        size = resizer.get_preprocess_shape(*img.shape[:2], self.size)
        if min(size) < 1:  # a 1 x 2000 image: its short side keeps 1 px
            from torchvision.transforms.functional import (resize,
                                                           to_pil_image)
            sam_img = np.array(
                resize(to_pil_image(img), [max(1, s) for s in size]))
        else:
            sam_img = resizer.apply_image(img)
        results['sam_img'] = sam_img
        results['sam_shape'] = sam_img.shape[:2]
        return results


def pack_sam_image(results: dict) -> Optional[torch.Tensor]:
    """The SAM image of ``results`` as a (3, h, w) uint8 tensor, flipped as
    the input was; None where the pipeline has no ``LumenSamImage``."""
    sam_img = results.get('sam_img')
    if sam_img is None:
        return None
    if results.get('flip'):
        direction = results.get('flip_direction', 'horizontal')
        padded_w = results['img'].shape[1]
        # mmdet's Pad sets img_shape to the padded size: the content's
        # width is the original's, scaled
        content_w = round(results['ori_shape'][1] *
                          results.get('scale_factor', (1, 1))[0])
        if direction != 'horizontal' or content_w != padded_w:
            # a flip before or after Pad leaves the same keys: which side
            # the padding went cannot be told, nor a vertical flip followed
            raise ValueError(
                f'LumenSamImage follows horizontal flips of images that fill '
                f'the padded width only; this one was flipped {direction} '
                f'with content {content_w} px wide of {padded_w}. Flip only '
                'images that fill the input (e.g. square ones), or leave '
                'LumenSamImage out of this pipeline (SAM then reads the '
                'upsampled input).')
        sam_img = sam_img[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(sam_img.transpose(2, 0, 1)))
