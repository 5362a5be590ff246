from .counting_metric import CountingMetric
from .grounding_metric import GroundingMetric
from .multi_datasets_evaluator import LumenMultiDatasetsEvaluator
from .pose_metric import LumenPoseMetric
from .refseg_metric import LumenRefSegMetric
from .task_metric import LumenTaskMetric
from .vqa_metric import VQAMetric

__all__ = [
    "GroundingMetric", "CountingMetric", "LumenMultiDatasetsEvaluator",
    "LumenPoseMetric", "LumenRefSegMetric", "LumenTaskMetric", "VQAMetric"
]
