"""Image loading whose failures name the file and what to do about it."""
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS


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
            reason = 'the decoder returned nothing' if isinstance(
                e, AssertionError) else str(e).strip().splitlines()[0]
            raise ValueError(
                f'Image {filename!r} is corrupt or not an image (it could not '
                f'be decoded: {reason}). Replace it with a good copy '
                '(regenerate or re-download the dataset), or remove it and '
                'its annotations.') from e
