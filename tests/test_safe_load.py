"""Safe loading (issues 8, 34): torch checkpoints with ``weights_only=True``
and an explicit allow-list, registered by ``import lumen_mm`` for every
mmengine client; Hugging Face weights through safetensors only."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from torch import nn

from lumen_mm.cli import load_local_checkpoint
from lumen_mm.utils import UnsafeCheckpointError, load_checkpoint
from lumen_mm.utils.safe_load import (mmengine_safe_globals,
                                      register_safe_globals)


class ToyModel(BaseModel):
    """The smallest model an mmengine Runner trains (loss mode only)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=self.linear(torch.stack(inputs)).pow(2).mean())


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'), palette=[(1, 2, 3)])

    def __len__(self) -> int:
        return 8

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=torch.full((2, ), float(idx)))


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory) -> str:
    """A checkpoint written by an mmengine Runner (message hub, optimizer,
    schedulers, meta), as every lumen_mm training writes them."""
    from mmengine.runner import Runner

    work_dir = tmp_path_factory.mktemp('toy_run')
    runner = Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=0.01), clip_grad=dict(max_norm=1)),
        param_scheduler=[dict(type='LinearLR', by_epoch=False, end=2)],
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        randomness=dict(seed=0),
        default_scope='mmengine')
    runner.train()
    return str(work_dir / 'iter_2.pth')


@pytest.fixture
def without_allow_list():
    """torch's global allow-list emptied, as before ``import lumen_mm``;
    restored afterwards."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.add_safe_globals(saved)


def _allowed_names():
    return {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in mmengine_safe_globals()
    }


def test_runner_checkpoints_load_with_the_allow_list(runner_checkpoint,
                                                     without_allow_list):
    # what torch would refuse without the allow-list: exactly what it allows
    needed = set(
        torch.serialization.get_unsafe_globals_in_checkpoint(
            runner_checkpoint))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= _allowed_names()

    checkpoint = load_local_checkpoint(runner_checkpoint)
    assert checkpoint['meta']['iter'] == 2
    assert checkpoint['meta']['dataset_meta'] == ToyDataset.metainfo
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 2
    assert np.isfinite(loss.mean())
    assert set(checkpoint) >= {'state_dict', 'optimizer', 'param_schedulers'}


def test_mmengine_loads_lumen_checkpoints_after_import(runner_checkpoint):
    """mmengine's loader, which mmdet's tools/test.py, train.py --resume,
    init_detector and DetInferencer call, and a plain ``torch.load`` (both
    ``weights_only=True`` under torch >= 2.6) read Runner checkpoints once
    lumen_mm is imported (what ``custom_imports`` does)."""
    from mmengine.runner import load_checkpoint as mmengine_load_checkpoint

    # lumen_mm's own loader first: it must leave the allow-list registered
    # (torch's safe_globals context manager would remove it on exit)
    assert load_checkpoint(runner_checkpoint)['meta']['iter'] == 2
    assert set(mmengine_safe_globals()) <= set(
        torch.serialization.get_safe_globals())
    model = ToyModel()
    checkpoint = mmengine_load_checkpoint(model, runner_checkpoint)
    assert checkpoint['meta']['iter'] == 2
    assert torch.equal(model.linear.weight,
                       checkpoint['state_dict']['linear.weight'])
    loss = torch.load(runner_checkpoint)['message_hub']['log_scalars'][
        'train/loss']
    assert isinstance(loss, HistoryBuffer) and np.isfinite(loss.mean())


def test_without_the_allow_list_mmengine_refuses(runner_checkpoint,
                                                 without_allow_list):
    """The failure mmdet's tools met before: mmengine 0.10.7's local loader
    calls ``torch.load`` without ``weights_only``; registering the
    allow-list is what fixes it. (``import lumen_mm`` also replaces that
    loader in mmengine's ``CheckpointLoader`` by lumen_mm's, which registers
    the allow-list itself: mmengine's own function is called here.)"""
    from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
    from mmengine.runner.checkpoint import load_from_local

    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        load_from_local(runner_checkpoint, map_location=None)
    register_safe_globals()
    register_safe_globals()  # idempotent: torch keeps a set
    assert len(torch.serialization.get_safe_globals()) == len(
        set(mmengine_safe_globals()))
    assert mmengine_load_checkpoint(ToyModel(),
                                    runner_checkpoint)['meta']['iter'] == 2


class RunsCode:
    """What a malicious checkpoint holds: unpickling it runs a command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
def test_code_executing_pickle_is_refused(writer, tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    payload = dict(meta=dict(iter=1), x=RunsCode(str(marker)))
    if writer == 'torch.save':
        torch.save(payload, path)
    else:  # a legacy (not zip) checkpoint file
        with open(path, 'wb') as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_local_checkpoint(str(path))
    message = str(error.value)
    assert f"Refused to load checkpoint '{path}'" in message
    assert 'its pickle asks for posix.system' in message
    assert 'could execute code' in message and 'you trust' in message
    assert not marker.exists()
    # the allow-list registered by `import lumen_mm` for every client does
    # not let it through either
    with pytest.raises(pickle.UnpicklingError, match='posix.system'):
        torch.load(path)
    assert not marker.exists()


class FetchesAttribute:
    """A pickle that uses getattr to reach beyond HistoryBuffer's methods."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_getattr_reaches_only_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save(dict(x=FetchesAttribute()), path)
    with pytest.raises(UnsafeCheckpointError,
                       match="getattr.*'__init__'.*only HistoryBuffer"):
        load_checkpoint(str(path))
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        torch.load(path)  # the globally registered allow-list
    torch.save(dict(x=HistoryBuffer([1.0], [1])), path)
    assert load_checkpoint(str(path))['x'].mean() == 1.0


def test_hugging_face_weights_never_unpickled(tokenizer_dir, tmp_path):
    """Beside model.safetensors, a pickled pytorch_model.bin is ignored."""
    from lumen_mm.models import LlavaLMM
    from test_llava_lmm import TINY
    lmm = LlavaLMM(tokenizer=tokenizer_dir, **TINY)
    path = tmp_path / 'llava'
    lmm.hf_model.save_pretrained(path)
    lmm.tokenizer.save_pretrained(path)
    marker = tmp_path / 'pwned'
    with open(path / 'pytorch_model.bin', 'wb') as f:
        pickle.dump(RunsCode(str(marker)), f, protocol=2)
    loaded = LlavaLMM(pretrained=str(path), **{
        k: v
        for k, v in TINY.items() if k not in ('vision_config', 'text_config')
    })
    assert not marker.exists()
    embedding = 'model.language_model.embed_tokens.weight'
    assert torch.equal(loaded.hf_model.state_dict()[embedding],
                       lmm.hf_model.state_dict()[embedding])
