"""Flush subnormal floats to zero while a Runner runs on the CPU.

As the tiny Lumen fits Lumen-Shapes, values in its backward pass become
subnormal (below 1.2e-38 in float32), and x86 CPUs compute on those
far more slowly than on normal floats. Resumed from iteration 1200 of the
all-task config, one training iteration took 1.26 s against 0.69 s with
subnormals flushed (the backward pass 0.94 s against 0.42 s); a run of
that config slowed from 0.92 s per iteration over its first 100 iterations
to 1.53 s over its last 100, and with subnormals flushed ran at 0.84 and
0.80 s. torch offers the switch (``torch.set_flush_denormal``) but no
hook that sets it for a run. What it zeroes is below 1.2e-38: the losses
and gradient norms logged over those 20 resumed iterations were the same
to four digits with and without it. It sets the CPU's mode only; GPU
kernels are untouched.
"""
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


def flushes_denormals() -> bool:
    """Whether CPU float arithmetic flushes subnormal results to zero now."""
    tiny = torch.finfo(torch.float32).tiny  # the smallest normal float32
    return (torch.tensor([tiny]) / 2).item() == 0.0


@HOOKS.register_module()
class FlushDenormalHook(Hook):
    """``torch.set_flush_denormal(True)`` for the run, restored after it."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        self._was_flushing = flushes_denormals()
        if not torch.set_flush_denormal(True):
            runner.logger.warning(
                'This CPU cannot flush subnormal floats to zero (torch needs '
                'SSE3): training on it may slow down as the model fits.')

    def after_run(self, runner) -> None:
        torch.set_flush_denormal(self._was_flushing)
