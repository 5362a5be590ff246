"""Hostile checkpoints and faults (issue 35, checkpoint half): every row is
how a bad input or fault is triggered and the error it must give (type, and
a message fragment naming the file or value and the fix), or the correct
result; then a training run killed during a checkpoint save.

Guards that already held and keep their own tests: code-executing
checkpoint pickles (tests/test_safe_load.py), missing checkpoint files and
tokenizers of another size (tests/test_errors.py), exact resume with
``max_keep_ckpts=3`` (tests/test_resume.py).
"""
import ctypes
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, SHAPES_CONFIG, tiny_config


@pytest.fixture(scope='module')
def tiny_state(shapes_root, tmp_path_factory):
    """The tiny config (as a file too), its model's state dict and the
    model's tokenizer (Lumen's special tokens added)."""
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    root = tmp_path_factory.mktemp('hostile')
    cfg = tiny_config(SHAPES_CONFIG, shapes_root, root / 'work_dir')
    cfg.dump(str(root / 'tiny.py'))
    from lumen_mm.engine.checkpoint import find_tokenizer
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    return cfg, str(root / 'tiny.py'), model.state_dict(), find_tokenizer(
        model)


def _save(tmp_path, obj, name='ckpt.pth') -> str:
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def _runner(request, **changes):
    from lumen_mm.cli import build_runner
    cfg = request.getfixturevalue('tiny_state')[0].copy()
    cfg.update(changes)
    return build_runner(cfg, run='test')


# -- 1: checkpoints that do not fit the model -------------------------------
def unrelated_checkpoint_in_test_tool(request, tmp_path):
    """tools/test.py evaluated a half-random model and exited 0."""
    from lumen_mm.cli.test import main
    cfg_file = request.getfixturevalue('tiny_state')[1]
    ckpt = _save(tmp_path, dict(state_dict={'fc.weight': torch.ones(2, 2)}))
    main([cfg_file, ckpt, '--work-dir', str(tmp_path / 'test')])


