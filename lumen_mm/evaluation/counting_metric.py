"""Object counting (Sec. 4.4): mean absolute and root mean squared error."""
import math
from typing import Dict, Sequence

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric


@METRICS.register_module()
class CountingMetric(BaseMetric):
    """MAE and RMSE of ``pred_count`` against ``gt_count``.

    Both are read from the sample dict the evaluator hands over (metainfo
    and data fields alike end up there). In a multi-task evaluation wrap it
    in ``LumenTaskMetric`` so that it only sees counting samples.
    """
    default_prefix = 'count'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            missing = [k for k in ('pred_count', 'gt_count')
                       if k not in sample]
            if missing:
                raise ValueError(
                    f'A counting sample lacks {missing}: the dataset sets '
                    'gt_count (kept by PackLumenInputs), the model '
                    'pred_count.')
            self.results.append(
                (float(sample['pred_count']), float(sample['gt_count'])))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        errors = [pred - gt for pred, gt in results]
        if not errors:
            raise ValueError('CountingMetric saw no sample: pair it with a '
                             'counting dataset.')
        return dict(
            mae=sum(abs(e) for e in errors) / len(errors),
            rmse=math.sqrt(sum(e * e for e in errors) / len(errors)))
