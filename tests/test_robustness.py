"""Training robustness (issue 8): degenerate targets, clipping, AMP overflow.

mmengine's ``AmpOptimWrapper`` asserts that a GPU (or NPU/MLU/MUSA) is present,
and its default ``torch.cuda.amp.GradScaler`` disables itself without CUDA.
To run mmengine's own AMP code on this CPU, the tests below lift that
assertion and give the wrapper torch's CPU ``GradScaler``; everything else
(autocast context, scaled backward, unscale + clip, skipped step, scale
update) is mmengine's and torch's.
"""
import copy
from pathlib import Path
from unittest import mock

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

from conftest import SHAPES_CONFIG, tiny_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / 'configs/lumen').glob('*/*.py'))
CONFIGS = [p for p in CONFIGS if p.parent.name != '_base_']


@pytest.fixture(scope='module')
def built(shapes_root, tmp_path_factory):
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    from mmdet.registry import DATASETS, MODELS
    init_default_scope('mmdet')
    cfg = tiny_config(SHAPES_CONFIG, shapes_root,
                      tmp_path_factory.mktemp('work'))
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model))
    det_set = DATASETS.build(
        copy.deepcopy(cfg.train_dataloader.dataset.datasets.det))
    return cfg, model, det_set


def _set_targets(sample, boxes, labels, prompt_labels):
    """Replace a detection sample's objects and the classes it asks about."""
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.structures import InstanceData
    data_sample = sample['data_samples']
    data_sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32)
                               .reshape(-1, 4)),
        labels=torch.tensor(labels, dtype=torch.long))
    classes = data_sample.metainfo['prompts']
    names = dict(zip(data_sample.metainfo['prompt_labels'], classes))
    data_sample.set_metainfo(
        dict(prompts=[names[i] for i in prompt_labels],
             prompt_labels=list(prompt_labels)))
    return sample


def _no_objects(det_set):
    return [_set_targets(det_set[0], [], [], range(6))]


def _all_absent(det_set):
    """Two images, each asked only about classes it does not contain."""
    samples = []
    for i in range(2):
        sample = det_set[i]
        present = set(sample['data_samples'].gt_instances.labels.tolist())
        absent = [c for c in range(6) if c not in present]
        assert absent, 'the image holds every class'
        gt = sample['data_samples'].gt_instances
        samples.append(
            _set_targets(sample, gt.bboxes.tensor.tolist(),
                         gt.labels.tolist(), absent))
    return samples


def _one_pixel_object(det_set):
    return [_set_targets(det_set[0], [[40., 60., 41., 61.]], [2], [2, 4])]


@pytest.mark.parametrize('make_batch',
                         [_no_objects, _all_absent, _one_pixel_object],
                         ids=['no-objects', 'all-negative', 'one-pixel'])
def test_finite_losses_and_grads(built, make_batch):
    _, model, det_set = built
    model.train()
    model.zero_grad()
    batch = pseudo_collate(make_batch(det_set))
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(**data)
    assert set(losses) >= {'loss_heatmap', 'loss_wh', 'loss_lm'}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses['loss_heatmap'] > 0  # empty heatmaps still teach "none"
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.neck.text_proj[0].weight.grad.abs().sum() > 0


def test_configs_clip_gradients():
    """Every config clips gradients; mmengine's wrapper picks the setting up
    (built here for the CPU configs; AmpOptimWrapper needs a GPU)."""
    assert CONFIGS
    unclipped = []
    for path in CONFIGS:
        optim_wrapper = Config.fromfile(str(path)).optim_wrapper
        if optim_wrapper.get('clip_grad', {}).get('max_norm', 0) <= 0:
            unclipped.append(path.name)
        elif optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
            wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), optim_wrapper)
            assert wrapper.clip_grad_kwargs == optim_wrapper.clip_grad
    assert not unclipped, f'configs without gradient clipping: {unclipped}'


def _cpu_amp_wrapper(model, optim_wrapper_cfg, **amp):
    """mmengine's AmpOptimWrapper on the CPU, with torch's CPU GradScaler."""
    cfg = dict(optim_wrapper_cfg, type='AmpOptimWrapper', **amp)
    with pytest.raises(AssertionError, match='only available'):
        build_optim_wrapper(model, cfg)  # what --amp does on a CPU
    with mock.patch(
            'mmengine.optim.optimizer.amp_optimizer_wrapper.'
            'is_cuda_available',
            return_value=True):
        wrapper = build_optim_wrapper(model, cfg)
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**10)
    return wrapper


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_bf16_autocast_trains_the_tiny_model(built):
    cfg, model, det_set = built
    model.train()
    wrapper = _cpu_amp_wrapper(model, cfg.optim_wrapper, dtype='bfloat16')
    dtypes = set()
    hook = model.neck.text_proj[0].register_forward_hook(
        lambda module, args, out: dtypes.add(out.dtype))
    before = _params(model)
    try:
        log = model.train_step(pseudo_collate([det_set[0], det_set[1]]),
                               wrapper)
    finally:
        hook.remove()
    assert dtypes == {torch.bfloat16}  # autocast ran the aligner in bf16
    assert all(torch.isfinite(v) for v in log.values())
    after = _params(model)
    assert all(torch.isfinite(p).all() for p in after.values())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_loss_scaler_skips_an_overflowing_step(built):
    """fp16 overflow: inf gradients -> no update, smaller loss scale."""
    cfg, model, det_set = built
    model.train()
    wrapper = _cpu_amp_wrapper(model, cfg.optim_wrapper, loss_scale='dynamic')
    assert wrapper.clip_grad_kwargs  # the config's clipping runs too
    data = model.data_preprocessor(
        pseudo_collate([det_set[0]]), training=True)

    def loss(scale: float):
        loss, _ = model.parse_losses(model.loss(**copy.deepcopy(data)))
        return loss * scale

    before = _params(model)
    scale = wrapper.loss_scaler.get_scale()
    wrapper.update_params(loss(float('inf')))
    assert wrapper.loss_scaler.get_scale() == scale / 2
    after = _params(model)
    assert all(torch.equal(before[n], after[n]) for n in before)

    wrapper.update_params(loss(1.0))
    after = _params(model)
    assert all(torch.isfinite(p).all() for p in after.values())
    assert any(not torch.equal(before[n], after[n]) for n in before)
