"""Prompt modes (shared / batched / per-prompt), LLM token counting and
``tools/benchmark.py`` on the tiny Lumen-Shapes model."""
import copy
import json

import pytest
import torch
from mmengine.dataset import pseudo_collate

from lumen_mm.benchmark import STAGES, TokenCounter, drop_weights, main

MODES = ('shared', 'batched', 'per_prompt')


@pytest.fixture
def model_and_val(tiny_cfg):
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS, MODELS
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(tiny_cfg.model)).eval()
    val_set = DATASETS.build(copy.deepcopy(tiny_cfg.val_dataloader.dataset))
    return model, val_set


def _detect(model, val_set, mode, prompts=None):
    """Detections on two val images in ``mode``; ``prompts`` (one list per
    image) replaces their class prompts."""
    model.backbone.prompt_mode = mode
    samples = [val_set[0], val_set[1]]
    for sample, texts in zip(samples, prompts or []):
        sample['data_samples'].set_metainfo(
            dict(prompts=texts, prompt_labels=list(range(len(texts)))))
    with torch.no_grad():
        return [s.pred_instances for s in model.test_step(
            pseudo_collate(samples))]


def test_prompt_modes_give_the_same_detections(model_and_val):
    model, val_set = model_and_val
    results = {mode: _detect(model, val_set, mode) for mode in MODES}
    for mode in ('batched', 'per_prompt'):
        for ref, other in zip(results['shared'], results[mode]):
            assert len(ref) > 0 and len(ref) == len(other)
            assert torch.allclose(ref.scores, other.scores, atol=1e-4)
            assert torch.allclose(ref.bboxes, other.bboxes, atol=1e-4)
            assert torch.equal(ref.labels, other.labels)


def test_llm_token_counts(model_and_val):
    model, val_set = model_and_val
    texts = [['circle', 'the big red star left of the square', 'blue cross'],
             ['small green triangle', 'star']]
    conv = model.backbone.conversation
    prompts = [[conv.location_prompt('det', t, with_answer=False) for t in ts]
               for ts in texts]
    prefix = prompts[0][0].prefix_len
    suffixes = [[len(p.input_ids) - prefix for p in ps] for ps in prompts]
    full = [len(p.input_ids) for ps in prompts for p in ps]
    assert len({s for ss in suffixes for s in ss}) > 1  # padding matters
    counts = {}
    for mode in MODES:
        counter = TokenCounter(model.backbone)
        _detect(model, val_set, mode, texts)
        counter.remove()
        counts[mode] = dict(counter.totals)
    # removed, the counter counts no more: the model holds no counting code
    _detect(model, val_set, 'shared', texts)
    assert dict(counter.totals) == counts['per_prompt']
    bound = 2 * prefix + sum(map(sum, suffixes))
    assert counts['shared'] == dict(
        processed=2 * (prefix + max(map(sum, suffixes))),
        prefix_and_suffixes=bound,
        full_prompts=sum(full))
    assert counts['batched']['processed'] == len(full) * max(full)
    assert counts['per_prompt']['processed'] == sum(full)
    assert counts['shared']['processed'] <= 1.1 * bound
    assert counts['shared']['processed'] < counts['per_prompt']['processed']
    # one packed call per suffix: each computes the image's prefix again
    model.backbone.max_packed_tokens = 1
    counter = TokenCounter(model.backbone)
    _detect(model, val_set, 'shared', texts)
    counter.remove()
    model.backbone.max_packed_tokens = 4096
    assert counter.totals['processed'] == sum(full)


def _run(cfg_path, tmp_path, *extra):
    out = tmp_path / 'bench.json'
    report = main([str(cfg_path), '--random-init', '--images', '2',
                   '--threads', '1', '--json', str(out), *extra])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    return report


@pytest.fixture
def cfg_path(tiny_cfg, tmp_path):
    path = tmp_path / 'tiny.py'
    tiny_cfg.dump(str(path))
    return path


def test_benchmark_both_modes_write_json(cfg_path, tmp_path):
    shared = _run(cfg_path, tmp_path, '--classes', '8', '--mode', 'shared')
    naive = _run(cfg_path, tmp_path, '--classes', '8', '--mode', 'naive')
    for report in (shared, naive):
        assert report['images'] == 2 and report['classes'] == 8
        assert report['images_per_s'] > 0 and report['peak_memory_gib'] > 0
        assert set(report['stage_ms_per_image']) == {*STAGES, 'other'}
        assert report['stage_ms_per_image']['aligner'] > 0
        assert report['stage_ms_per_image']['vision_lmm'] > 0
        assert report['device_name'] and {'torch', 'transformers'} <= set(
            report['versions'])
    stages = shared['stage_ms_per_image']
    assert stages['llm_prefix'] > 0 and stages['llm_suffixes'] > 0
    assert stages['llm_full_prompts'] == 0
    assert naive['stage_ms_per_image']['llm_prefix'] == 0
    assert naive['prompt_mode'] == 'per_prompt'
    assert shared['llm_tokens_per_image'] <= \
        1.1 * shared['llm_tokens_prefix_and_suffixes_per_image']
    assert naive['llm_tokens_per_image'] == \
        naive['llm_tokens_full_prompts_per_image']
    assert naive['llm_tokens_per_image'] > 2 * shared['llm_tokens_per_image']


