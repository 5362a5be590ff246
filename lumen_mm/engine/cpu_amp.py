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
from contextlib import ExitStack, contextmanager
from typing import Any, Sequence

import torch
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.optim import OptimWrapper
from mmengine.utils import apply_to
from torch import nn


@OPTIM_WRAPPERS.register_module()
class CpuAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward (``optim_context``) runs under
    ``torch.autocast('cpu', dtype=torch.bfloat16)``.

    ``float32_modules`` names submodules (``model.get_submodule`` paths,
    e.g. ``'backbone.llava.model.language_model'``) whose forward runs
    without the autocast, on float32 inputs: the parts where bfloat16's 8-bit
    mantissa costs accuracy (docs/studies/bf16_cpu.md).

    On a GPU, use mmengine's ``AmpOptimWrapper`` instead.
    """

    def __init__(self,
                 dtype: str = 'bfloat16',
                 float32_modules: Sequence[str] = (),
                 **kwargs) -> None:
        if dtype != 'bfloat16':
            raise ValueError(
                f'CpuAmpOptimWrapper autocasts to bfloat16 only, got '
                f'dtype={dtype!r}: float16 needs loss scaling, which '
                "mmengine's AmpOptimWrapper does on a GPU.")
        if isinstance(float32_modules, str):
            float32_modules = (float32_modules, )
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16
        self.float32_modules = tuple(float32_modules)

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
                'cpu', dtype=self.cast_dtype), ExitStack() as stack:
            # DDP and FSDP wrappers hold the model as .module
            inner = getattr(model, 'module', model)
            for name in self.float32_modules:
                stack.enter_context(_in_float32(_submodule(inner, name)))
            yield


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        tops = ', '.join(n for n, _ in model.named_children())
        raise AttributeError(
            f'CpuAmpOptimWrapper(float32_modules=...) names {name!r}, which '
            f'{type(model).__name__} does not have; give a dotted path from '
            f'the model (its top-level modules: {tops}), as '
            'model.named_modules() lists it.') from None


def _to_float32(data: Any) -> Any:
    """Floating tensors in ``data`` (nested lists, tuples, dicts) as
    float32."""
    return apply_to(
        data, lambda x: isinstance(x, torch.Tensor) and x.is_floating_point(),
        lambda x: x.float())


@contextmanager
def _in_float32(module: nn.Module):
    """While the context lasts, ``module``'s forward runs on float32 inputs
    with the autocast off (an instance attribute shadows the class's
    forward; ``nn.Module.__call__`` calls ``self.forward``)."""
    own = module.__dict__.get('forward')
    forward = module.forward

    def float32_forward(*args, **kwargs):
        with torch.autocast('cpu', enabled=False):
            return forward(*_to_float32(args), **_to_float32(kwargs))

    module.forward = float32_forward
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own