def other_configs_checkpoint(request, tmp_path):
    """Same names, another width (as from a config with another neck),
    through mmengine's own Runner as mmdet's tools/test.py builds it."""
    from mmengine.runner import Runner
    cfg, _, state, _ = request.getfixturevalue('tiny_state')
    state = dict(state)
    name = next(k for k in state if k.startswith('neck.')
                and state[k].dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    cfg = cfg.copy()
    cfg.load_from = _save(tmp_path, dict(state_dict=state))
    Runner.from_cfg(cfg).load_or_resume()


def trainable_only_without_neck(request, tmp_path):
    """A trainable-only checkpoint lacking trained keys (the inferencer)."""
    from lumen_mm.apis.inferencer import LumenInferencer
    cfg, _, state, _ = request.getfixturevalue('tiny_state')
    kept = {k: v for k, v in state.items() if not k.startswith('neck.')}
    ckpt = _save(tmp_path,
                 dict(meta=dict(trainable_only=True), state_dict=kept))
    LumenInferencer(cfg, ckpt, show_progress=False)


def other_configs_checkpoint_in_det_inferencer(request, tmp_path):
    """mmdet's DetInferencer loads through mmengine without a Runner."""
    from mmdet.apis import DetInferencer
    cfg, _, state, _ = request.getfixturevalue('tiny_state')
    state = dict(state)
    name = next(k for k in state if k.startswith('neck.')
                and state[k].dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    DetInferencer(cfg, _save(tmp_path, dict(state_dict=state)),
                  device='cpu', show_progress=False)


# -- 2: a tokenizer with moved ids -----------------------------------------
def _moved_ids_tokenizer(request, tmp_path) -> str:
    """The Shapes tokenizer with the ids of two tokens swapped."""
    source = Path(request.getfixturevalue('tokenizer_dir'))
    moved = tmp_path / 'moved_tokenizer'
    shutil.copytree(source, moved)
    spec = json.loads((moved / 'tokenizer.json').read_text())
    vocab = spec['model']['vocab']
    vocab['!'], vocab['"'] = vocab['"'], vocab['!']
    (moved / 'tokenizer.json').write_text(json.dumps(spec))
    return str(moved)


def tokenizer_with_moved_ids(request, tmp_path):
    from lumen_mm.engine import tokenizer_fingerprint
    from lumen_mm.engine.checkpoint import find_tokenizer
    cfg, _, state, ours = request.getfixturevalue('tiny_state')
    model = cfg.model.copy()
    model.backbone.tokenizer = _moved_ids_tokenizer(request, tmp_path)
    runner = _runner(request, model=model)
    theirs = find_tokenizer(runner.model)
    assert len(theirs) == len(ours)  # same size: only a fingerprint tells
    meta = dict(tokenizer_fingerprint=tokenizer_fingerprint(ours))
    runner.load_checkpoint(_save(tmp_path, dict(meta=meta, state_dict=state)))


def tokenizer_with_moved_ids_in_init_detector(request, tmp_path):
    from mmdet.apis import init_detector

    from lumen_mm.engine import tokenizer_fingerprint
    cfg, _, state, ours = request.getfixturevalue('tiny_state')
    cfg = cfg.copy()
    cfg.model.backbone.tokenizer = _moved_ids_tokenizer(request, tmp_path)
    meta = dict(tokenizer_fingerprint=tokenizer_fingerprint(ours))
    init_detector(cfg, _save(tmp_path, dict(meta=meta, state_dict=state)))


# -- 3, 7: damaged files and files that hold no checkpoint -----------------
def _corrupt_weight(request, tmp_path) -> str:
    """A good checkpoint with 256 bytes inside a weight overwritten."""
    state = request.getfixturevalue('tiny_state')[2]
    path = _save(tmp_path, dict(state_dict=state))
    data = bytearray(Path(path).read_bytes())
    import zipfile
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda r: r.file_size)
    start = record.header_offset + 30 + len(record.filename) + 200
    data[start:start + 256] = bytes(range(256))
    Path(path).write_bytes(bytes(data))
    return path


def corrupt_bytes_through_mmengine(request, tmp_path):
    """mmengine's loader, as init_detector and mmdet's tools call it."""
    from mmengine.runner import load_checkpoint
    load_checkpoint(torch.nn.Linear(1, 1), _corrupt_weight(request, tmp_path))


def corrupt_bytes_through_runner(request, tmp_path):
    _runner(request).load_checkpoint(_corrupt_weight(request, tmp_path))


def _load(path):
    from lumen_mm.utils import load_checkpoint
    load_checkpoint(path)


def zero_byte_checkpoint(request, tmp_path):
    (tmp_path / 'iter_8.pth').write_bytes(b'')
    _load(str(tmp_path / 'iter_8.pth'))


def truncated_checkpoint(request, tmp_path):
    path = _save(tmp_path, dict(state_dict={'w': torch.ones(1000)}))
    Path(path).write_bytes(Path(path).read_bytes()[:3000])
    _load(path)


def truncated_legacy_checkpoint(request, tmp_path):
    path = str(tmp_path / 'legacy.pth')
    torch.save(dict(state_dict={'w': torch.ones(1000)}), path,
               _use_new_zipfile_serialization=False)
    Path(path).write_bytes(Path(path).read_bytes()[:2000])
    _load(path)


def checkpoint_holding_a_tensor(request, tmp_path):
    _load(_save(tmp_path, torch.ones(3)))


def checkpoint_holding_a_list(request, tmp_path):
    _load(_save(tmp_path, [torch.ones(3)]))


def checkpoint_with_state_dict_none(request, tmp_path):
    """Through mmengine's Runner path, where this was an AttributeError."""
    _runner(request).load_checkpoint(
        _save(tmp_path, dict(meta={}, state_dict=None)))


# -- 5: resume with nothing intact -----------------------------------------
def resume_with_no_intact_checkpoint(request, tmp_path):
    from lumen_mm.engine import find_resumable_checkpoint
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    find_resumable_checkpoint(str(tmp_path))


# -- 8: dataset pickles -----------------------------------------------------
class RunsCode:
    """What a malicious refs pickle holds: unpickling it runs a command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def malicious_refs_pickle(request, tmp_path):
    from mmdet.registry import DATASETS
    cfg = request.getfixturevalue('tiny_state')[0]
    shapes_root = request.getfixturevalue('shapes_root')
    refs = tmp_path / 'refs_shapes.p'
    with open(refs, 'wb') as f:
        pickle.dump([dict(ref_id=0, split='train',
                          payload=RunsCode(str(tmp_path / 'pwned')))],
                    f, protocol=2)
    ground = cfg.train_dataloader.dataset.datasets.ground.copy()
    ground.update(split_file=str(refs), data_root=str(shapes_root))
    try:
        DATASETS.build(ground)
    finally:
        assert not (tmp_path / 'pwned').exists()


# -- 9: --cfg-options without '=' ------------------------------------------
def cfg_option_without_value(request, tmp_path):
    from lumen_mm.cli.train import main
    main([request.getfixturevalue('tiny_state')[1], '--cfg-options',
          'nonsense'])


OPT_OUT = r'--cfg-options strict_load=False'
# (trigger, exception, fragment naming the problem and the fix)
ROWS = [
    (unrelated_checkpoint_in_test_tool, ValueError,
     r"ckpt\.pth' does not fit this model: \d+ keys of the model are missing "
     r"\(e\.g\. \['backbone\..*1 keys are not in the model "
     r"\(e\.g\. \['fc\.weight'\]\).*Pass the checkpoint of this config.*"
     + OPT_OUT),
    (other_configs_checkpoint, ValueError,
     r"ckpt\.pth' does not fit this model: 1 shapes differ "
     r"\(e\.g\. \['neck\..*: checkpoint \(\d+, \d+\), model "
     r"\(\d+, \d+\)'\]\).*" + OPT_OUT),
    (trainable_only_without_neck, ValueError,
     r"trainable-only checkpoint lacks \d+ trained entries of this model "
     r"\(e\.g\. \['neck\..*pass the checkpoint of this config.*" + OPT_OUT),
    (other_configs_checkpoint_in_det_inferencer, ValueError,
     r"ckpt\.pth' does not fit this model: 1 shapes differ.*no opt-out"),
    (tokenizer_with_moved_ids_in_init_detector, ValueError,
     r"ckpt\.pth' does not fit this model: it was trained with tokenizer "),
    (tokenizer_with_moved_ids, ValueError,
     r"trained with tokenizer (\d+-[0-9a-f]{16}) but the model has tokenizer "
     r"(?!\1)\d+-[0-9a-f]{16} .*Point the config's `tokenizer`.*at the "
     r"tokenizer the checkpoint was trained with.*" + OPT_OUT),
    (corrupt_bytes_through_mmengine, ValueError,
     r"ckpt\.pth' is corrupt: the bytes of its record '.*' do not match "
     r"their CRC-32 checksum.*Use another checkpoint of the run"),
    (corrupt_bytes_through_runner, ValueError,
     r"ckpt\.pth' is corrupt: .*CRC-32"),
    (zero_byte_checkpoint, ValueError,
     r"iter_8\.pth' is empty \(0 bytes\): a save that was interrupted.*"
     r"--resume` picks the newest intact one"),
    (truncated_checkpoint, ValueError,
     r"ckpt\.pth' is truncated.*Use another checkpoint"),
    (truncated_legacy_checkpoint, ValueError,
     r"legacy\.pth' is truncated: its data ends early"),
    (checkpoint_holding_a_tensor, ValueError,
     r"ckpt\.pth' holds a Tensor, not a checkpoint: expected a dict: an "
     r"mmengine checkpoint whose 'state_dict' maps parameter names to "
     r"tensors"),
    (checkpoint_holding_a_list, ValueError,
     r"ckpt\.pth' holds a list, not a checkpoint: expected a dict"),
    (checkpoint_with_state_dict_none, ValueError,
     r"ckpt\.pth' has a 'state_dict' that is NoneType, not a dict of "
     r"tensors"),
    (resume_with_no_intact_checkpoint, ValueError,
     r"Cannot resume in .*: no checkpoint there is intact \(.*iter_2\.pth' "
     r"is empty.*Start again without --resume"),
    (malicious_refs_pickle, pickle.UnpicklingError,
     r"Refused to load '.*refs_shapes\.p': its pickle asks for "
     r"posix\.system.*only lists, dicts, tuples, strings and numbers.*"
     r"Regenerate the file"),
    (cfg_option_without_value, SystemExit,
     r"--cfg-options 'nonsense': each option is KEY=VALUE, e\.g\. "
     r"--cfg-options train_cfg\.max_iters=100"),
]


@pytest.mark.parametrize('trigger, error, fragment', ROWS,
                         ids=[row[0].__name__ for row in ROWS])
def test_clear_error(trigger, error, fragment, request, tmp_path, capsys):
    with pytest.raises(error) as raised:
        trigger(request, tmp_path)
    message = f'{raised.value}\n{capsys.readouterr().err}'
    assert re.search(fragment, message, re.S), message


# -- correct results ---------------------------------------------------------
def strict_load_false_loads_what_fits(request, tmp_path):
    """The opt-out: what fits is loaded, the rest keeps its values."""
    state = request.getfixturevalue('tiny_state')[2]
    kept = {k: v + 1 for k, v in state.items() if not k.startswith('neck.')}
    runner = _runner(request, strict_load=False)
    runner.load_checkpoint(_save(tmp_path, dict(state_dict=kept)))
    loaded = runner.model.state_dict()
    return (all(torch.equal(loaded[k], v) for k, v in kept.items())
            and not any(torch.equal(loaded[k], state[k] + 1)
                        for k in state if k.startswith('neck.')))


def _checkpoints(tmp_path, names):
    """An intact small checkpoint per name, in ``tmp_path``."""
    for name in names:
        _save(tmp_path, dict(meta=dict(iter=1), state_dict={}), name)


def empty_last_checkpoint(request, tmp_path):
    from lumen_mm.engine import find_resumable_checkpoint
    _checkpoints(tmp_path, ['iter_2.pth', 'iter_4.pth'])
    (tmp_path / 'last_checkpoint').write_text('')
    return Path(find_resumable_checkpoint(str(tmp_path))).name


def stale_last_checkpoint(request, tmp_path):
    from lumen_mm.engine import find_resumable_checkpoint
    _checkpoints(tmp_path, ['iter_2.pth'])
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    return Path(find_resumable_checkpoint(str(tmp_path))).name


def truncated_newest_checkpoint(request, tmp_path):
    """Also what the tools' seed look-up before resuming reads."""
    from lumen_mm.cli import resume_with_checkpoint_seed
    from lumen_mm.engine import find_resumable_checkpoint
    from mmengine.config import Config
    _save(tmp_path, dict(meta=dict(seed=7), state_dict={}), 'iter_2.pth')
    _checkpoints(tmp_path, ['iter_4.pth'])
    newest = tmp_path / 'iter_4.pth'
    newest.write_bytes(newest.read_bytes()[:100])
    (tmp_path / 'last_checkpoint').write_text(str(newest))
    cfg = resume_with_checkpoint_seed(
        Config(dict(resume=True, work_dir=str(tmp_path), randomness={})))
    return (Path(find_resumable_checkpoint(str(tmp_path))).name,
            cfg.randomness.seed)


class PdeathsigDataset(torch.utils.data.Dataset):
    """Each item: the worker's parent-death signal, its torch seed and what
    a user ``worker_init_fn`` left in the environment."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, idx: int):
        value = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
        return (value.value, torch.initial_seed(),
                os.environ.get('USER_INIT', ''))


def user_init(worker_id: int, tag: str) -> None:
    os.environ['USER_INIT'] = f'{tag}{worker_id}'


def workers_get_parent_death_signal(request, tmp_path):
    """Loaders built by LumenRunner: SIGKILL at the parent's death, then
    mmengine's seeding (seed 5, worker 0) or the config's function."""
    from lumen_mm.engine import LumenRunner

    def build(**extra):
        loader = LumenRunner.build_dataloader(
            dict(dataset=PdeathsigDataset(), batch_size=1, num_workers=1,
                 sampler=dict(type='DefaultSampler', shuffle=False),
                 collate_fn=dict(type='default_collate'), **extra),
            seed=5)
        signal_number, seed, tag = next(iter(loader))
        return int(signal_number), int(seed), tag[0]

    seeded = build()
    signal_number, _, tag = build(worker_init_fn=dict(type=user_init,
                                                      tag='w'))
    return seeded, (signal_number, tag)


# (trigger, expected result)
RESULT_ROWS = [
    (strict_load_false_loads_what_fits, True),
    (empty_last_checkpoint, 'iter_4.pth'),
    (stale_last_checkpoint, 'iter_2.pth'),
    (truncated_newest_checkpoint, ('iter_2.pth', 7)),
    (workers_get_parent_death_signal,
     ((signal.SIGKILL, 5, ''), (signal.SIGKILL, 'w0'))),
]


@pytest.mark.parametrize('trigger, expected', RESULT_ROWS,
                         ids=[row[0].__name__ for row in RESULT_ROWS])
def test_correct_result(trigger, expected, request, tmp_path):
    assert trigger(request, tmp_path) == expected


# -- 4, 6: kill -9 during a checkpoint save, then resume -------------------
def _children(pid: int) -> list:
    """Processes whose parent is ``pid`` (the data-loader workers)."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = Path(f'/proc/{entry}/stat').read_text()
            except OSError:
                continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1]
    except OSError:
        return False
    return state.split()[0] != 'Z'  # a zombie has ended


