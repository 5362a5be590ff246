"""lumen_mm plugs into mmdet: registries, ``custom_imports`` configs, tools."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# lumen_mm modules that must be reachable by bare name in mmdet's registries.
REGISTERED = {
    'MODELS': ['Lumen', 'TransformerDenseAligner', 'HeatmapHead'],
    'DATASETS': ['LumenMultiTaskDataset', 'LumenRefCocoDataset'],
    'METRICS': ['GroundingMetric'],
    'TRANSFORMS': ['LumenDetPrompts', 'LumenGroundPrompts',
                   'RandomFlipReferring'],
    'HOOKS': ['FlushDenormalHook', 'TrainableCheckpointHook'],
}


class _FakeDataset(list):
    """Stands in for a built task dataset: a sequence with ``metainfo``."""
    metainfo = dict(classes=('circle', ))


# One cheap config per registry, built by type name through mmdet's registry.
BUILDABLE = {
    'MODELS': dict(type='HeatmapHead'),
    'DATASETS': dict(
        type='LumenMultiTaskDataset',
        datasets=dict(det=_FakeDataset([{}])),
        sample_rates=dict(det=1.0),
        num_samples=2),
    'METRICS': dict(type='GroundingMetric'),
    'TRANSFORMS': dict(type='LumenDetPrompts'),
}


@pytest.mark.parametrize('registry_name, type_name', [
    (registry, name) for registry, names in REGISTERED.items()
    for name in names
])
def test_lumen_modules_in_mmdet_registries(registry_name, type_name):
    import lumen_mm  # noqa: F401
    import mmdet.registry

    registry = getattr(mmdet.registry, registry_name)
    assert registry.scope == 'mmdet'
    cls = registry.get(type_name)
    assert cls is not None, f'{type_name} is not in mmdet {registry_name}'
    assert cls.__module__.startswith('lumen_mm.')


@pytest.mark.parametrize('registry_name', sorted(BUILDABLE))
def test_build_lumen_module_by_name(registry_name):
    import lumen_mm  # noqa: F401
    import mmdet.registry
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = BUILDABLE[registry_name]
    obj = getattr(mmdet.registry, registry_name).build(dict(cfg))
    assert type(obj).__name__ == cfg['type']
    assert type(obj).__module__.startswith('lumen_mm.')


def test_custom_imports_config_builds_model(tmp_path):
    """A plain mmdet config that only names lumen_mm in custom_imports works.

    Runs in a fresh interpreter so that nothing but the config imports
    lumen_mm.
    """
    config = tmp_path / 'plugin_cfg.py'
    config.write_text(
        textwrap.dedent("""
        _base_ = 'mmdet::_base_/default_runtime.py'
        custom_imports = dict(imports=['lumen_mm'], allow_failed_imports=False)
        model = dict(type='HeatmapHead')
        """))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmdet.registry import MODELS

        assert 'lumen_mm' not in sys.modules
        cfg = Config.fromfile({str(config)!r})
        assert 'lumen_mm' in sys.modules
        assert 'default_hooks' in cfg  # the mmdet:: base was resolved
        init_default_scope('mmdet')
        model = MODELS.build(cfg.model)
        print(type(model).__module__, type(model).__name__)
        """)
    proc = subprocess.run([sys.executable, '-c', script],
                          capture_output=True,
                          text=True,
                          cwd=tmp_path,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, name = proc.stdout.split()[-2:]
    assert module.startswith('lumen_mm.') and name == 'HeatmapHead'


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tool_help(tool):
    proc = subprocess.run(
        [sys.executable, str(REPO / 'tools' / f'{tool}.py'), '--help'],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '--cfg-options' in proc.stdout and '--launcher' in proc.stdout
    if tool == 'test':
        assert '--metrics-json' in proc.stdout


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_missing_config_is_a_clear_error(tool, capsys):
    from importlib import import_module
    main = import_module(f'lumen_mm.cli.{tool}').main
    argv = ['no/such/config.py'] + (['ckpt.pth'] if tool == 'test' else [])
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert 'config file not found' in capsys.readouterr().err


def test_smoke_missing_config_is_a_clear_error():
    from lumen_mm.cli.smoke import main
    with pytest.raises(SystemExit) as exc:
        main(['--config', 'no/such/config.py'])
    assert 'config file not found' in str(exc.value.code)


def test_train_args_resume_and_amp(monkeypatch):
    import torch
    from mmengine.config import Config

    from lumen_mm.cli.train import apply_train_args, build_parser

    def applied(*flags):
        cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
        args = build_parser().parse_args(['c.py', *flags])
        return apply_train_args(cfg, args)

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = applied('--resume', '--amp')
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    # without CUDA: bfloat16 autocast on the CPU, no loss scaling
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = applied('--amp')
    assert cfg.optim_wrapper.type == 'CpuAmpOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    cfg = applied('--resume', 'ckpt.pth')
    assert cfg.resume is True and cfg.load_from == 'ckpt.pth'
    assert 'resume' not in applied()
    with pytest.raises(RuntimeError, match='auto_scale_lr'):
        applied('--auto-scale-lr')


def test_metrics_json_and_table(tmp_path):
    from lumen_mm.cli.test import dump_metrics_json, format_metrics_table
    metrics = {
        'coco/bbox_mAP': np.float32(0.339),
        'coco/bbox_mAP_50': np.float64(0.512),
        'count': np.int64(7),
        'per_class': np.array([0.5, 0.25]),
        'undefined': float('nan'),
        'copypaste': '0.339 0.512',
    }
    path = tmp_path / 'nested' / 'dir' / 'metrics.json'
    dump_metrics_json(metrics, str(path))
    loaded = json.loads(path.read_text())
    assert loaded == {
        'coco/bbox_mAP': pytest.approx(0.339),
        'coco/bbox_mAP_50': 0.512,
        'count': 7,
        'per_class': [0.5, 0.25],
        'undefined': None,
        'copypaste': '0.339 0.512',
    }

    table = format_metrics_table(metrics).splitlines()
    assert table[0].split() == ['metric', 'value']
    assert table[2].split() == ['coco/bbox_mAP', '0.3390']
    # values start in one column
    assert len({line.index(line.split()[1]) for line in table[2:]}) == 1


def test_dump_predictions_hook(tmp_path):
    """--out dumps every prediction, whatever evaluator the config uses."""
    import pickle
    from types import SimpleNamespace

    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from lumen_mm.cli.test import DumpPredictionsHook

    def sample(i):
        pred = InstanceData(
            bboxes=torch.rand(2, 4), scores=torch.rand(2),
            labels=torch.tensor([0, 1]))
        gt = InstanceData(bboxes=torch.rand(1, 4), labels=torch.tensor([0]))
        return DetDataSample(
            metainfo=dict(img_id=i), pred_instances=pred, gt_instances=gt)

    out = tmp_path / 'preds.pkl'
    hook = DumpPredictionsHook(str(out))
    runner = SimpleNamespace(
        test_dataloader=SimpleNamespace(dataset=range(3)))
    hook.after_test_iter(runner, 0, {}, [sample(0), sample(1)])
    hook.after_test_iter(runner, 1, {}, [sample(2)])
    hook.after_test_epoch(runner, {})
    with open(out, 'rb') as f:
        dumped = pickle.load(f)
    assert [d['img_id'] for d in dumped] == [0, 1, 2]
    assert 'gt_instances' not in dumped[0]
    assert dumped[0]['pred_instances']['bboxes'].shape == (2, 4)


def test_load_local_checkpoint_reads_mmengine_checkpoints(tmp_path):
    """mmengine checkpoints hold a message hub that weights_only refuses."""
    import torch
    from mmengine.logging import HistoryBuffer

    from lumen_mm.cli import load_local_checkpoint

    path = tmp_path / 'iter_1.pth'
    torch.save(
        dict(
            state_dict={'w': torch.ones(2)},
            message_hub=dict(log_scalars={'loss': HistoryBuffer([1.0], [1])}),
            meta=dict(iter=np.int64(1))), path)
    # `import lumen_mm` registered the allow-list for plain torch.load too
    # (the refusal without it: tests/test_safe_load.py)
    assert torch.load(path)['meta']['iter'] == 1
    checkpoint = load_local_checkpoint(str(path))
    assert checkpoint['state_dict']['w'].sum() == 2
    with pytest.raises(FileNotFoundError):
        load_local_checkpoint(str(tmp_path / 'missing.pth'))
