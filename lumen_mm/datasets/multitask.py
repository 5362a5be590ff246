"""Multi-task training data (Sec. 4.1.3): task datasets, rates, shares."""
import bisect
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from mmdet.datasets import ConcatDataset
from mmdet.registry import DATASETS
from mmengine.dataset import BaseDataset


class Stream(NamedTuple):
    """One dataset of the draw: a task's dataset, or one of its concatenation.

    ``start`` is its first index in the ``LumenMultiTaskDataset``, ``share``
    its fraction of all draws.
    """
    name: str
    task: str
    start: int
    size: int
    share: float


@DATASETS.register_module()
class LumenMultiTaskDataset:
    """The task datasets of multi-task training, one after another.

    Index ``i`` is an item of one task's dataset (``task_of(i)``), in the
    order of ``datasets``; which items are drawn, and how often, is
    ``LumenMultiTaskSampler``'s job (the train dataloader's sampler): task
    ``k`` with rate ``r_k`` (the paper: detection, grounding, pose, VQA at
    0.56 / 0.19 / 0.19 / 0.06), every item of a dataset once before any
    twice.

    Where a task's dataset is a concatenation (detection: COCO, Objects365,
    OpenImages), each of its datasets is drawn at its own share of the task:
    ``source_weights[task]``, normalised, or by default its size (the paper
    lists each task's datasets, not their shares; by size the task draws
    its items alike, whichever dataset holds them).

    Args:
        datasets: task name -> dataset config (or dataset).
        sample_rates: task name -> rate (normalised here); tasks without a
            rate, or with rate 0, are left out.
        num_samples: draws per epoch of the sampler: each epoch holds each
            dataset's share of it to within one draw.
        source_weights: task name -> one weight per dataset of the task's
            concatenation; tasks not named share by size.
    """

    def __init__(
            self,
            datasets: Dict[str, dict],
            sample_rates: Dict[str, float],
            num_samples: int,
            source_weights: Optional[Dict[str,
                                          Sequence[float]]] = None) -> None:
        source_weights = dict(source_weights or {})
        named = dict(sample_rates=sample_rates, source_weights=source_weights)
        for what, names in named.items():
            unknown = set(names) - set(datasets)
            if unknown:
                raise KeyError(f'{what} names tasks without a dataset: '
                               f'{sorted(unknown)}; tasks: {list(datasets)}')
        if num_samples < 1:
            raise ValueError(f'num_samples (draws per epoch) must be >= 1, '
                             f'got {num_samples}')
        self.num_samples = int(num_samples)
        self.tasks: List[str] = [t for t in datasets if sample_rates.get(t)]
        rates = np.array([sample_rates[t] for t in self.tasks], float)
        if not self.tasks or (rates < 0).any():
            raise ValueError(f'sample_rates must be >= 0, one at least > 0: '
                             f'{sample_rates}')
        rates /= rates.sum()
        self.datasets: Dict[str, BaseDataset] = {
            t: DATASETS.build(cfg) if isinstance(cfg, dict) else cfg
            for t, cfg in datasets.items() if t in self.tasks
        }
        self.streams: List[Stream] = []
        self._starts: List[int] = []  # first index of each task
        start = 0
        for task, rate in zip(self.tasks, rates):
            self._starts.append(start)
            sizes = _source_sizes(self.datasets[task])
            weights = source_weights.get(task)
            if weights is None:
                weights = sizes
            elif len(weights) != len(sizes) or min(weights) < 0:
                raise ValueError(
                    f'source_weights[{task!r}] needs one weight >= 0 per '
                    f'dataset of the task ({len(sizes)}), got {weights}')
            if sum(weights) <= 0:
                raise ValueError(
                    f'task {task!r} has nothing to draw: its datasets are '
                    f'empty or weighted 0 (sizes {sizes}, weights '
                    f'{list(weights)}); give it data or rate 0')
            for k, (size, weight) in enumerate(zip(sizes, weights)):
                name = task if len(sizes) == 1 else f'{task}[{k}]'
                if weight > 0 and size == 0:
                    raise ValueError(f'dataset {name} is empty but has a '
                                     f'share of the draw; give it weight 0')
                if weight > 0:
                    self.streams.append(
                        Stream(name, task, start, size,
                               float(rate * weight / sum(weights))))
                start += size
        self._length = start
        self.metainfo = next(iter(self.datasets.values())).metainfo

    def __len__(self) -> int:
        return self._length

    def _locate(self, idx: int) -> Tuple[int, int]:
        if not 0 <= idx < self._length:
            raise IndexError(f'index {idx} out of range for '
                             f'{self._length} items')
        k = bisect.bisect_right(self._starts, idx) - 1
        return k, idx - self._starts[k]

    def task_of(self, idx: int) -> str:
        return self.tasks[self._locate(idx)[0]]

    def __getitem__(self, idx: int) -> dict:
        k, item = self._locate(int(idx))
        return self.datasets[self.tasks[k]][item]

    def draws_per_stream(self, indices: np.ndarray) -> Dict[str, int]:
        """How many of ``indices`` (a draw) fall in each stream."""
        starts = np.array([s.start for s in self.streams])
        which = np.searchsorted(starts, indices, side='right') - 1
        counts = np.bincount(which, minlength=len(self.streams))
        return {s.name: int(c) for s, c in zip(self.streams, counts)}


