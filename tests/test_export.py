"""Trainable-only checkpoints and export, on a tiny LoRA Lumen whose LLaVA
comes from a Hugging Face directory written here (as the paper's does)."""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate

from lumen_mm.engine import filter_trainable, load_trainable_checkpoint


@pytest.fixture(scope='module')
def base_llava(shapes_root, tmp_path_factory):
    """A tiny pretrained LLaVA directory, the frozen base of the LoRA run."""
    from conftest import SHAPES_CONFIG, tiny_config

    from lumen_mm.models import LlavaLMM
    cfg = tiny_config(SHAPES_CONFIG, shapes_root,
                      tmp_path_factory.mktemp('unused'))
    backbone = dict(cfg.model.backbone)
    backbone.pop('type')
    torch.manual_seed(0)
    lmm = LlavaLMM(**backbone)
    out = tmp_path_factory.mktemp('base_llava')
    lmm.hf_model.save_pretrained(out)
    lmm.tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture
def lora_cfg(tiny_cfg, base_llava):
    """The tiny Shapes config on the pretrained base, with LoRA, trained 2
    iterations, saving trainable-only checkpoints."""
    cfg = tiny_cfg
    cfg.model.backbone.update(
        pretrained=base_llava, tokenizer=None, freeze_vision=True,
        lora=dict(r=4, lora_alpha=8))
    cfg.custom_hooks = [dict(type='TrainableCheckpointHook')]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=100)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    return cfg


def _runner(cfg):
    from lumen_mm.cli import build_runner
    return build_runner(copy.deepcopy(cfg))


def _state(model):
    model = getattr(model, 'module', model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_trainable_only_checkpoint_loads_back_and_resumes(lora_cfg):
    runner = _runner(lora_cfg)
    runner.train()
    trained = _state(runner.model)
    ckpt_file = f'{lora_cfg.work_dir}/iter_2.pth'
    ckpt = torch.load(ckpt_file, weights_only=False)
    keys = set(ckpt['state_dict'])
    assert ckpt['meta']['trainable_only']
    assert any('lora_A' in k for k in keys)
    assert any('trainable_tokens' in k for k in keys)
    assert any(k.startswith('neck.') for k in keys)
    assert not any('vision_tower' in k or 'base_layer' in k for k in keys)
    assert len(keys) < len(trained) / 2
    # every trainable parameter is there, and nothing frozen
    params = dict(runner.model.named_parameters())
    assert {k for k in keys if k in params} == {
        k for k, p in params.items() if p.requires_grad}

    # a fresh model (base from its pretrained files) gets the trained state
    fresh = _runner(dict(lora_cfg, load_from=ckpt_file))
    fresh.load_or_resume()
    loaded = _state(fresh.model)
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)

    # and training resumes from it, optimizer state included
    cfg = copy.deepcopy(lora_cfg)
    cfg.train_cfg.max_iters = 3
    cfg.resume = True
    cfg.load_from = ckpt_file
    resumed = _runner(cfg)
    resumed.train()
    assert resumed.iter == 3
    state = resumed.optim_wrapper.optimizer.state
    assert max(int(s['step']) for s in state.values()) == 3


def _outputs(model, batch):
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, training=False)
        return model._forward(**data)


def test_export_merges_lora_and_keeps_the_outputs(lora_cfg, tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.config import Config

    from lumen_mm.export import build_model, export_lumen
    torch.manual_seed(1)
    model = build_model(lora_cfg)
    # trained-looking weights: LoRA and the new token rows away from zero
    for name, p in model.named_parameters():
        trained = 'lora_B' in name or 'trainable_tokens' in name
        if p.requires_grad and trained:
            p.data.normal_(0, 0.5)
    ckpt = tmp_path / 'trained.pth'
    torch.save(dict(state_dict=filter_trainable(model, model.state_dict()),
                    meta=dict(trainable_only=True)), ckpt)

    dataset = DATASETS.build(copy.deepcopy(lora_cfg.test_dataloader.dataset))
    batch = pseudo_collate([dataset[0], dataset[len(dataset) - 1]])
    before = _outputs(model, batch)

    out = tmp_path / 'export'
    export_lumen(lora_cfg, str(ckpt), str(out))
    assert (out / 'llava' / 'config.json').is_file()
    assert not (out / 'llava' / 'adapter_config.json').exists()
    exported_cfg = Config.fromfile(str(out / 'config.py'))
    assert exported_cfg.model.backbone.lora is None
    exported = build_model(exported_cfg)
    assert not any('lora' in k for k in exported.state_dict())
    load_trainable_checkpoint(exported, exported_cfg.load_from)
    after = _outputs(exported, batch)
    for key in before:
        assert torch.allclose(before[key], after[key], atol=1e-4), key

    # the merge mattered: the exported LLM differs from the base
    base_cfg = copy.deepcopy(lora_cfg)
    base_cfg.model.backbone.lora = None
    base = build_model(base_cfg)
    name = 'model.language_model.layers.0.self_attn.q_proj.weight'
    assert not torch.allclose(
        base.backbone.hf_model.state_dict()[name],
        exported.backbone.hf_model.state_dict()[name])
