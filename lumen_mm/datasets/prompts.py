"""Transforms that turn mmdet samples into Lumen instruction samples.

They set three keys that ``PackDetInputs`` keeps in the data sample's
metainfo (list them in its ``meta_keys``):

* ``task``: which template and Stage-2 pathway the prompts use;
* ``prompts``: the descriptions to locate;
* ``prompt_labels``: per prompt, the ``gt_bboxes_labels`` value of its
  targets (detection: a class index; grounding: the referred object's index).
"""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

LUMEN_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'task', 'prompts', 'prompt_labels')


@TRANSFORMS.register_module()
class LumenDetPrompts(BaseTransform):
    """One prompt per class name (``text``, from ``return_classes=True``).

    In training each image is asked about every class it contains plus
    ``num_absent`` classes it does not contain (their heatmaps are empty);
    ``num_absent=None`` asks about all classes. At test time
    (``test_mode=True``) all classes are asked, as COCO evaluation needs.

    Args:
        task: ``'det'`` (boxes) or ``'seg'`` (masks).
        num_absent: absent classes asked per training image.
        test_mode: ask every class.
    """

    def __init__(self,
                 task: str = 'det',
                 num_absent: Optional[int] = None,
                 test_mode: bool = False) -> None:
        self.task = task
        self.num_absent = num_absent
        self.test_mode = test_mode

    def transform(self, results: dict) -> dict:
        classes = results.get('text')
        if not classes:
            raise KeyError(
                'LumenDetPrompts needs the class names in results["text"]: '
                'build the dataset with `return_classes=True`.')
        num_classes = len(classes)
        if self.test_mode or self.num_absent is None:
            labels = np.arange(num_classes)
        else:
            present = np.unique(results.get('gt_bboxes_labels',
                                             np.zeros(0, np.int64)))
            absent = np.setdiff1d(np.arange(num_classes), present)
            chosen = np.random.permutation(absent)[:self.num_absent]
            labels = np.sort(np.concatenate([present, chosen]))
            if len(labels) == 0:  # no objects and num_absent == 0
                labels = np.random.randint(num_classes, size=1)
        results['task'] = self.task
        results['prompts'] = [classes[i] for i in labels]
        results['prompt_labels'] = [int(i) for i in labels]
        return results


@TRANSFORMS.register_module()
class LumenGroundPrompts(BaseTransform):
    """Every referring sentence of a ``RefCocoDataset`` image is a prompt.

    ``RefCocoDataset`` gives one mask per sentence; the referred object's box
    is the mask's enclosing box (Sec. 3.1.3). Load masks *after* resizing in
    test pipelines so that boxes stay in the original frame, as metrics need.
    """

    def __init__(self, task: str = 'ground') -> None:
        self.task = task

    def transform(self, results: dict) -> dict:
        sentences = results.get('text')
        if not sentences:
            raise KeyError('LumenGroundPrompts needs referring sentences in '
                           'results["text"] (RefCocoDataset provides them).')
        results['gt_bboxes'] = results['gt_masks'].get_bboxes(dst_type='hbox')
        results['gt_bboxes_labels'] = np.arange(len(sentences))
        results['gt_ignore_flags'] = np.zeros(len(sentences), dtype=bool)
        results['task'] = self.task
        results['prompts'] = list(sentences)
        results['prompt_labels'] = list(range(len(sentences)))
        return results
