from .counting_metric import CountingMetric
from .grounding_metric import GroundingMetric
from .pose_metric import LumenPoseMetric
from .refseg_metric import LumenRefSegMetric
from .task_metric import LumenTaskMetric
from .vqa_metric import VQAMetric

__all__ = [
    "GroundingMetric", "CountingMetric", "LumenPoseMetric", "LumenRefSegMetric",
    "LumenTaskMetric", "VQAMetric"
]
