"""Hostile inputs and faults (issue 35): every row is how a user or a fault
triggers a case and the clear error it must give (type, and a message
fragment that names the problem -- the file or value -- and the fix), or
the correct result. Rows are grouped as the issue groups them; a training
run killed during a checkpoint save is a scenario of its own
(``test_kill_during_save_then_resume``).

Guards that already held keep their own tests: code-executing checkpoint
pickles (tests/test_safe_load.py), missing checkpoint files and tokenizers
of another size (tests/test_errors.py), exact resume with
``max_keep_ckpts=3`` (tests/test_resume.py), text length, lone surrogates
and prompt memory (tests/test_llava_lmm.py), test_cfg keys
(tests/test_task_table.py).
"""
import ctypes
import importlib
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from PIL import Image

from conftest import REPO, SHAPES_CONFIG, tiny_config

ALL_TASKS = REPO / 'configs/lumen/shapes/lumen_tiny_shapes_all_tasks.py'
CLASSES = ['circle', 'star', 'cross']
OPT_OUT = r'--cfg-options strict_load=False'

# (trigger, exception, fragment naming the problem and the fix); the
# exception may be named 'module.Class' for a class of an optional package
ROWS = []
# (trigger, expected result); a trigger that checks several things asserts
# them itself and returns True
RESULT_ROWS = []


# -- fixtures and helpers -----------------------------------------------------
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


@pytest.fixture(scope='module')
def det(shapes_root, tmp_path_factory):
    """The tiny random detection / grounding / pose Lumen."""
    from lumen_mm.apis import LumenInferencer
    torch.manual_seed(0)
    return LumenInferencer(
        tiny_config(SHAPES_CONFIG, shapes_root,
                    tmp_path_factory.mktemp('det')), show_progress=False)


@pytest.fixture(scope='module')
def seg(shapes_root, tmp_path_factory):
    """The tiny random all-task Lumen with its tiny SAM, reading the
    original at SAM's input size (``LumenSamImage``)."""
    from lumen_mm.apis import LumenInferencer
    cfg = tiny_config(ALL_TASKS, shapes_root, tmp_path_factory.mktemp('seg'))
    cfg.model.mask_head.tiny = dict(
        img_size=128, embed_dim=32, depth=1, prompt_embed_dim=32,
        decoder_depth=1, decoder_mlp_dim=64)
    cfg.test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LumenSamImage', size=128),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='Pad', size=(128, 128)),
    ]
    torch.manual_seed(0)
    return LumenInferencer(cfg, show_progress=False)


@pytest.fixture(scope='module')
def config_file(shapes_root, tmp_path_factory):
    """The tiny detection config as a file, for the demo tool."""
    root = tmp_path_factory.mktemp('demo')
    path = root / 'tiny.py'
    tiny_config(SHAPES_CONFIG, shapes_root, root / 'work_dir').dump(str(path))
    return str(path)


def _save(tmp_path, obj, name='ckpt.pth') -> str:
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def _runner(request, **changes):
    from lumen_mm.cli import build_runner
    cfg = request.getfixturevalue('tiny_state')[0].copy()
    cfg.update(changes)
    return build_runner(cfg, run='test')


def _load(path):
    from lumen_mm.utils import load_checkpoint
    load_checkpoint(path)


