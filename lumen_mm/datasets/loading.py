"""Image loading whose failures name the file and what to do about it."""
from typing import Optional

import mmcv
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import Resize
from mmdet.registry import TRANSFORMS


def decode_failure(filename: str, error: Exception) -> str:
    """Why ``filename`` could not be decoded, and the fix, from the decoder's
    ``error`` (OpenCV's are bare assertions without the path)."""
    text = str(error)
    if 'CV_IO_MAX_IMAGE_PIXELS' in text:
        return (f'Image {filename!r} has more pixels than OpenCV decodes by '
                'default (CV_IO_MAX_IMAGE_PIXELS, 2^30 = 1073741824). '
                'Downscale it (the model reads it at its input size anyway), '
                'or raise the limit by setting the environment variable '
                'OPENCV_IO_MAX_IMAGE_PIXELS (e.g. 4000000000) before Python '
                'starts; a decoded image takes 3 bytes per pixel of memory.')
    if '!buf.empty()' in text:
        return (f'Image {filename!r} is empty (0 bytes): replace it with a '
                'good copy or remove it.')
    reason = ('the decoder returned nothing' if isinstance(
        error, AssertionError) or not text.strip() else
              text.strip().splitlines()[0])
    return (f'Image {filename!r} is corrupt or not an image (it could not be '
            f'decoded: {reason}). Replace it with a good copy (regenerate or '
            're-download the dataset), or remove it and its annotations.')


@TRANSFORMS.register_module()
class LumenResize(Resize):
    """mmdet's ``Resize`` that keeps at least one pixel per side.

    With ``keep_ratio``, mmcv rounds a 1 x 2000 image's short side at a
    448-px scale to 0 px and OpenCV fails (``inv_scale_x > 0``). Here such a
    side becomes 1 px (its ``scale_factor`` says so, so boxes map back to
    the original frame); other images are resized exactly as by mmdet.
    """

    def _resize_img(self, results: dict) -> None:
        img = results.get('img')
        if img is not None and self.keep_ratio:
            h, w = img.shape[:2]
            new_w, new_h = mmcv.rescale_size((w, h), results['scale'])
            if min(new_w, new_h) < 1:
                img, w_scale, h_scale = mmcv.imresize(
                    img, (max(1, new_w), max(1, new_h)),
                    interpolation=self.interpolation,
                    return_scale=True,
                    backend=self.backend)
                results.update(img=img, img_shape=img.shape[:2],
                               scale_factor=(w_scale, h_scale),
                               keep_ratio=True)
                return
        super()._resize_img(results)


@TRANSFORMS.register_module()
class LumenLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with clear errors for bad image files.

    mmcv reports an undecodable file (a truncated PNG, say) as
    ``AssertionError: failed to load image`` and an empty one as a bare
    OpenCV error without the path. Here both say which file is corrupt and
    how to fix the dataset; a missing file names the folder it was looked
    for in. Arguments are mmcv's.

    Training pipelines use it (a bad file deep in a long run). Test
    pipelines load with mmcv's ``LoadImageFromFile`` itself: mmdet's
    ``DetInferencer`` finds that step by its type name to put its own loader
    there, and mmcv's assertion names the file too.
    """

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            return super().transform(results)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f'Image {filename!r} does not exist. Check the dataset\'s '
                '`data_root` and `data_prefix` in the config, or regenerate '
                'or re-download the dataset.') from e
        # mmcv asserts on a decoder that returned None; cv2 and PIL raise
        # their own errors on empty or broken files.
        except Exception as e:
            raise ValueError(decode_failure(filename, e)) from e
