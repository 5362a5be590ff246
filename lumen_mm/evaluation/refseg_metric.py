"""Referring segmentation: cIoU and mIoU (= gIoU), as LISA reports them.

mmdet's ``RefSegMetric`` computes both, but it reads the ground truth only
from the metainfo ``gt_masks`` (Lumen's samples carry it in
``gt_instances.masks``), assumes one predicted mask per sentence in order
(Lumen's predictions, like grounding's, name their sentence in ``labels``)
and reports percentages (the other Lumen metrics report fractions). This
subclass keeps its IoU rule and changes those three points. In a multi-task
evaluation wrap it in ``LumenTaskMetric(task='refseg', ...)``.
"""
from typing import Dict, Sequence

import torch
from mmdet.evaluation.metrics import RefSegMetric
from mmdet.registry import METRICS

from lumen_mm.tasks import decode_masks


@METRICS.register_module()
class LumenRefSegMetric(RefSegMetric):
    """cIoU (summed intersections / summed unions over all sentences) and
    mIoU (mean IoU per sentence, = gIoU), as fractions in [0, 1].

    The ground truth of a sample is one mask per referring sentence, from
    the metainfo ``gt_masks`` or ``gt_instances.masks``; its
    ``pred_instances.masks`` (bool, original image size) answer the
    sentences given by ``pred_instances.labels`` (sentence indices) or,
    without labels, in order. A sentence without a
    predicted mask has IoU 0.
    """
    default_prefix = 'refseg'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt = sample.get('gt_masks',
                            sample.get('gt_instances', {}).get('masks'))
            if gt is None:
                raise ValueError(
                    'A referring-segmentation sample has no ground-truth '
                    'masks: load them with LoadAnnotations(with_mask=True).')
            pred = sample['pred_instances']
            # bool tensor, or COCO RLE (test_cfg mask_format='rle')
            masks = decode_masks(
                pred['masks'], (gt.height, gt.width) if hasattr(
                    gt, 'height') else tuple(torch.as_tensor(gt).shape[-2:]))
            gt = (gt.to_tensor(torch.bool, masks.device) if hasattr(
                gt, 'to_tensor') else torch.as_tensor(gt).to(masks.device))
            gt = gt.bool()
            if masks.shape[1:] != gt.shape[1:]:
                raise ValueError(
                    f'Predicted masks {tuple(masks.shape[1:])} and gt masks '
                    f'{tuple(gt.shape[1:])} differ in size: predict masks '
                    'at the original image size.')
            order = pred.get('labels')
            if order is None:
                if len(masks) != len(gt):
                    raise ValueError(
                        f'{len(masks)} predicted masks for {len(gt)} '
                        'referring sentences: predict one mask per sentence '
                        'in order, or give pred_instances.labels (the '
                        'sentence index of each mask).')
                answers = masks
            else:
                order = order.to(masks.device).long()
                if len(order) and (order.min() < 0
                                   or order.max() >= len(gt)):
                    raise ValueError(
                        f'pred_instances.labels {order.tolist()} are not '
                        f'sentence indices of the {len(gt)} sentences.')
                answers = torch.zeros_like(gt)
                answers[order] = masks
            overlap, union = self.compute_iou(answers, gt)
            inter = overlap.flatten(1).sum(1)
            union = union.flatten(1).sum(1)
            iou = torch.nan_to_num(inter / union, nan=0.0)
            self.results.append((int(inter.sum()), int(union.sum()),
                                 float(iou.sum()), len(gt)))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        inter, union, iou, total = (sum(column) for column in zip(*results))
        if total == 0:
            raise ValueError(
                'LumenRefSegMetric saw no referring sentence: pair it with a '
                'referring-segmentation dataset.')
        metrics = {}
        if 'cIoU' in self.metrics:
            metrics['cIoU'] = inter / union if union else 0.0
        if 'mIoU' in self.metrics:
            metrics['mIoU'] = iou / total
        return metrics
