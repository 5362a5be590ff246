"""Packaging (issues 33, 34): what ``pip install .`` gives a user outside the
checkout: requirements, configs as ``lumen_mm::`` bases, mim's model index,
checkpoints that mmengine's own loader reads, TensorBoard in the runtime."""
import os
import re
import shutil
import subprocess
import sys
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

METAFILE = REPO / 'configs/lumen/metafile.yml'
RUNTIME = REPO / 'configs/lumen/_base_/default_runtime.py'


def _requirements(path: Path) -> list:
    lines = (line.split('#', 1)[0].strip() for line in path.open())
    return [Requirement(line) for line in lines if line]


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> Path:
    """lumen_mm installed non-editable with ``pip install --no-deps
    --no-build-isolation --target`` from a copy of the checkout (the files
    a clone holds plus uncommitted work; the copy keeps pip's build files out
    of the shared checkout). The venv's packages serve its requirements."""
    tmp = tmp_path_factory.mktemp('install')
    listed = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
        cwd=REPO, capture_output=True, check=True).stdout.decode()
    src = tmp / 'src'
    for name in filter(None, listed.split('\0')):
        if (REPO / name).is_file():  # not deleted in the work tree
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, src / name)
    target = tmp / 'site'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
         '--no-build-isolation', '--no-index', '--target', str(target),
         str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _run_installed(target: Path, args: list, cwd: Path) -> str:
    """Run Python outside the checkout, the installed copy first on the
    path (ahead of the venv's editable lumen_mm)."""
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS='1')
    env.pop('LUMEN_TENSORBOARD', None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_install_requires_admit_the_tested_environment(installed):
    """The ranges of ``install_requires`` admit the versions this venv holds
    (``make env``: requirements/runtime.txt's pins), mmcv and mmpose are left
    to ``make env`` (setup.py says why), and the ``tests`` extra is
    requirements/tests.txt."""
    dist_info = next(installed.glob('lumen_mm-*.dist-info'))
    metadata = Parser().parsestr((dist_info / 'METADATA').read_text())
    requires = [Requirement(r) for r in metadata.get_all('Requires-Dist')]
    core = [r for r in requires if r.marker is None]
    assert len(core) >= 20
    for req in core:
        assert req.specifier.contains(version(req.name)), (
            req, version(req.name))
    pinned = {
        canonicalize_name(r.name): r
        for r in _requirements(REPO / 'requirements/runtime.txt')
    }
    for req in core:
        for spec in getattr(pinned.get(canonicalize_name(req.name)),
                            'specifier', []):
            if spec.operator == '==':
                assert req.specifier.contains(spec.version), (req, spec)
    assert not {'mmcv', 'mmpose'} & {canonicalize_name(r.name) for r in core}
    tests_extra = {
        str(r).split(';')[0].strip()
        for r in requires if r.marker and r.marker.evaluate({'extra': 'tests'})
    }
    assert tests_extra == {
        str(r) for r in _requirements(REPO / 'requirements/tests.txt')
    }
    assert set(metadata.get_all('Provides-Extra')) >= {
        'tests', 'demo', 'analysis', 'deepspeed'}


def test_metafile_lists_every_config_with_its_numbers():
    """model-index.yml imports one metafile naming each config once, with
    the numbers configs/lumen/README.md gives it (its table row; for the
    50k model's training configs, the Lumen-7B table; else the config's own
    header)."""
    index = yaml.safe_load((REPO / 'model-index.yml').read_text())
    assert index == {'Import': ['configs/lumen/metafile.yml']}
    models = yaml.safe_load(METAFILE.read_text())['Models']
    listed = [m['Config'] for m in models]
    on_disk = {
        str(p.relative_to(REPO))
        for p in (REPO / 'configs/lumen').rglob('*.py')
        if '_base_' not in p.parts
    }
    assert sorted(listed) == sorted(on_disk)
    assert len({m['Name'] for m in models}) == len(models)
    readme = (REPO / 'configs/lumen/README.md').read_text()
    lumen_7b = readme[readme.index('### Lumen-7B'):readme.index('### Ablat')]
    for model in models:
        rel = model['Config'][len('configs/lumen/'):]
        rows = [line for line in readme.splitlines() if f']({rel})' in line]
        header = [
            line for line in (REPO / model['Config']).read_text().splitlines()
            if line.startswith('#')
        ]
        source = '\n'.join(rows + header)
        if '_multitask_50k' in rel:
            source += lumen_7b
        quoted = {float(x) for x in re.findall(r'\d+\.\d+', source)}
        for result in model.get('Results', []):
            for metric, value in result['Metrics'].items():
                assert value in quoted, (model['Name'], metric, value)


def test_tensorboard_is_on_and_switchable(monkeypatch):
    """The runtime logs to TensorBoard beside the local files (a Runner
    writes its event file: the test below); LUMEN_TENSORBOARD=0 turns it
    off."""
    from mmengine.config import Config

    monkeypatch.delenv('LUMEN_TENSORBOARD', raising=False)
    cfg = Config.fromfile(str(RUNTIME), import_custom_modules=False)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    monkeypatch.setenv('LUMEN_TENSORBOARD', '0')
    cfg = Config.fromfile(str(RUNTIME), import_custom_modules=False)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend']


# Run in a fresh interpreter outside the checkout, on the installed copy:
# 1. before lumen_mm is imported, torch refuses an mmengine checkpoint;
# 2. a config with custom_imports (what mmdet's tools read) imports it, and
#    mmengine's own loader reads the checkpoint;
# 3. a user config whose _base_ is 'lumen_mm::...' builds a Runner (model,
#    hooks, TensorBoard visualizer) from the configs inside the package.
FRESH_PROCESS = '''
import pickle, sys
import numpy as np, torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

plain_cfg, user_cfg, ckpt = sys.argv[1:]
torch.save(dict(message_hub=dict(log_scalars=dict(loss=HistoryBuffer([1.0], [1]))),
                meta=dict(iter=np.int64(3))), ckpt)
try:
    torch.load(ckpt)
    print('before import: loaded')
except pickle.UnpicklingError:
    print('before import: refused')
assert 'lumen_mm' not in sys.modules
Config.fromfile(plain_cfg)
import lumen_mm
print('lumen_mm from', lumen_mm.__file__)
print('iter', _load_checkpoint(ckpt)['meta']['iter'])
cfg = Config.fromfile(user_cfg)
print('base from', [line for line in cfg.text.splitlines() if 'lumen_tiny_shapes_det_ground.py' in line][0])
runner = Runner.from_cfg(cfg)
print('model', type(runner.model).__name__)
print('hooks', [type(h).__name__ for h in runner.hooks])
print('backends', sorted(runner.visualizer._vis_backends))
'''


def test_installed_package_serves_configs_and_checkpoints(
        installed, tokenizer_dir, tmp_path):
    """Issue 34: ``_base_ = 'lumen_mm::...'`` after a non-editable install
    outside the checkout, and mmengine clients load checkpoints once
    ``custom_imports`` imported lumen_mm. About 30 s: a fresh interpreter
    (importing torch, mmdet, transformers and lumen_mm takes ~10 s here) is
    the only way to see what an import changes."""
    user = tmp_path / 'user'
    user.mkdir()
    (user / 'plain.py').write_text(
        "custom_imports = dict(imports=['lumen_mm'], "
        'allow_failed_imports=False)\n')
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2)
    (user / 'my_lumen.py').write_text(
        "_base_ = 'lumen_mm::lumen/shapes/lumen_tiny_shapes_det_ground.py'\n"
        f'work_dir = {str(tmp_path / "work")!r}\n'
        'model = dict(\n'
        f'    backbone=dict(tokenizer={tokenizer_dir!r},\n'
        f'                  vision_config={tiny!r},\n'
        f'                  text_config=dict({tiny!r}, '
        'num_key_value_heads=2)),\n'
        '    neck=dict(embed_dim=32, num_convs=1, dilations=(2, )))\n')
    out = _run_installed(installed, [
        '-c', FRESH_PROCESS,
        str(user / 'plain.py'),
        str(user / 'my_lumen.py'),
        str(tmp_path / 'iter_3.pth')
    ], cwd=user)
    assert 'before import: refused' in out
    assert f'lumen_mm from {installed}/lumen_mm/__init__.py' in out
    assert 'iter 3' in out
    assert (f'{installed}/lumen_mm/.mim/configs/lumen/shapes/'
            'lumen_tiny_shapes_det_ground.py') in out
    assert 'model Lumen' in out
    assert 'FlushDenormalHook' in out
    assert "backends ['LocalVisBackend', 'TensorboardVisBackend']" in out
    assert list((tmp_path / 'work').glob('**/events.out.tfevents.*'))


def test_mim_search_lists_the_configs(installed, tmp_path):
    """``mim search lumen_mm`` reads the installed package's model index."""
    out = _run_installed(
        installed, ['-m', 'mim', 'search', 'lumen_mm', '--valid-config'],
        cwd=tmp_path)
    names = [m['Name'] for m in yaml.safe_load(METAFILE.read_text())['Models']]
    for name in names:
        assert f"'{name}'" in out, name
