"""Visual grounding accuracy (Acc@0.5), as SeqTR reports it.

mmdet's ``RefExpMetric`` reads MDETR-style annotation files (one box per
image, a ``dataset_name``), not ``RefCocoDataset`` samples, so this metric
follows ``RefSegMetric`` instead: the j-th predicted box of a sample answers
its j-th referring sentence and is compared with the j-th ground-truth box.
"""
from typing import Dict, Sequence

import torch
from mmdet.registry import METRICS
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmengine.evaluator import BaseMetric


@METRICS.register_module()
class GroundingMetric(BaseMetric):
    """Share of referring sentences whose box has IoU >= ``iou_thr``."""
    default_prefix = 'grounding'

    def __init__(self, iou_thr: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iou_thr = iou_thr

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            # One result per sample, even without boxes: MultiDatasetsEvaluator
            # slices every metric's results by dataset.
            if 'bboxes' not in sample.get('gt_instances', {}):
                self.results.append((0, 0))
                continue
            pred = sample['pred_instances']
            gt = get_box_tensor(sample['gt_instances']['bboxes'])
            boxes = pred['bboxes'].to(gt.device)
            order = pred['labels'].to(gt.device)  # sentence index
            correct = torch.zeros(len(gt), dtype=torch.bool)
            if len(boxes):
                ious = bbox_overlaps(boxes, gt[order], is_aligned=True)
                correct[order.cpu()] = (ious >= self.iou_thr).cpu()
            self.results.append((int(correct.sum()), len(gt)))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        correct = sum(r[0] for r in results)
        total = sum(r[1] for r in results)
        return {f'acc@{self.iou_thr}': correct / max(total, 1)}