def _png_header_only(path, w: int, h: int) -> str:
    """A PNG that declares w x h grey pixels (decoders check the size
    before reading the pixels): a 40000 x 40000 image in 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(
        b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(
            b'IDAT', zlib.compress(b'\0' * 10)) + chunk(b'IEND', b''))
    return str(path)


def _empty_file(tmp_path) -> str:
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    return str(empty)


def _load_by_pipeline(path: str) -> np.ndarray:
    from lumen_mm.datasets import LumenLoadImageFromFile
    return LumenLoadImageFromFile().transform(dict(img_path=path))['img']


def _in_frame(sample, h: int, w: int) -> None:
    assert tuple(sample.ori_shape) == (h, w)
    boxes = sample.pred_instances.bboxes
    assert len(boxes) and torch.isfinite(boxes).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all()
    assert (boxes[:, 3] <= h).all()


def _demo(request, argv):
    from lumen_mm.apis.demo import main
    outputs = main(argv)
    return outputs, request.getfixturevalue('capsys').readouterr().out


# == Silent wrong results =====================================================
# -- checkpoints that do not fit the model ------------------------------------
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


def _corrupt_weight(request, tmp_path) -> str:
    """A good checkpoint with 256 bytes inside a weight overwritten."""
    import zipfile
    state = request.getfixturevalue('tiny_state')[2]
    path = _save(tmp_path, dict(state_dict=state))
    data = bytearray(Path(path).read_bytes())
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


ROWS += [
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
]
RESULT_ROWS += [
    (strict_load_false_loads_what_fits, True),
]


# -- image modes --------------------------------------------------------------
def grey_16_bit_is_one_8_bit_image_by_path_pil_and_array(request, tmp_path):
    """PIL made a 16-bit grey image all 255; every way now scales it as
    OpenCV does (value >> 8), as the training pipelines read it."""
    from lumen_mm.apis.inferencer import load_image
    from lumen_mm.apis.webui import read_photo  # the web page's upload
    values = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) *
              27).astype(np.uint16)
    path = tmp_path / 'grey16.png'
    Image.fromarray(values).save(path)
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, 2)
    pil = Image.open(path)
    assert pil.mode.startswith('I')  # I;16 (or I in older Pillow)
    for image in (str(path), pil, pil.convert('I'), values):
        np.testing.assert_array_equal(load_image(image), expected)
    np.testing.assert_array_equal(_load_by_pipeline(str(path)), expected)
    np.testing.assert_array_equal(
        np.asarray(read_photo(str(path), 10_000)), expected[..., ::-1])
    return True


def _float_image():
    """A 0-1 float image: it became black."""
    return Image.fromarray(np.full((8, 8), 0.5, np.float32))


def _int32_image():
    return Image.fromarray(np.full((8, 8), 70000, np.int32))


def _upload(image, tmp_path):
    from lumen_mm.apis.webui import read_photo
    image.save(tmp_path / 'upload.tif')
    read_photo(str(tmp_path / 'upload.tif'), 10_000)


def float_image_loaded(request, tmp_path):
    from lumen_mm.apis.inferencer import load_image
    load_image(_float_image())


def float_image_uploaded(request, tmp_path):
    _upload(_float_image(), tmp_path)


def int32_image_loaded(request, tmp_path):
    from lumen_mm.apis.inferencer import load_image
    load_image(_int32_image())


def int32_image_uploaded(request, tmp_path):
    _upload(_int32_image(), tmp_path)


ROWS += [
    (float_image_loaded, ValueError, r"mode 'F'.*Convert it first"),
    (float_image_uploaded, 'gradio.Error', r"mode 'F'.*Convert it first"),
    (int32_image_loaded, ValueError, r'outside 16 bits: scale it to 0-255'),
    (int32_image_uploaded, 'gradio.Error',
     r'outside 16 bits: scale it to 0-255'),
]
RESULT_ROWS += [
    (grey_16_bit_is_one_8_bit_image_by_path_pil_and_array, True),
]


# -- person boxes and boxes from the padding ----------------------------------
def _pose(request, boxes):
    request.getfixturevalue('det')(np.zeros((30, 40, 3), np.uint8),
                                   task='pose', person_bboxes=boxes)


def infinite_person_box(request, tmp_path):
    _pose(request, [[0, 0, float('inf'), float('inf')]])


def nan_person_box(request, tmp_path):
    _pose(request, [[0, 0, float('nan'), 5]])


def person_box_outside_the_image(request, tmp_path):
    """Its keypoints would all be clamped to the image's border."""
    _pose(request, [[500, 500, 600, 600]])


