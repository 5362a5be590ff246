"""Transforms that turn mmdet samples into Lumen instruction samples.

They set three keys that ``PackLumenInputs`` keeps in the data sample's
metainfo:

* ``task``: which template and Stage-2 pathway the prompts use;
* ``prompts``: the descriptions to locate;
* ``prompt_labels``: per prompt, the ``gt_bboxes_labels`` value of its
  targets (detection: a class index; grounding: the referred object's index).
"""
import re
from typing import List, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

# GroundingDINO's separator: 'cat . dog' or 'cat . dog .' (mmdet's demos and
# DetInferencer users write them so); a '.' inside a name does not split it.
_SEPARATOR = re.compile(r'\s+\.(?=\s|$)')


def split_prompts(text: Union[str, Sequence[str]]) -> List[str]:
    """The prompts of ``results['text']`` in the forms mmdet's text-prompted
    detectors take: names separated by ``' . '`` (a trailing ``' .'``
    allowed), or a list or tuple of names. A string without separators is
    one prompt (a class name or a referring sentence), never its letters."""
    if isinstance(text, str):
        names = _SEPARATOR.split(text.strip())
        if len(names) > 1 and not names[-1].strip():
            names.pop()  # the trailing ' .'
    elif isinstance(text, (list, tuple)):
        names = list(text)
    else:
        raise TypeError(
            f'Text prompts must be a string or a list of strings, got '
            f'{type(text).__name__}: pass texts=\'circle . square\' or '
            "texts=[('circle', 'square')].")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(
            f'Empty or non-string prompt in {text!r}: each prompt is a class '
            "name or a sentence, e.g. texts='circle . square' (one ' . ' "
            'between two names).')
    return [n.strip() for n in names]


def _check_max_prompts(max_prompts: Optional[int], name: str) -> None:
    if max_prompts is not None and (not isinstance(max_prompts, int)
                                    or max_prompts < 1):
        raise ValueError(f'{name}: max_prompts is the most prompts asked per '
                         f'training image, an int >= 1 (None: all); got '
                         f'{max_prompts!r}.')


def first_chosen(preferred: np.ndarray, others: np.ndarray,
                 max_prompts: Optional[int]) -> np.ndarray:
    """At most ``max_prompts`` of ``preferred`` then ``others`` (numpy's
    global RNG, as mmdet's transforms): a random subset of ``preferred``
    when it alone has more, else all of it and a random subset of
    ``others`` to fill; sorted. ``None``: all of both."""
    preferred = np.asarray(preferred, np.int64)
    others = np.asarray(others, np.int64)
    if max_prompts is None:
        return np.sort(np.concatenate([preferred, others]))
    if len(preferred) >= max_prompts:
        return np.sort(np.random.permutation(preferred)[:max_prompts])
    fill = np.random.permutation(others)[:max_prompts - len(preferred)]
    return np.sort(np.concatenate([preferred, fill]))


