"""Packing a Lumen sample: mmdet's ``PackDetInputs`` with the metainfo keys
that route it through Lumen."""
from typing import Sequence

from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

from lumen_mm.tasks import META_KEYS
from .sam_image import pack_sam_image


@TRANSFORMS.register_module()
class PackLumenInputs(PackDetInputs):
    """``PackDetInputs`` whose ``meta_keys`` default to every key a task of
    :data:`lumen_mm.tasks.TASKS` needs (``task``, ``prompts``,
    ``prompt_labels``, a person crop's frame...), so configs need not list
    them; ``extra_meta_keys`` adds more.

    Ground-truth instances get ``label_names``, the prompt of each label (a
    class name, a sentence, a keypoint name), as predictions have them: the
    labels of grounding and pose index sentences and keypoints, not the
    dataset's classes, and mmdet's ``DetLocalVisualizer`` draws these names
    instead of looking labels up in ``classes``. A pipeline with
    :class:`LumenSamImage` gets its SAM image packed as ``sam_image``.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = META_KEYS,
                 extra_meta_keys: Sequence[str] = ()) -> None:
        super().__init__(
            meta_keys=tuple(dict.fromkeys((*meta_keys, *extra_meta_keys))))

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        sample = packed['data_samples']
        sam_image = pack_sam_image(results)
        if sam_image is not None:
            sample.sam_image = sam_image
        gt = sample.get('gt_instances')
        if gt is not None and 'labels' in gt and 'prompts' in results:
            names = dict(zip(results['prompt_labels'], results['prompts']))
            gt.label_names = [
                names.get(int(label), f'class {int(label)}')
                for label in gt.labels
            ]
        return packed