def person_box_over_the_border_still_gives_keypoints(request, tmp_path):
    sample = request.getfixturevalue('det')(
        np.zeros((30, 40, 3), np.uint8), task='pose',
        person_bboxes=[[30, 20, 60, 50]])
    return bool(torch.isfinite(sample.pred_instances.keypoints).all())


def peaks_in_the_padding_give_no_boxes(request, tmp_path):
    """A 16 x 64 image padded to 64 x 64: the strongest peaks lie in the
    padding rows; every box comes from the image, with area."""
    from lumen_mm.models import HeatmapHead
    head = HeatmapHead()
    heat = torch.full((2, 1, 8, 8), -9.)
    heat[:, 0, 5, 2] = heat[:, 0, 7, 6] = 9.  # padding: rows 2-7
    heat[0, 0, 0, 3] = 1.  # image: row 0 (y 0-8) and row 1
    heat[1, 0, 1, 5] = 0.
    preds = dict(heatmap=heat, wh=torch.full((2, 2, 8, 8), 3.))
    meta = dict(prompts=['a', 'b'], prompt_labels=[0, 1],
                ori_shape=(8, 32), scale_factor=(2., 2.))
    results = head.predict_by_feat(
        preds, meta, dict(topk=100, nms_iou=0.5, max_per_img=100), 8.,
        rescale=False)
    boxes = results.bboxes
    assert len(boxes) > 0
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (centres[:, 1] < 16).all() and (boxes[:, 3] <= 16).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    # the two image peaks (columns 3 and 5) are the top boxes
    top = results.scores.argsort(descending=True)[:2]
    assert sorted(centres[top, 0].tolist()) == [28., 44.]
    assert results.scores[top].min() >= 0.5
    one = head.predict_by_feat(preds, meta, dict(topk=1), 8., rescale=True)
    assert one.bboxes[:, 3].max() <= 8  # the original's height
    return True


ROWS += [
    (infinite_person_box, ValueError,
     r'not all finite numbers.*no inf or NaN'),
    (nan_person_box, ValueError, r'not all finite'),
    (person_box_outside_the_image, ValueError,
     r'outside the image \(40 x 30 pixels.*image\'s pixels'),
]
RESULT_ROWS += [
    (person_box_over_the_border_still_gives_keypoints, True),
    (peaks_in_the_padding_give_no_boxes, True),
]


# == Lost checkpoints and leaked processes ====================================
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


def resume_with_no_intact_checkpoint(request, tmp_path):
    from lumen_mm.engine import find_resumable_checkpoint
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    find_resumable_checkpoint(str(tmp_path))


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


ROWS += [
    (zero_byte_checkpoint, ValueError,
     r"iter_8\.pth' is empty \(0 bytes\): a save that was interrupted.*"
     r"--resume` picks the newest intact one"),
    (truncated_checkpoint, ValueError,
     r"ckpt\.pth' is truncated.*Use another checkpoint"),
    (truncated_legacy_checkpoint, ValueError,
     r"legacy\.pth' is truncated: its data ends early"),
    (resume_with_no_intact_checkpoint, ValueError,
     r"Cannot resume in .*: no checkpoint there is intact \(.*iter_2\.pth' "
     r"is empty.*Start again without --resume"),
]
RESULT_ROWS += [
    (empty_last_checkpoint, 'iter_4.pth'),
    (stale_last_checkpoint, 'iter_2.pth'),
    (truncated_newest_checkpoint, ('iter_2.pth', 7)),
    (workers_get_parent_death_signal,
     ((signal.SIGKILL, 5, ''), (signal.SIGKILL, 'w0'))),
]


# -- kill -9 during a checkpoint save, then resume (a scenario) ---------------
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


# == Unbounded memory =========================================================
# -- huge images --------------------------------------------------------------
def oversized_image_in_inferencer(request, tmp_path):
    request.getfixturevalue('det')(
        _png_header_only(tmp_path / 'huge.png', 40000, 40000), task='det',
        classes=CLASSES)


