"""Inference API: run a Lumen config/checkpoint on pictures."""
from .inferencer import TASK_PROMPTS, LumenInferencer, load_image

__all__ = ['LumenInferencer', 'load_image', 'TASK_PROMPTS']
