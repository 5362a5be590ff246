"""Multi-task sampling (issue 32 item 1): every item reached, at the rates,
the same draw for the same seed and after a resume."""
import copy
import itertools
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import ConcatDataset, DataLoader

from lumen_mm.datasets import LumenMultiTaskDataset, LumenMultiTaskSampler
from lumen_mm.datasets import samplers as samplers_module

PAPER_RATES = dict(det=0.56, ground=0.19, pose=0.19, vqa=0.06)
# 50k iterations x batch 20 x 8 GPUs (Sec. 4.1.3)
PAPER_DRAWS = 50000 * 20 * 8


class _Fake:
    """A dataset of ``n`` items without images: item ``i`` is (name, i)."""
    metainfo = dict(classes=('a', ))

    def __init__(self, n: int, name: str = '') -> None:
        self.n, self.name = n, name

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        return self.name, i


class _FakeConcat(ConcatDataset):
    """A task's concatenation (detection: COCO + Objects365 + ...)."""
    metainfo = _Fake.metainfo


def _paper_like(num_samples: int = 1000000, **kwargs):
    """Detection joins 10 and 10^6 items; grounding 10^3, pose 10 and VQA
    10^6, the last drawn 0.06 x 8M = 480k times: about half of it."""
    return LumenMultiTaskDataset(
        datasets=dict(
            det=_FakeConcat([_Fake(10, 'det0'), _Fake(10**6, 'det1')]),
            ground=_Fake(10**3, 'ground'), pose=_Fake(10, 'pose'),
            vqa=_Fake(10**6, 'vqa')),
        sample_rates=PAPER_RATES, num_samples=num_samples, **kwargs)


def test_paper_length_run_reaches_every_item_at_the_task_rates():
    dataset = _paper_like()
    drawn = LumenMultiTaskSampler(dataset, seed=0).indices(0, PAPER_DRAWS)
    epochs = PAPER_DRAWS // dataset.num_samples
    per_stream = dataset.draws_per_stream(drawn)
    assert sum(per_stream.values()) == PAPER_DRAWS
    # Tolerance: each dataset gets its share of an epoch to within one draw,
    # so a task of s datasets is off its rate by at most s draws an epoch.
    for task, rate in PAPER_RATES.items():
        mine = [s for s in dataset.streams if s.task == task]
        got = sum(per_stream[s.name] for s in mine)
        assert abs(got - rate * PAPER_DRAWS) <= epochs * len(mine), task
    times = np.bincount(drawn, minlength=len(dataset))
    for stream in dataset.streams:
        seen = times[stream.start:stream.start + stream.size]
        expected = stream.share * PAPER_DRAWS
        # within a dataset's epochs, again to within one draw each
        assert abs(per_stream[stream.name] - expected) <= epochs
        if expected >= stream.size:
            # every item, each as often as any other to within one
            assert seen.min() >= 1 and seen.max() - seen.min() <= 1, stream
        else:
            # the large VQA set: no item twice before each once
            assert seen.max() == 1, stream
            assert (seen > 0).mean() == pytest.approx(
                expected / stream.size, abs=epochs / stream.size)
    # by size, detection's 10 items get 10 / (10^6 + 10) of its draws
    assert per_stream['det[0]'] >= 10


def test_source_weights_set_the_shares_within_a_task():
    sources = [_Fake(10), _Fake(1000)]
    by_size = LumenMultiTaskDataset(
        datasets=dict(det=_FakeConcat(sources), vqa=_Fake(5)),
        sample_rates=dict(det=0.8, vqa=0.2), num_samples=1000)
    assert [s.share for s in by_size.streams] == pytest.approx(
        [0.8 * 10 / 1010, 0.8 * 1000 / 1010, 0.2])
    even = LumenMultiTaskDataset(
        datasets=dict(det=_FakeConcat(sources), vqa=_Fake(5)),
        sample_rates=dict(det=0.8, vqa=0.2), num_samples=1000,
        source_weights=dict(det=[1, 1]))
    drawn = LumenMultiTaskSampler(even, seed=0).indices(0, 10000)
    assert even.draws_per_stream(drawn) == dict(
        {'det[0]': 4000, 'det[1]': 4000, 'vqa': 2000})
    with pytest.raises(ValueError, match=r"source_weights\['det'\].*\(2\)"):
        LumenMultiTaskDataset(
            datasets=dict(det=_FakeConcat(sources)), sample_rates=dict(det=1),
            num_samples=10, source_weights=dict(det=[1, 1, 1]))


def test_shares_below_one_draw_an_epoch_are_still_drawn():
    """Seven tasks in epochs of 8 draws: VQA's 0.48 a epoch, rounded alone,
    would be 0 every epoch."""
    rates = dict(det=0.30, seg=0.16, count=0.10, ground=0.12, refseg=0.07,
                 pose=0.19, vqa=0.06)
    dataset = LumenMultiTaskDataset(
        datasets={t: _Fake(5) for t in rates}, sample_rates=rates,
        num_samples=8)
    sampler = LumenMultiTaskSampler(dataset, seed=3)
    for epoch in range(50):
        got = dataset.draws_per_stream(sampler.epoch_indices(epoch))
        assert sum(got.values()) == 8
        for task, n in got.items():
            assert abs(n - rates[task] * 8) < 1, (epoch, task)
    got = dataset.draws_per_stream(sampler.indices(0, 8000))
    for task, rate in rates.items():
        assert got[task] / 8000 == pytest.approx(rate, abs=0.01), task