def oversized_image_in_pipeline(request, tmp_path):
    _load_by_pipeline(_png_header_only(tmp_path / 'huge.png', 40000, 40000))


# -- masks --------------------------------------------------------------------
def masks_only_for_boxes_above_mask_score_thr(request, tmp_path):
    from lumen_mm.models.mask_heads import SamMaskHead
    seg = request.getfixturevalue('seg')
    image = np.random.default_rng(1).integers(0, 256, (60, 90, 3), np.uint8)
    cfg = seg.model.test_cfg['seg']
    assert cfg['mask_score_thr'] == 0.05
    try:
        for thr in (0.05, float(np.median(
                seg(image, task='det', classes=CLASSES)
                .pred_instances.scores)), 1.0):
            cfg['mask_score_thr'] = thr
            with mock.patch.object(SamMaskHead, 'paste_mask',
                                   autospec=True,
                                   side_effect=SamMaskHead.paste_mask) as spy:
                preds = seg(image, task='seg',
                            classes=CLASSES).pred_instances
            assert (preds.scores > thr).all()
            assert spy.call_count == len(preds) == len(preds.masks)
            assert preds.masks.dtype == torch.bool
            assert preds.masks.shape[1:] == (60, 90)
        assert len(preds) == 0  # nothing scores above 1
    finally:
        cfg['mask_score_thr'] = 0.05
    return True


def rle_masks_hold_one_full_size_mask_at_a_time(request, tmp_path):
    """test_cfg mask_format='rle': COCO RLE dicts, the bitmap masks once
    decoded, read as they are by mmdet's CocoMetric and drawn."""
    from mmdet.evaluation import CocoMetric
    from mmdet.registry import METRICS
    from mmdet.structures.mask import encode_mask_results

    from lumen_mm.tasks import decode_masks
    from lumen_mm.visualization import LumenLocalVisualizer
    seg = request.getfixturevalue('seg')
    image = np.random.default_rng(2).integers(0, 256, (50, 70, 3), np.uint8)
    cfg = seg.model.test_cfg['seg']
    bitmap = seg(image, task='seg', classes=CLASSES)
    # SAM's copy of the image is an input: results (--out pickles) lack it
    assert 'sam_image' not in bitmap
    try:
        cfg['mask_format'] = 'rle'
        with mock.patch('lumen_mm.models.mask_heads.sam_mask_head.'
                        'encode_mask_results',
                        wraps=encode_mask_results) as encode:
            rle = seg(image, task='seg', classes=CLASSES)
    finally:
        cfg.pop('mask_format')
    masks = rle.pred_instances.masks
    assert isinstance(masks, list) and len(masks) == len(bitmap.pred_instances)
    assert masks[0]['size'] == [50, 70] and isinstance(masks[0]['counts'],
                                                       bytes)
    # one (1, H, W) mask per encoding: never n full-size masks at once
    assert {c.args[0].shape for c in encode.call_args_list} == {(1, 50, 70)}
    assert torch.equal(decode_masks(masks, (50, 70)),
                       bitmap.pred_instances.masks)
    metric = CocoMetric(metric='segm')
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [dict(rle.to_dict(), instances=[])])
    assert metric.results[0][1]['masks'] is masks
    vis = LumenLocalVisualizer(name='test_rle_vis')
    vis.add_datasample('rle', image[..., ::-1].copy(), rle, draw_gt=False,
                       pred_score_thr=0)
    assert vis.get_image().shape == (50, 70, 3)
    # the referring-segmentation metric decodes them
    refseg = METRICS.build(dict(type='LumenRefSegMetric'))
    gt = bitmap.pred_instances.masks[:1]
    refseg.process({}, [dict(gt_masks=gt, pred_instances=dict(
        masks=masks[:1]))])
    assert refseg.evaluate(1)['refseg/mIoU'] == 1.0
    return True


