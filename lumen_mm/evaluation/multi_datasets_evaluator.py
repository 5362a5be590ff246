"""mmdet's evaluator of concatenated test sets, with metrics over all of it."""
from collections import OrderedDict

from mmdet.evaluation import MultiDatasetsEvaluator
from mmdet.registry import EVALUATOR


@EVALUATOR.register_module()
class LumenMultiDatasetsEvaluator(MultiDatasetsEvaluator):
    """``MultiDatasetsEvaluator`` that also evaluates the metrics after the
    ones of ``dataset_prefixes``, on every sample.

    mmdet's evaluator pairs metrics with dataset slices and silently skips
    any metric beyond them; mmdet's ``tools/test.py --out`` appends its
    ``DumpDetResults`` there, so on a multi-dataset config it wrote no file.
    Here the first ``len(dataset_prefixes)`` metrics score their dataset, as
    in mmdet, and the rest see the whole test set, as with mmengine's
    ``Evaluator``.
    """

    def evaluate(self, size: int) -> dict:
        """Per-dataset metrics (prefixed), then the others on all samples."""
        per_dataset = len(self.dataset_prefixes)
        extra = self.metrics[per_dataset:]
        self.metrics = self.metrics[:per_dataset]
        try:
            results = OrderedDict(super().evaluate(size))
        finally:
            self.metrics += extra
        for metric in extra:
            results.update(metric.evaluate(size))
        return results
