"""Every config under configs/lumen/ builds, so that none rots.

Lumen-Shapes configs build their tiny model and datasets on the test data.
The paper-scale configs (the paper model, its test configs, strategies and
ablations; found by glob, so new ones are checked too) build their model
with a tiny-model override and no weights, and every registry name they use
(datasets, transforms, metrics, hooks, optimizers, schedulers, strategies)
must resolve.
"""
import inspect
import re

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from conftest import REPO, tiny_config, tiny_model

CONFIG_ROOT = REPO / 'configs/lumen'
CONFIGS = sorted((CONFIG_ROOT / 'shapes').glob('*.py'))
PAPER_CONFIGS = sorted(
    p for p in CONFIG_ROOT.rglob('*.py')
    if not {'_base_', 'shapes'} & set(p.relative_to(CONFIG_ROOT).parts))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path, shapes_root, tmp_path):
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    from mmdet.registry import DATASETS, MODELS
    cfg = tiny_config(path, shapes_root, tmp_path)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'Lumen'
    assert type(model.neck).__name__ == cfg.model.neck.type
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    assert train_set.num_samples == 8 and len(train_set) > 0
    assert len(DATASETS.build(cfg.val_dataloader.dataset)) > 0
    assert _flushes_denormals(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper).__name__ == cfg.optim_wrapper.type


def test_the_aligner_ablation_is_a_config():
    names = {p.stem for p in CONFIGS}
    assert {'lumen_tiny_shapes_det_ground',
            'lumen_tiny_shapes_det_ground_transformer'} <= names


# -- paper-scale configs ------------------------------------------------------
def _registries():
    import mmengine._strategy  # noqa: F401  (registers the strategies)
    import mmpose.datasets  # noqa: F401
    from mmdet import registry as r
    from mmengine.registry import STRATEGIES

    import lumen_mm  # noqa: F401
    return dict(
        model=r.MODELS, dataset=r.DATASETS, pipeline=r.TRANSFORMS,
        sampler=r.DATA_SAMPLERS, metric=r.METRICS, evaluator=r.EVALUATOR,
        hook=r.HOOKS, optim_wrapper=r.OPTIM_WRAPPERS, optimizer=r.OPTIMIZERS,
        scheduler=r.PARAM_SCHEDULERS, strategy=STRATEGIES, runner=r.RUNNERS)


