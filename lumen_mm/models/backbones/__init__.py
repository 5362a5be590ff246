from .llava_lmm import LlavaLMM

__all__ = ['LlavaLMM']