def test_benchmark_trains_with_lora_and_checkpointing(tiny_cfg, tmp_path):
    tiny_cfg.model.backbone.update(
        lora=dict(r=4, lora_alpha=8), freeze_vision=True)
    path = tmp_path / 'lora.py'
    tiny_cfg.dump(str(path))
    report = _run(path, tmp_path, '--train', '--train-data', 'synthetic',
                  '--classes', '2', '--batch-size', '2',
                  '--grad-checkpointing', '--dtype', 'bf16')
    assert report['task'] == 'train' and report['lora']
    assert report['gradient_checkpointing']
    assert report['samples_per_s'] > 0
    assert 0 < report['trainable_parameters'] < report['parameters']
    assert torch.isfinite(torch.tensor(report['last_loss']))


def test_training_benchmark_draws_the_configs_mix(cfg_path, tiny_cfg,
                                                  tmp_path):
    """--train times batches of the config's own training draw and reports
    each step's images, prompts and LLM tokens by task, and a profile."""
    from lumen_mm.analysis.prompt_budget import prompt_budget
    report = _run(cfg_path, tmp_path, '--train', '--images', '6',
                  '--batch-size', '3', '--profile',
                  str(tmp_path / 'prof.txt'))
    assert report['train_data'] == 'config' and len(report['steps']) == 2
    tasks = set(tiny_cfg.train_dataloader.dataset.sample_rates)
    for step in report['steps']:
        assert step['seconds'] > 0 and set(step['images']) <= tasks
        assert sum(step['images'].values()) == 3
        assert set(step['prompts']) == set(step['llm_tokens']) == set(
            step['images'])
    prompts = sum(sum(s['prompts'].values()) for s in report['steps'])
    assert report['prompts_per_step'] == prompts / 2
    assert report['prompts_per_s'] == pytest.approx(
        report['samples_per_s'] * prompts / 6)
    # the same draw as the prompt budget's (warm-up batch first)
    budget = prompt_budget(tiny_cfg, num_batches=3, batch_size=3)
    assert prompts / 2 <= budget['total']['prompts_per_batch_max']
    assert 'aten::' in (tmp_path / 'prof.txt').read_text()


def test_training_benchmark_keeps_the_configs_float32_modules(tiny_cfg,
                                                              tmp_path):
    """A CPU bfloat16 training benchmark runs the step as the config's
    CpuAmpOptimWrapper does: its float32 modules out of the autocast (a
    module the model lacks fails by name)."""
    tiny_cfg.optim_wrapper = dict(
        type='CpuAmpOptimWrapper', float32_modules=['neck.text_proj'],
        optimizer=dict(type='AdamW', lr=1e-4))
    path = tmp_path / 'fp32.py'
    tiny_cfg.dump(str(path))
    args = ('--train', '--train-data', 'synthetic', '--classes', '2',
            '--batch-size', '2')
    report = _run(path, tmp_path, *args, '--dtype', 'bf16')
    assert report['float32_modules'] == ['neck.text_proj']
    assert torch.isfinite(torch.tensor(report['last_loss']))
    assert _run(path, tmp_path, *args)['float32_modules'] == []
    tiny_cfg.optim_wrapper.float32_modules = ['neck.no_such_proj']
    tiny_cfg.dump(str(path))
    with pytest.raises(AttributeError, match="'neck.no_such_proj'"):
        _run(path, tmp_path, *args, '--dtype', 'bf16')


def test_random_init_uses_the_config_shapes(tiny_cfg, tmp_path):
    """The paper config names LLaVA weights that are not here: --random-init
    builds the same shapes without them; without shapes it says so."""
    backbone = tiny_cfg.model.backbone
    backbone.pretrained = str(tmp_path / 'llava-7b-not-here')
    path = tmp_path / 'paper_like.py'
    tiny_cfg.dump(str(path))
    report = _run(path, tmp_path, '--classes', '2', '--image-size', '64')
    assert report['weights'] == 'random-init' and report['image_size'] == 64
    assert report['dropped_weights'] == ['model.backbone.pretrained']
    with pytest.raises(FileNotFoundError, match='config.json'):
        main([str(path), '--images', '1', '--json', str(tmp_path / 'x')])

    del backbone.text_config
    tiny_cfg.dump(str(path))
    with pytest.raises(ValueError, match='text_config'):
        main([str(path), '--random-init', '--json', str(tmp_path / 'x')])


def test_drop_weights_finds_every_weight_file():
    cfg = dict(backbone=dict(pretrained='llava', tokenizer='tok'),
               mask_head=dict(checkpoint='sam.pth'),
               necks=[dict(init_cfg=dict(type='Pretrained', checkpoint='x')),
                      dict(init_cfg=dict(type='Xavier'))])
    assert drop_weights(cfg) == [
        'model.backbone.pretrained', 'model.mask_head.checkpoint',
        'model.necks[0].init_cfg'
    ]
    assert cfg['backbone'] == dict(pretrained=None, tokenizer='tok')
    assert cfg['necks'][1]['init_cfg'] == dict(type='Xavier')


def test_missing_tokenizer_names_the_flag(tiny_cfg, tmp_path):
    tiny_cfg.model.backbone.tokenizer = str(tmp_path / 'no-tokenizer')
    path = tmp_path / 'no_tok.py'
    tiny_cfg.dump(str(path))
    with pytest.raises(FileNotFoundError, match='--tokenizer'):
        main([str(path), '--random-init', '--json', str(tmp_path / 'x')])