def _types(node, kind, found):
    """(registry kind, type name) of every ``type`` in a config subtree."""
    child_kind = dict(pipeline='pipeline', sampler='sampler',
                      optimizer='optimizer', metrics='metric',
                      metric='metric', auto_wrap_policy=None)
    if isinstance(node, dict):
        if isinstance(node.get('type'), str) and kind:
            found.add((kind, node['type']))
        for key, value in node.items():
            _types(value, child_kind.get(key, kind), found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _types(value, kind, found)
    return found


def _registry_names(cfg) -> set:
    found = set()
    _types(cfg.model, 'model', found)
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader') or {}
        _types(loader.get('dataset'), 'dataset', found)
        _types(loader.get('sampler'), 'sampler', found)
        evaluator = cfg.get(f'{split}_evaluator')
        if evaluator:
            kind = ('evaluator' if str(evaluator.get('type')).endswith(
                'MultiDatasetsEvaluator') else 'metric')
            _types(evaluator, kind, found)
    _types(list(cfg.get('custom_hooks', [])), 'hook', found)
    _types(dict(cfg.default_hooks), 'hook', found)
    _types(cfg.get('optim_wrapper'), 'optim_wrapper', found)
    _types(cfg.get('param_scheduler'), 'scheduler', found)
    _types(cfg.get('strategy'), 'strategy', found)
    if 'runner_type' in cfg:
        found.add(('runner', cfg.runner_type))
    return found


def _flushes_denormals(cfg: Config) -> bool:
    """The config keeps the runtime's FlushDenormalHook (a config that sets
    its own custom_hooks replaces the runtime's list)."""
    return any(h['type'] == 'FlushDenormalHook'
               for h in cfg.get('custom_hooks', []))


@pytest.fixture(scope='module')
def built_models():
    """Each distinct tiny model is built once (most ablations only change
    data or schedules)."""
    return {}


def test_paper_configs_exist():
    names = {str(p.relative_to(CONFIG_ROOT).with_suffix(''))
             for p in PAPER_CONFIGS}
    table1 = {f'lumen_llava-v1.1-7b_test_{t}' for t in (
        'coco-det', 'coco-instance', 'coco-pose', 'refcocog-ground',
        'refcocog-refseg', 'voc07-zeroshot', 'fsc147-count')}
    ablations = {f'ablations/{n}' for n in (
        'table2_1_no-det', 'table2_2_no-ground', 'table2_3_no-pose',
        'table2_4_no-vqa', 'table2_5_all-tasks', 'table3a_conv-aligner',
        'table3a_transformer-aligner', 'table3b_input-256',
        'table3b_input-448', 'table3b_input-896', 'table3c_clip-vit-l14',
        'table3d_topk-20', 'table3d_topk-50', 'table3d_topk-100',
        'table3d_topk-200', 'table3e_10k-iters', 'table3e_20k-iters',
        'table3e_30k-iters', 'table3e_40k-iters', 'table3e_50k-iters',
        'llava-1.5-7b')}
    main = {'lumen_llava-v1.1-7b_lora_448_multitask_50k',
            'lumen_llava-v1.1-7b_lora_448_multitask_50k_deepspeed-zero2',
            'lumen_llava-v1.1-7b_lora_448_multitask_50k_fsdp'}
    assert table1 | ablations | main <= names


@pytest.mark.parametrize(
    'path', PAPER_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_paper_config_builds(path, tokenizer_dir, built_models):
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    registries = _registries()
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.get('default_scope', 'mmdet'))

    # the paper's number it should reproduce, or why there is none
    assert re.search(r'^# .*[Pp]aper', path.read_text(), re.M), \
        f'{path.name} states no paper number in its comments'

    unknown = sorted(f'{kind}:{name}'
                     for kind, name in _registry_names(cfg)
                     if registries[kind].get(name) is None)
    assert not unknown, f'unregistered names in {path.name}: {unknown}'
    assert _flushes_denormals(cfg)

    strategy = cfg.get('strategy')
    if strategy is not None:  # the arguments fit the strategy
        args = dict(strategy)
        cls = registries['strategy'].get(args.pop('type'))
        inspect.signature(cls.__init__).bind(None, **args)

    model_cfg = tiny_model(cfg, tokenizer_dir)
    key = repr(model_cfg)
    if key not in built_models:
        built_models[key] = MODELS.build(model_cfg)
    model = built_models[key]
    assert type(model).__name__ == 'Lumen'
    assert type(model.neck).__name__ == cfg.model.neck.type
    backbone = cfg.model.backbone
    assert model.backbone.aligner_image_size == backbone.aligner_image_size
    assert model.backbone.image_size == backbone.image_size
    assert (backbone.lora is None) == (
        not hasattr(model.backbone.llava, 'peft_config'))
    assert (model.mask_head is None) == (not cfg.model.get('mask_head'))
    assert model.test_cfg['det']['topk'] == cfg.model.test_cfg.det.topk


# -- what the paper config trains (issue 32 item 2) ---------------------------
_PROMPT_TASKS = dict(LumenDetPrompts='det', LumenGroundPrompts='ground',
                     LumenPosePrompts='pose', LumenCountPrompts='count',
                     LumenVQAPrompts='vqa')


def _asked_tasks(node, found: set) -> set:
    """The task of every Lumen*Prompts step in a config subtree."""
    if isinstance(node, dict):
        if node.get('type') in _PROMPT_TASKS:
            found.add(node.get('task', _PROMPT_TASKS[node['type']]))
        for value in node.values():
            _asked_tasks(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _asked_tasks(value, found)
    return found


def _rates(name: str) -> dict:
    dataset = Config.fromfile(str(CONFIG_ROOT / name)).train_dataloader.dataset
    return {t: r for t, r in dataset.sample_rates.items() if r}


def test_paper_config_trains_every_instruction_it_tests():
    """Mask instructions are trained on the detection and grounding data at
    half their tasks' rates; every Table 1 test config asks a trained task
    (counting is zero-shot, Sec. 4.4.2); Table 2 drops a task's data with
    the mask conversations built from it."""
    main = 'lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
    dataset = Config.fromfile(str(CONFIG_ROOT / main)).train_dataloader.dataset
    for task, task_data in dataset.datasets.items():
        assert _asked_tasks(task_data, set()) == {task}
    rates = _rates(main)
    assert set(rates) == {'det', 'seg', 'ground', 'refseg', 'pose', 'vqa'}
    assert rates['det'] == rates['seg'] == pytest.approx(0.56 / 2)
    assert rates['ground'] == rates['refseg'] == pytest.approx(0.19 / 2)
    assert (rates['pose'], rates['vqa']) == (0.19, 0.06)
    tests = sorted(CONFIG_ROOT.glob('lumen_llava-v1.1-7b_test_*.py'))
    assert len(tests) == 7
    for path in tests:
        asked = _asked_tasks(Config.fromfile(str(path)).test_dataloader,
                             set())
        assert asked and asked - {'count'} <= set(rates), path.name
    dropped = {'table2_1_no-det': {'det', 'seg'},
               'table2_2_no-ground': {'ground', 'refseg'},
               'table2_3_no-pose': {'pose'}, 'table2_4_no-vqa': {'vqa'},
               'table2_5_all-tasks': set()}
    for name, gone in dropped.items():
        assert set(_rates(f'ablations/{name}.py')) == set(rates) - gone
    for variant in ('_fsdp', '_deepspeed-zero2'):
        assert _rates(main.replace('.py', variant + '.py')) == rates