def _source_sizes(dataset) -> List[int]:
    """Sizes of the datasets a concatenation joins, or the dataset's own."""
    total = len(dataset)  # loads a lazily initialised concatenation
    if hasattr(dataset, 'cumulative_sizes') and hasattr(dataset, 'datasets'):
        return np.diff([0] + list(dataset.cumulative_sizes)).tolist()
    return [total]


@DATASETS.register_module()
class LumenConcatDataset(ConcatDataset):
    """mmdet's ``ConcatDataset`` for validation sets of different tasks.

    mmdet 3.3 compares every dataset's metainfo with the first one's and
    raises ``KeyError`` when a later dataset has a key the first lacks (a pose
    dataset's keypoint info after a detection dataset). Here the first
    dataset's metainfo (the classes that COCO metrics need) serves every
    metric; the pose metric brings its own keypoint info. It is one dict, as
    visualizers read it (mmdet's list of metainfos breaks
    ``DetLocalVisualizer``).

    Args:
        datasets: dataset configs (or datasets), built with ``lazy_init``
            when it is set, so that mmdet's ``DetInferencer``, which builds
            the test set lazily for its metainfo, needs no annotation files.
        pipeline: the transforms for an image outside the datasets: mmdet's
            ``DetInferencer`` and ``inference_detector`` read it from the
            config (``test_dataloader.dataset.pipeline``); this dataset does
            not run it. It must load with ``LoadImageFromFile``, the step
            ``DetInferencer`` replaces with its own loader.
        **kwargs: mmdet's ``ConcatDataset`` arguments (``lazy_init``).
    """

    def __init__(self,
                 datasets: Sequence,
                 pipeline: Sequence[dict] = (),
                 **kwargs) -> None:
        if pipeline and not any(
                t.get('type') == 'LoadImageFromFile' for t in pipeline):
            raise ValueError(
                'The pipeline of LumenConcatDataset is what DetInferencer '
                "runs on its images and must load them with dict(type="
                "'LoadImageFromFile'); got "
                f"{[t.get('type') for t in pipeline]}.")
        lazy = dict(lazy_init=True) if kwargs.get('lazy_init') else {}
        built = [
            DATASETS.build(dict(d, **lazy)) if isinstance(d, dict) else d
            for d in datasets
        ]
        keys = set().union(*(d.metainfo.keys() for d in built))
        super().__init__(built, ignore_keys=sorted(keys), **kwargs)