def unknown_mask_format(request, tmp_path):
    from lumen_mm.tasks import task_test_cfg
    task_test_cfg(dict(seg=dict(mask_format='png')))


def mask_of_a_large_image_is_computed_over_its_window_only(request,
                                                           tmp_path):
    """SAM's logits resized to a 3000 x 4000 original: floats only over
    the small box's window, in strips, and the mask is exactly
    segment-anything's ``postprocess_masks`` > 0."""
    import torch.nn.functional as F

    from lumen_mm.models.mask_heads import SamMaskHead
    head = SamMaskHead(sam_type='tiny')
    low_res = torch.full((1, 1, 32, 32), -10.)
    low_res[..., 10:14, 20:23] = 10.
    out = torch.zeros(3000, 4000, dtype=torch.bool)
    sizes = []
    grid_sample = F.grid_sample

    def spy(*args, **kwargs):
        values = grid_sample(*args, **kwargs)
        sizes.append(values.numel())
        return values

    with mock.patch.object(F, 'grid_sample', spy):
        head.paste_mask(low_res, (96, 128), out, max_pixels=50_000)
    expected = head.sam.postprocess_masks(low_res, (96, 128),
                                          (3000, 4000))[0, 0] > 0
    assert torch.equal(out, expected)
    assert max(sizes) <= 50_000 and len(sizes) > 1
    assert sum(sizes) < out.numel() / 20
    return True


# -- drawing ------------------------------------------------------------------
def large_images_are_drawn_on_a_downscaled_copy(request, tmp_path):
    from mmdet.structures import DetDataSample

    from lumen_mm.apis.demo import MAX_DRAW_SIDE
    from lumen_mm.visualization import downscale_for_drawing
    assert MAX_DRAW_SIDE <= 4096
    photo = tmp_path / 'wide.png'
    Image.new('RGB', (400, 100), 'white').save(photo)
    outputs, printed = _demo(request, [
        str(photo), '--task', 'seg', '--classes', 'a', '--config',
        request.getfixturevalue('config_file'), '--out-dir', str(tmp_path),
        '--max-draw-side', '80'])
    assert Image.open(outputs['pred']).size == (80, 20)
    assert 'downscaled from 400 x 100 to 80 x 20' in printed
    # boxes, keypoints and masks follow the copy
    sample = DetDataSample(metainfo=dict(ori_shape=(1000, 3000)))
    masks = torch.zeros(1, 1000, 3000, dtype=torch.bool)
    masks[0, 500:, 1500:] = True
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[1500., 500., 3000., 1000.]]),
        keypoints=torch.tensor([[[300., 100.]]]), masks=masks)
    image, small, scale = downscale_for_drawing(
        np.zeros((1000, 3000, 3), np.uint8), sample, 300)
    assert image.shape == (100, 300, 3) and scale == 0.1
    preds = small.pred_instances
    assert preds.bboxes.tolist() == [[150., 50., 300., 100.]]
    assert preds.keypoints.tolist() == [[[30., 10.]]]
    assert preds.masks.shape == (1, 100, 300)
    assert preds.masks[0, 50:, 150:].all() and not preds.masks[0, :50].any()
    assert sample.pred_instances.masks.shape == (1, 1000, 3000)
    return True


ROWS += [
    (oversized_image_in_inferencer, ValueError,
     r"huge\.png' has more pixels.*CV_IO_MAX_IMAGE_PIXELS.*"
     r'OPENCV_IO_MAX_IMAGE_PIXELS'),
    (oversized_image_in_pipeline, ValueError,
     r"huge\.png' has more pixels.*CV_IO_MAX_IMAGE_PIXELS.*"
     r'OPENCV_IO_MAX_IMAGE_PIXELS'),
    (unknown_mask_format, ValueError, r"mask_format is 'png'.*'rle'"),
]
RESULT_ROWS += [
    (masks_only_for_boxes_above_mask_score_thr, True),
    (rle_masks_hold_one_full_size_mask_at_a_time, True),
    (mask_of_a_large_image_is_computed_over_its_window_only, True),
    (large_images_are_drawn_on_a_downscaled_copy, True),
]