def test_the_seed_decides_the_draw():
    first = LumenMultiTaskSampler(_paper_like(100), seed=1).indices(0, 1000)
    again = LumenMultiTaskSampler(_paper_like(100), seed=1).indices(0, 1000)
    other = LumenMultiTaskSampler(_paper_like(100), seed=2).indices(0, 1000)
    assert (first == again).all()
    assert (first != other).mean() > 0.5


def test_rate_zero_leaves_a_task_out():
    """As the Table 2 ablations do (``sample_rates=dict(det=0)``)."""
    dataset = LumenMultiTaskDataset(
        datasets=dict(det=_Fake(4, 'det'), vqa=_Fake(3, 'vqa')),
        sample_rates=dict(det=0, vqa=0.06), num_samples=10)
    assert dataset.tasks == ['vqa'] and len(dataset) == 3
    drawn = LumenMultiTaskSampler(dataset, seed=0).indices(0, 30)
    assert np.bincount(drawn).tolist() == [10, 10, 10]


def test_the_runner_builds_it_by_name():
    """mmengine's Runner builds the sampler from the config's type, with the
    dataset and its seed (Runner.build_dataloader)."""
    from mmengine.registry import DATA_SAMPLERS
    dataset = _paper_like(10)
    sampler = DATA_SAMPLERS.build(dict(type='LumenMultiTaskSampler'),
                                  default_args=dict(dataset=dataset, seed=4))
    assert isinstance(sampler, LumenMultiTaskSampler) and sampler.seed == 4


def _batches(dataset, seed: int, skip: int, take: int):
    """Batches ``skip`` to ``skip + take`` of a fresh sampler and dataloader,
    replayed as mmengine's IterBasedTrainLoop resumes at iteration
    ``skip``."""
    sampler = LumenMultiTaskSampler(dataset, seed=seed)
    loader = DataLoader(dataset, batch_size=7, sampler=sampler,
                        collate_fn=list)
    batches = _InfiniteDataloaderIterator(loader)
    for _ in range(skip):
        next(batches)
    return [next(batches) for _ in range(take)]


def test_resume_continues_the_draw():
    """Epochs of 30 draws, batches of 7: iteration 11 resumes mid-epoch."""
    run = _batches(_paper_like(30), seed=5, skip=0, take=20)
    resumed = _batches(_paper_like(30), seed=5, skip=11, take=9)
    assert resumed == run[11:]
    # and the loader yields the sampler's draw, batch after batch
    dataset = _paper_like(30)
    drawn = LumenMultiTaskSampler(dataset, seed=5).indices(0, 140)
    assert sum(run, []) == [dataset[i] for i in drawn]


def test_ranks_share_one_draw(monkeypatch):
    dataset = _paper_like(25)
    whole = LumenMultiTaskSampler(dataset, seed=0).indices(0, 300)
    for rank in range(3):
        monkeypatch.setattr(samplers_module, 'get_dist_info',
                            lambda rank=rank: (rank, 3))
        sampler = LumenMultiTaskSampler(dataset, seed=0)
        mine = list(itertools.islice(iter(sampler), 100))
        assert mine == whole[rank::3].tolist()


def test_bad_input_says_what_to_fix():
    with pytest.raises(TypeError, match='LumenMultiTaskDataset'):
        LumenMultiTaskSampler(_Fake(3), seed=0)
    with pytest.raises(KeyError, match='pose'):
        LumenMultiTaskDataset(datasets=dict(det=_Fake(2)),
                              sample_rates=dict(det=1, pose=1), num_samples=4)
    with pytest.raises(ValueError, match="'det' has nothing.*rate 0"):
        LumenMultiTaskDataset(datasets=dict(det=_Fake(0)),
                              sample_rates=dict(det=1), num_samples=4)
    with pytest.raises(ValueError, match=r'det\[0\] is empty'):
        LumenMultiTaskDataset(
            datasets=dict(det=_FakeConcat([_Fake(0), _Fake(3)])),
            sample_rates=dict(det=1), num_samples=4,
            source_weights=dict(det=[1, 1]))


CONFIGS = Path(__file__).resolve().parents[1] / 'configs/lumen'


@pytest.mark.parametrize('name', [
    'lumen_llava-v1.1-7b_lora_448_multitask_50k.py',
    'shapes/lumen_tiny_shapes_det_ground.py',
    'shapes/lumen_tiny_shapes_all_tasks.py',
])
def test_configs_draw_with_the_sampler(name):
    """A multi-task dataset under another sampler ignores its rates."""
    import lumen_mm  # noqa: F401 (the lumen_mm:: config prefix)
    loader = Config.fromfile(str(CONFIGS / name)).train_dataloader
    assert loader.dataset.type == 'LumenMultiTaskDataset'
    assert loader.sampler.type == 'LumenMultiTaskSampler'


def test_shapes_draw_reaches_every_item(shapes_root):
    """The real Lumen-Shapes datasets, built from the base config (the
    all-task config's pose dataset would import mmpose, seconds here)."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    from conftest import SHAPES_CONFIG, retarget
    init_default_scope('mmdet')
    cfg = retarget(Config.fromfile(str(SHAPES_CONFIG)), 'data/lumen_shapes',
                   str(shapes_root))
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    epochs = 2
    drawn = LumenMultiTaskSampler(dataset, seed=0).indices(
        0, epochs * dataset.num_samples)
    assert set(drawn.tolist()) == set(range(len(dataset)))
    got = dataset.draws_per_stream(drawn)
    for task, rate in cfg.train_dataloader.dataset.sample_rates.items():
        assert abs(got[task] - rate * len(drawn)) <= epochs, task
    # the tasks mix within a batch
    assert {dataset.task_of(int(i)) for i in drawn[:16]} == {'det', 'ground'}