def _wait_for(condition, timeout: float, what: str, proc=None) -> None:
    """Poll ``condition`` every 0.1 s until it holds or ``timeout`` ends."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f'training exited ({proc.returncode}) '
                                 f'before {what}')
        assert time.monotonic() < deadline, f'no {what} in {timeout} s'
        time.sleep(0.1)


def _losses(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row['iter']: row['losses'] for row in rows}


def test_kill_during_save_then_resume(shapes_root, tiny_state, tmp_path):
    """``max_keep_ckpts=1``, SIGKILL while iter_4.pth is half written (by
    mmdet's tools/train.py): the run keeps iter_2.pth, no worker outlives
    it, and ``--resume`` trains iterations 2-3 to the losses the killed run
    had."""
    from lumen_mm.utils import load_checkpoint
    work = tmp_path / 'work'
    cfg = tiny_config(SHAPES_CONFIG, shapes_root, work)
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=6,
                         val_interval=100)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.update(num_workers=2, persistent_workers=True)
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='RecordLossesHook', out_file=str(tmp_path / 'losses'))]
    cfg.custom_imports = dict(imports=['lumen_mm', 'kill_save_helpers'],
                              allow_failed_imports=False)
    cfg.dump(str(tmp_path / 'cfg.py'))
    env = dict(os.environ, LUMEN_TENSORBOARD='0',
               PYTHONPATH=os.pathsep.join([str(REPO / 'tests'), str(REPO)]))
    # mmdet's own tool: the config's runner_type gives it LumenRunner
    import mmdet
    command = [sys.executable,
               str(Path(mmdet.__file__).parent / '.mim/tools/train.py'),
               str(tmp_path / 'cfg.py')]

    with open(tmp_path / 'killed.log', 'w') as log:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env, LUMEN_TEST_PAUSE_SAVE='.iter_4.pth.tmp'))
        try:
            _wait_for((work / 'paused').exists, 150, 'pause in the save',
                      proc)
            workers = _children(proc.pid)
            assert len(workers) >= 2 and all(map(_alive, workers))
        finally:
            proc.kill()
            proc.wait()
    _wait_for(lambda: not any(map(_alive, workers)), 10,
              'end of the workers after their parent')

    # the old checkpoint survives; the half-written one has no final name
    assert not (work / 'iter_4.pth').exists()
    assert (work / '.iter_4.pth.tmp').stat().st_size > 0
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    kept = load_checkpoint(str(work / 'iter_2.pth'))
    assert kept['meta']['iter'] == 2
    from lumen_mm.engine import tokenizer_fingerprint
    assert kept['meta']['tokenizer_fingerprint'] == tokenizer_fingerprint(
        tiny_state[3])  # the tokenizer the run was trained with
    killed = _losses(tmp_path / 'losses')
    assert sorted(killed) == [0, 1, 2, 3]

    (tmp_path / 'losses').unlink()
    subprocess.run(command + ['--resume'], cwd=REPO, env=env, check=True,
                   timeout=300, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    resumed = _losses(tmp_path / 'losses')
    assert sorted(resumed) == [2, 3, 4, 5]
    assert [resumed[i] for i in (2, 3)] == [killed[i] for i in (2, 3)]
    # one checkpoint kept, the stale partial save removed
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_6.pth']
    assert not list(work.glob('.*.tmp'))
