"""VQA accuracy: the generated answer equals the reference answer."""
import re
from typing import Dict, Sequence

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces (VQA rule)."""
    text = re.sub(r'[^\w\s]', ' ', text.lower())
    return ' '.join(w for w in text.split() if w not in ('a', 'an', 'the'))


@METRICS.register_module()
class VQAMetric(BaseMetric):
    """Exact-match accuracy of ``pred_text`` against the last answer of the
    sample's conversation (``answers`` in its metainfo), and per question
    kind (``accuracy_<kind>``) when the samples carry a ``question_type``
    (the ``type`` of a LLaVA-Instruct-style item)."""
    default_prefix = 'vqa'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append((
                normalize_answer(sample['pred_text']) == normalize_answer(
                    sample['answers'][-1]), sample.get('question_type')))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = dict(
            accuracy=sum(r for r, _ in results) / max(len(results), 1))
        for kind in sorted({k for _, k in results if k is not None}):
            hits = [r for r, k in results if k == kind]
            metrics[f'accuracy_{kind}'] = sum(hits) / len(hits)
        return metrics