@TRANSFORMS.register_module()
class LumenDetPrompts(BaseTransform):
    """One prompt per class name: ``text``, the dataset's class names
    (``return_classes=True``) or the prompts given to mmdet's
    ``DetInferencer`` (``texts=``) or ``inference_detector``
    (``text_prompt=``), in the forms of :func:`split_prompts`.

    In training each image is asked about every class it contains plus
    ``num_absent`` classes it does not contain (their heatmaps are empty);
    ``num_absent=None`` asks about all classes. ``max_prompts`` caps the
    prompts of a training image: the classes it contains first (a random
    ``max_prompts`` of them when there are more), then absent ones to fill.
    At test time (``test_mode=True``) all classes are asked, as COCO
    evaluation needs.

    Args:
        task: ``'det'`` (boxes) or ``'seg'`` (masks).
        num_absent: absent classes asked per training image.
        max_prompts: most prompts per training image; None: no cap.
        test_mode: ask every class.
    """

    def __init__(self,
                 task: str = 'det',
                 num_absent: Optional[int] = None,
                 max_prompts: Optional[int] = None,
                 test_mode: bool = False) -> None:
        if task not in ('det', 'seg'):
            raise ValueError(f'Unknown task {task!r} for LumenDetPrompts: '
                             "set task='det' (boxes) or 'seg' (masks).")
        _check_max_prompts(max_prompts, 'LumenDetPrompts')
        self.task = task
        self.num_absent = num_absent
        self.max_prompts = max_prompts
        self.test_mode = test_mode

    def transform(self, results: dict) -> dict:
        classes = results.get('text')
        if classes is None:
            raise KeyError(
                'LumenDetPrompts needs the names to look for in '
                'results["text"]: give them to the inferencer (mmdet\'s '
                "DetInferencer: texts='circle . square'; inference_detector: "
                "text_prompt='circle . square'), or build the dataset with "
                '`return_classes=True`.')
        classes = split_prompts(classes)
        if len(classes) == 0:
            raise ValueError(
                'The dataset\'s class list is empty, so there is nothing to '
                'detect: set `metainfo=dict(classes=(...))` in the dataset '
                'config to the class names of its annotation file.')
        num_classes = len(classes)
        if self.test_mode or (self.num_absent is None
                              and self.max_prompts is None):
            labels = np.arange(num_classes)
        else:
            present = np.unique(results.get('gt_bboxes_labels',
                                             np.zeros(0, np.int64)))
            absent = np.setdiff1d(np.arange(num_classes), present)
            if self.num_absent is not None:
                absent = np.random.permutation(absent)[:self.num_absent]
            labels = first_chosen(present, absent, self.max_prompts)
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

    Args:
        task: ``'ground'`` (boxes) or ``'refseg'`` (masks).
        max_prompts: most sentences asked per image, a random subset (their
            masks kept with them); None: every sentence. Set it in training
            pipelines only: evaluation asks every sentence.
    """

    def __init__(self,
                 task: str = 'ground',
                 max_prompts: Optional[int] = None) -> None:
        if task not in ('ground', 'refseg'):
            raise ValueError(f'Unknown task {task!r} for LumenGroundPrompts: '
                             "set task='ground' (boxes) or 'refseg' (masks).")
        _check_max_prompts(max_prompts, 'LumenGroundPrompts')
        self.task = task
        self.max_prompts = max_prompts

    def transform(self, results: dict) -> dict:
        sentences = results.get('text')
        if not sentences:
            raise KeyError('LumenGroundPrompts needs referring sentences in '
                           'results["text"] (RefCocoDataset provides them).')
        sentences = split_prompts(sentences)
        if self.max_prompts is not None and len(sentences) > self.max_prompts:
            kept = first_chosen(np.arange(len(sentences)), [],
                                self.max_prompts)
            sentences = [sentences[i] for i in kept]
            results['gt_masks'] = results['gt_masks'][kept]
            results['text'] = sentences
        results['gt_bboxes'] = results['gt_masks'].get_bboxes(dst_type='hbox')
        results['gt_bboxes_labels'] = np.arange(len(sentences))
        results['gt_ignore_flags'] = np.zeros(len(sentences), dtype=bool)
        results['task'] = self.task
        results['prompts'] = list(sentences)
        results['prompt_labels'] = list(range(len(sentences)))
        return results


@TRANSFORMS.register_module()
class LumenCountPrompts(BaseTransform):
    """Asks for the class to count (``LumenCountingDataset``'s
    ``count_label``); its instances are the heatmap targets and their number
    the ground truth of the counting metric (``gt_count``)."""

    def transform(self, results: dict) -> dict:
        classes = results.get('text')
        if not classes or 'count_label' not in results:
            raise KeyError('LumenCountPrompts needs `count_label` and the '
                           'class names: use LumenCountingDataset with '
                           '`return_classes=True`.')
        label = int(results['count_label'])
        results['task'] = 'count'
        results['prompts'] = [classes[label]]
        results['prompt_labels'] = [label]
        return results


def keypoint_prompt(name: str) -> str:
    """A keypoint name as the prompt reads it: ``left_hand`` -> "left hand"
    (the words the tokenizer knows, not an underscore between them)."""
    return name.replace('_', ' ')


@TRANSFORMS.register_module()
class LumenPosePrompts(BaseTransform):
    """Top-down pose: one prompt per keypoint name about one person crop.

    Runs after mmpose's ``GetBBoxCenterScale`` and ``TopdownAffine``, which
    crop the person box; each visible keypoint becomes a zero-size box at its
    position in the crop, labelled with its keypoint index, so that the
    shared packing and heatmap code serve pose as well.

    Args:
        keypoint_names: the dataset's keypoint names, in index order; the
            prompts read them as words (``left_hand`` -> "left hand").
        max_prompts: most keypoints asked per crop: the visible ones first
            (a random subset when there are more), then others (empty
            heatmaps) to fill; None: every keypoint. Set it in training
            pipelines only: evaluation asks every keypoint.
    """

    def __init__(self,
                 keypoint_names: Sequence[str],
                 max_prompts: Optional[int] = None) -> None:
        if not keypoint_names:
            raise ValueError('LumenPosePrompts needs the keypoint names.')
        _check_max_prompts(max_prompts, 'LumenPosePrompts')
        self.keypoint_names = list(keypoint_names)
        self.max_prompts = max_prompts

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        results['img_shape'] = (h, w)
        results['person_bbox'] = np.asarray(results['bbox'][0], np.float32)
        points = results.get('transformed_keypoints')
        everything = np.arange(len(self.keypoint_names))
        shown = np.zeros(0, np.int64)
        if points is not None:
            visible = results['keypoints_visible'][0] > 0
            xy = points[0][visible]
            results['gt_bboxes'] = np.concatenate([xy, xy], 1).astype(
                np.float32)
            shown = np.flatnonzero(visible)
            results['gt_bboxes_labels'] = shown
            results['gt_ignore_flags'] = np.zeros(len(xy), dtype=bool)
        labels = everything if self.max_prompts is None else first_chosen(
            shown, np.setdiff1d(everything, shown), self.max_prompts)
        results['task'] = 'pose'
        results['prompts'] = [
            keypoint_prompt(self.keypoint_names[i]) for i in labels
        ]
        results['prompt_labels'] = [int(i) for i in labels]
        return results


@TRANSFORMS.register_module()
class LumenVQAPrompts(BaseTransform):
    """A LLaVA-Instruct conversation (``LumenVQADataset``): its questions
    are the prompts, its answers are trained with the LM loss only."""

    def transform(self, results: dict) -> dict:
        turns = results.get('conversation')
        if not turns:
            raise KeyError('LumenVQAPrompts needs `conversation` turns: use '
                           'LumenVQADataset.')
        results['task'] = 'vqa'
        results['prompts'] = [q for q, _ in turns]
        results['answers'] = [a for _, a in turns]
        results['prompt_labels'] = [-1] * len(turns)
        return results
