"""One metric per task in a multi-task validation set."""
from typing import Dict, Optional, Sequence

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric


@METRICS.register_module()
class LumenTaskMetric(BaseMetric):
    """Runs ``metric`` on the samples whose ``task`` is ``task`` only.

    mmdet's ``MultiDatasetsEvaluator`` hands every sample of a concatenated
    validation set to every metric and slices each metric's results by
    dataset afterwards, so each metric must add exactly one result per sample
    and survive samples of other tasks (a VQA answer has no boxes for
    ``CocoMetric``). This wrapper keeps one entry per sample: the results
    the wrapped metric made of it, or none for another task.

    Args:
        task: the task this metric scores (``det``, ``seg``, ``pose``...).
        metric: config of the wrapped metric.
    """

    def __init__(self,
                 task: str,
                 metric: dict,
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        self.metric = METRICS.build(metric)
        super().__init__(prefix=prefix or self.metric.prefix, **kwargs)
        self.task = task

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self.metric.dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        self.metric.dataset_meta = dataset_meta

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        inner = self.metric.results
        for sample in data_samples:
            start = len(inner)
            if sample.get('task', 'det') == self.task:
                self.metric.process(data_batch, [sample])
            self.results.append(inner[start:])
            del inner[start:]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        mine = [r for per_sample in results for r in per_sample]
        if not mine:
            raise ValueError(f'No {self.task!r} sample reached this metric: '
                             'check the task of its validation dataset.')
        return self.metric.compute_metrics(mine)
