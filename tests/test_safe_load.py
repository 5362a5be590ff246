"""Safe loading (issue 8): torch checkpoints with ``weights_only=True`` and an
explicit allow-list, Hugging Face weights through safetensors only."""
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
from lumen_mm.utils.safe_load import mmengine_safe_globals


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


def _allowed_names():
    return {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in mmengine_safe_globals()
    }


def test_runner_checkpoints_load_with_the_allow_list(runner_checkpoint):
    needed = set(
        torch.serialization.get_unsafe_globals_in_checkpoint(
            runner_checkpoint))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= _allowed_names()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint, weights_only=True)  # mmengine's way

    checkpoint = load_local_checkpoint(runner_checkpoint)
    assert checkpoint['meta']['iter'] == 2
    assert checkpoint['meta']['dataset_meta'] == ToyDataset.metainfo
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 2
    assert np.isfinite(loss.mean())
    assert set(checkpoint) >= {'state_dict', 'optimizer', 'param_schedulers'}


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
