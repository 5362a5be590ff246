"""bfloat16 autocast on the CPU: the wrapper, the losses kept in float32,
and eager attention in the LMM."""
import pytest
import torch
from torch import nn

from lumen_mm.engine import CpuAmpOptimWrapper
from lumen_mm.models import HeatmapHead, LlavaLMM

from test_llava_lmm import TINY


def _wrapper(model):
    return CpuAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_forward_in_bfloat16_update_in_float32():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = model.weight.detach().clone()
    wrapper = _wrapper(model)
    with wrapper.optim_context(model):
        out = model(torch.randn(5, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32
    assert model.weight.grad is None  # update_params zeroes the gradients
    assert not torch.equal(model.weight, before)
    # outside the context (evaluation) nothing is cast
    assert model(torch.randn(5, 4)).dtype == torch.float32


def test_refuses_float16_and_models_off_the_cpu():
    with pytest.raises(ValueError, match='bfloat16 only'):
        CpuAmpOptimWrapper(
            optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1),
            dtype='float16')
    model = nn.Linear(2, 2, device='meta')
    with pytest.raises(RuntimeError, match='AmpOptimWrapper'):
        with _wrapper(model).optim_context(model):
            pass


def test_float32_modules_run_without_the_autocast():
    """A named submodule computes in float32 on float32 inputs inside the
    training context, and is itself again afterwards."""
    seen = []

    class Recording(nn.Linear):

        def forward(self, x):
            out = super().forward(x)
            seen.append((x.dtype, out.dtype))
            return out

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(Recording(4, 3)))
    wrapper = CpuAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        float32_modules=['1.0'])
    x = torch.randn(5, 4)
    with wrapper.optim_context(model):
        out = model(x)
    assert seen == [(torch.float32, torch.float32)]
    assert out.dtype == torch.float32
    # the first layer still ran in bfloat16: its output is what the float32
    # layer was given, rounded
    with torch.autocast('cpu', dtype=torch.bfloat16):
        first = model[0](x)
    assert torch.equal(out, model[1](first.float()))
    assert 'forward' not in vars(model[1][0])
    # the gradient reaches the bfloat16 layer through the float32 one
    out.pow(2).mean().backward()
    assert model[0].weight.grad.abs().sum() > 0
    with pytest.raises(AttributeError, match="'2.0'.*top-level modules: 0, 1"):
        with CpuAmpOptimWrapper(
                optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                float32_modules='2.0').optim_context(model):
            pass


def test_heatmap_losses_in_float32_under_autocast():
    """bfloat16 maps give the losses of the same maps in float32: in
    bfloat16 the clamp to 1 - 1e-4 would round to 1."""
    torch.manual_seed(0)
    head = HeatmapHead()
    preds = dict(heatmap=torch.randn(2, 1, 16, 16) * 6,
                 wh=torch.randn(2, 2, 16, 16))
    boxes = [torch.tensor([[10., 12., 30., 40.]]),
             torch.tensor([[60., 70., 110., 100.]])]
    low = {k: v.bfloat16() for k, v in preds.items()}
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = head.loss(low, boxes, 8)
    want = head.loss({k: v.float() for k, v in low.items()}, boxes, 8)
    for name, value in got.items():
        assert value.dtype == torch.float32
        assert torch.equal(value, want[name]), name


def test_eager_attention_gives_the_sdpa_states(tokenizer_dir):
    torch.manual_seed(0)
    sdpa = LlavaLMM(tokenizer=tokenizer_dir, **TINY)
    torch.manual_seed(0)
    eager = LlavaLMM(
        tokenizer=tokenizer_dir, attn_implementation='eager', **TINY)
    config = eager.hf_model.config
    assert config.text_config._attn_implementation == 'eager'
    assert config.vision_config._attn_implementation == 'eager'
    conv = sdpa.conversation
    prompts = [conv.location_prompt('det', d)
               for d in ['circle', 'the left-most red star', 'square']]
    images = torch.randn(2, 3, 64, 64)
    outs = []
    for lmm in (sdpa, eager):
        embeds, _ = lmm.encode_images(images)
        outs.append(lmm.forward_prompts(embeds, [0, 1, 1], prompts))
    assert torch.allclose(outs[0].loc_states, outs[1].loc_states,
                          atol=1e-5)
