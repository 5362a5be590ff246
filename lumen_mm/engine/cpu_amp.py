"""Mixed precision on the CPU: the training step under bfloat16 autocast.

mmengine's ``AmpOptimWrapper`` refuses to run without a GPU, and its loss
scaling is for float16. bfloat16 keeps float32's exponent range, so on the
CPU autocast alone does it: convolutions and matrix products run in
bfloat16 (the AVX-512 BF16 instructions), the weights, gradients and
optimiser state stay float32. On the README's 2-core CPU, a training step
of the all-task Shapes config took 0.60-0.63 s against 0.78-0.80 s (with
``attn_implementation='eager'``, see :class:`LlavaLMM`). Evaluation is not
affected: the val and test loops run outside the optimiser's context, in
float32.
"""
from contextlib import contextmanager

import torch
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.optim import OptimWrapper
from torch import nn


@OPTIM_WRAPPERS.register_module()
class CpuAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward (``optim_context``) runs under
    ``torch.autocast('cpu', dtype=torch.bfloat16)``.

    On a GPU, use mmengine's ``AmpOptimWrapper`` instead.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        if dtype != 'bfloat16':
            raise ValueError(
                f'CpuAmpOptimWrapper autocasts to bfloat16 only, got '
                f'dtype={dtype!r}: float16 needs loss scaling, which '
                "mmengine's AmpOptimWrapper does on a GPU.")
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module):
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
        if device.type != 'cpu':
            raise RuntimeError(
                f'CpuAmpOptimWrapper autocasts CPU operations, but the model '
                f'is on {device}: use optim_wrapper=dict(type='
                "'AmpOptimWrapper', dtype='bfloat16') there.")
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
