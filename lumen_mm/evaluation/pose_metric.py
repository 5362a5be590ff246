"""Pose estimation: OKS AP through mmpose's ``CocoMetric``.

Lumen estimates pose top-down (Sec. 4.1): each sample is one person crop.
mmpose's metric expects numpy predictions, ``sigmas`` and ``num_keypoints``
in ``dataset_meta``, and drops all but one prediction per ``id`` of an image;
this adapter supplies all three, so every person keeps its own id. It also
reports ``flip_collapse``: the share of left / right keypoint pairs
predicted at one point, which OKS AP alone does not tell apart from other
errors.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import mmpose
import numpy as np
import torch
from mmdet.registry import METRICS
from mmengine.fileio import load
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.evaluation.metrics import CocoMetric as PoseCocoMetric

COCO_KEYPOINTS_INFO = osp.join(
    osp.dirname(mmpose.__file__), '.mim', 'configs', '_base_', 'datasets',
    'coco.py')


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@METRICS.register_module()
class LumenPoseMetric(PoseCocoMetric):
    """mmpose's ``CocoMetric`` (OKS AP) for Lumen's per-person samples.

    Each pose sample holds ``img_id``, ``id`` (the person's annotation id)
    and ``category_id`` in its metainfo, and ``pred_instances`` with
    ``keypoints`` (1, K, 2) in original image pixels, ``keypoint_scores``
    (1, K), and optionally ``bboxes`` (1, 4) xyxy and ``bbox_scores`` (1, )
    (1.0 when absent, as for ground-truth person boxes). In a multi-task
    evaluation wrap it in ``LumenTaskMetric(task='pose', ...)``.

    Args:
        ann_file: the COCO keypoints json of the evaluated split.
        metainfo: the keypoints' mmpose dataset info (names, sigmas...): a
            dataset-info file (``dataset_info = dict(...)``) or its dict;
            defaults to mmpose's COCO (17 keypoints).
        collapse_ratio: a left / right pair (the metainfo's ``swap``
            pairs) counts as collapsed when its two predicted points are
            closer than this share of their ground-truth distance.
        **kwargs: further arguments of mmpose's ``CocoMetric``.
    """

    def __init__(self,
                 ann_file: str,
                 metainfo: Union[str, dict] = COCO_KEYPOINTS_INFO,
                 collapse_ratio: float = 0.25,
                 **kwargs) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        self.collapse_ratio = collapse_ratio
        if isinstance(metainfo, str):
            metainfo = dict(from_file=metainfo)
        self.pose_meta = parse_pose_metainfo(metainfo)
        num = self.pose_meta['num_keypoints']
        for cat in load(ann_file).get('categories', []):
            if 'keypoints' in cat and len(cat['keypoints']) != num:
                raise ValueError(
                    f'{ann_file} names {len(cat["keypoints"])} keypoints for '
                    f'category {cat.get("name")!r}, but the metainfo has '
                    f'{num}: give the dataset info of these keypoints as '
                    '`metainfo`.')
        self.dataset_meta = {}

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        """The evaluator's dataset meta plus sigmas, num_keypoints, names."""
        PoseCocoMetric.dataset_meta.fset(
            self, {**(dataset_meta or {}), **self.pose_meta})

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        num = self.pose_meta['num_keypoints']
        for sample in data_samples:
            pred = sample.get('pred_instances', {})
            if 'keypoints' not in pred:
                raise ValueError(
                    'A pose sample has no pred_instances.keypoints: the model '
                    'must predict keypoints for pose samples.')
            keypoints = _numpy(pred['keypoints'])
            if keypoints.shape != (1, num, 2):
                raise ValueError(
                    f'pred_instances.keypoints has shape {keypoints.shape}; a '
                    f'pose sample is one person with (1, {num}, 2) keypoints.')
            missing = [k for k in ('img_id', 'id') if k not in sample]
            if missing:
                raise ValueError(
                    f'A pose sample lacks {missing} in its metainfo: keep the '
                    "image id and the person's annotation id (`id`): pack "
                    'with PackLumenInputs (or list them in meta_keys).')
            instances = dict(
                keypoints=keypoints,
                keypoint_scores=_numpy(pred['keypoint_scores']),
                bbox_scores=_numpy(pred['bbox_scores'])
                if 'bbox_scores' in pred else np.ones(1))
            if 'bboxes' in pred:
                instances['bboxes'] = _numpy(pred['bboxes'])
            super().process(data_batch, [
                dict(
                    id=int(sample['id']),
                    img_id=int(sample['img_id']),
                    category_id=int(sample.get('category_id', 1)),
                    pred_instances=instances,
                    gt_instances={})
            ])

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if not results:
            raise ValueError('LumenPoseMetric saw no sample: pair it with a '
                             'pose dataset.')
        metrics = super().compute_metrics(results)
        collapse = self.flip_collapse([pred for pred, _ in results])
        if collapse is not None:
            metrics['flip_collapse'] = collapse
        return metrics

    def flip_collapse(self, preds: Sequence[dict]) -> Optional[float]:
        """Share of (person, left / right pair) predicted at one point.

        A language model that has not learnt the word telling left from right
        gives both prompts of a pair one ``[LOC]`` state, so one point: a
        run whose pose AP is low for that reason scores near 1 here. Each
        prediction is compared with the annotation its ``id`` names; those
        whose ``id`` names no annotation of their image (persons from a
        detection-results file are numbered from 0) and pairs with an
        unlabelled or coincident ground-truth point are left out. ``None``
        when nothing is left.
        """
        pairs = [(i, j) for i, j in enumerate(self.pose_meta['flip_indices'])
                 if i < j]
        collapsed, total = 0, 0
        for pred in preds:
            ann = self.coco.anns.get(pred['id'])
            if ann is None or ann['image_id'] != pred['img_id']:
                continue
            gt = np.asarray(ann['keypoints'], float).reshape(-1, 3)
            points = pred['keypoints'][0]
            for i, j in pairs:
                gt_dist = np.linalg.norm(gt[i, :2] - gt[j, :2])
                if gt[i, 2] == 0 or gt[j, 2] == 0 or gt_dist == 0:
                    continue
                total += 1
                collapsed += int(
                    np.linalg.norm(points[i] - points[j]) <
                    self.collapse_ratio * gt_dist)
        return collapsed / total if total else None
