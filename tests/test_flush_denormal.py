"""FlushDenormalHook: subnormal floats flush to zero for a run, and the
previous mode comes back after it."""
from types import SimpleNamespace

import torch
from mmengine.logging import MMLogger

from lumen_mm.engine import FlushDenormalHook, flushes_denormals

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def test_hook_flushes_subnormals_for_the_run_and_restores_after():
    torch.set_flush_denormal(False)
    runner = SimpleNamespace(logger=MMLogger.get_instance('test_denormal'))
    hook = FlushDenormalHook()
    hook.before_run(runner)
    try:
        assert flushes_denormals()
        assert torch.full((4, ), TINY).mul(0.25).eq(0).all()
    finally:
        hook.after_run(runner)
    assert not flushes_denormals()
    assert torch.full((4, ), TINY).mul(0.25).ne(0).all()


def test_hook_keeps_flushing_when_it_was_on_before():
    torch.set_flush_denormal(True)
    runner = SimpleNamespace(logger=MMLogger.get_instance('test_denormal'))
    hook = FlushDenormalHook()
    try:
        hook.before_run(runner)
        hook.after_run(runner)
        assert flushes_denormals()
    finally:
        torch.set_flush_denormal(False)