# == Crashes with raw errors ==================================================
# -- broken image files and lists of images -----------------------------------
def empty_image_in_inferencer(request, tmp_path):
    request.getfixturevalue('det')(_empty_file(tmp_path), task='det',
                                   classes=CLASSES)


def empty_image_in_pipeline(request, tmp_path):
    _load_by_pipeline(_empty_file(tmp_path))


def _good_image(tmp_path) -> str:
    good = tmp_path / 'good.png'
    Image.new('RGB', (30, 20), 'white').save(good)
    return str(good)


def bad_image_of_a_list(request, tmp_path):
    """The error names the image and keeps the results before it."""
    good, empty = _good_image(tmp_path), _empty_file(tmp_path)
    try:
        request.getfixturevalue('det')([good, empty, good], task='det',
                                       classes=CLASSES)
    except ValueError as error:
        assert 'Image 1 of 3' in str(error)
        assert 'empty.png' in str(error) and '0 bytes' in str(error)
        assert error.index == 1
        assert len(error.results) == 1  # the first image's answer
        _in_frame(error.results[0], 20, 30)
        raise


def bad_image_of_a_pose_list(request, tmp_path):
    """Pose people are named alike."""
    request.getfixturevalue('det')(
        [_good_image(tmp_path), _empty_file(tmp_path)], task='pose')


# -- thin images --------------------------------------------------------------
def _extreme_aspect_ratio(h: int, w: int):
    """mmdet's Resize made the short side 0 px (cv2 ``inv_scale_x > 0``);
    it keeps 1 px, in Resize and in SAM's copy: boxes and masks come in
    the frame of the h x w image."""
    def trigger(request, tmp_path):
        det, seg = (request.getfixturevalue(name) for name in ('det', 'seg'))
        image = np.random.default_rng(0).integers(0, 256, (h, w, 3),
                                                  np.uint8)
        _in_frame(det(image, task='det', classes=CLASSES), h, w)
        sample = seg(image, task='seg', classes=CLASSES)
        assert sample.pred_instances.masks.shape[1:] == (h, w)
        return True

    trigger.__name__ = trigger.__qualname__ = f'image_of_{h}_by_{w}_pixels'
    trigger.__doc__ = _extreme_aspect_ratio.__doc__
    return trigger


# -- prompts ------------------------------------------------------------------
def _det(request, classes):
    request.getfixturevalue('det')(np.zeros((30, 40, 3), np.uint8),
                                   task='det', classes=classes)


def class_name_none(request, tmp_path):
    _det(request, [None])


def class_name_a_number(request, tmp_path):
    _det(request, ['star', 123])


# -- checkpoints of another structure -----------------------------------------
def checkpoint_holding_a_tensor(request, tmp_path):
    _load(_save(tmp_path, torch.ones(3)))


def checkpoint_holding_a_list(request, tmp_path):
    _load(_save(tmp_path, [torch.ones(3)]))


def checkpoint_with_state_dict_none(request, tmp_path):
    """Through mmengine's Runner path, where this was an AttributeError."""
    _runner(request).load_checkpoint(
        _save(tmp_path, dict(meta={}, state_dict=None)))


# -- command lines ------------------------------------------------------------
def cfg_option_without_value(request, tmp_path):
    from lumen_mm.cli.train import main
    main([request.getfixturevalue('tiny_state')[1], '--cfg-options',
          'nonsense'])


def _demo_args(request, tmp_path) -> list:
    photo = tmp_path / 'photo.png'
    Image.new('RGB', (60, 40), 'white').save(photo)
    return [str(photo), '--task', 'det', '--config',
            request.getfixturevalue('config_file'), '--out-dir',
            str(tmp_path), '--score-thr', '0']


def demo_draws_dollar_signs_and_no_heatmaps(request, tmp_path):
    """matplotlib's mathtext failed on the label '$\\foo$'."""
    args = _demo_args(request, tmp_path)
    outputs, printed = _demo(request, args + [
        '--classes', r'$\foo$', 'a $5 b', '--max-heatmaps', '1'])
    assert r'$\foo$:' in printed
    assert Image.open(outputs['pred']).size == (60, 40)
    assert Image.open(outputs['heatmap']).size == (60, 40)
    outputs, _ = _demo(request,
                       args + ['--classes', 'a', '--max-heatmaps', '0'])
    assert 'heatmap' not in outputs and 'pred' in outputs
    return True


def demo_with_negative_max_heatmaps(request, tmp_path):
    _demo(request, _demo_args(request, tmp_path) + ['--max-heatmaps', '-1'])


ROWS += [
    (empty_image_in_inferencer, ValueError,
     r"empty\.png' is empty \(0 bytes\).*replace it"),
    (empty_image_in_pipeline, ValueError,
     r"empty\.png' is empty \(0 bytes\).*replace it"),
    (bad_image_of_a_list, ValueError,
     r"Image 1 of 3 \('.*empty\.png'\): .*0 bytes.*fix or remove this one"),
    (bad_image_of_a_pose_list, ValueError, r'Image 1 of 2'),
    (class_name_none, TypeError,
     r"must be names \(strings\); got None.*classes=\['cat'"),
    (class_name_a_number, TypeError, r'got 123 of type int'),
    (checkpoint_holding_a_tensor, ValueError,
     r"ckpt\.pth' holds a Tensor, not a checkpoint: expected a dict: an "
     r"mmengine checkpoint whose 'state_dict' maps parameter names to "
     r"tensors"),
    (checkpoint_holding_a_list, ValueError,
     r"ckpt\.pth' holds a list, not a checkpoint: expected a dict"),
    (checkpoint_with_state_dict_none, ValueError,
     r"ckpt\.pth' has a 'state_dict' that is NoneType, not a dict of "
     r"tensors"),
    (cfg_option_without_value, SystemExit,
     r"--cfg-options 'nonsense': each option is KEY=VALUE, e\.g\. "
     r"--cfg-options train_cfg\.max_iters=100"),
    (demo_with_negative_max_heatmaps, SystemExit,
     r'--max-heatmaps must be >= 0 \(0: no heatmap picture\)'),
]
RESULT_ROWS += [
    (_extreme_aspect_ratio(1, 2000), True),
    (_extreme_aspect_ratio(3, 5000), True),
    (_extreme_aspect_ratio(2000, 1), True),
    (demo_draws_dollar_signs_and_no_heatmaps, True),
]


# == Unsafe data file =========================================================
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


ROWS += [
    (malicious_refs_pickle, pickle.UnpicklingError,
     r"Refused to load '.*refs_shapes\.p': its pickle asks for "
     r"posix\.system.*only lists, dicts, tuples, strings and numbers.*"
     r"Regenerate the file"),
]


# == the tables' tests ========================================================
@pytest.mark.parametrize('trigger, error, fragment', ROWS,
                         ids=[row[0].__name__ for row in ROWS])
def test_clear_error(trigger, error, fragment, request, tmp_path, capsys):
    if isinstance(error, str):  # 'module.Class' of an optional package
        module, name = error.rsplit('.', 1)
        error = getattr(importlib.import_module(module), name)
    with pytest.raises(error) as raised:
        trigger(request, tmp_path)
    message = f'{raised.value}\n{capsys.readouterr().err}'
    assert re.search(fragment, message, re.S), message


@pytest.mark.parametrize('trigger, expected', RESULT_ROWS,
                         ids=[row[0].__name__ for row in RESULT_ROWS])
@pytest.mark.usefixtures('capsys')  # active before the triggers read it
def test_correct_result(trigger, expected, request, tmp_path):
    assert trigger(request, tmp_path) == expected
