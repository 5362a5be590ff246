"""Multi-task sampling (Sec. 4.1.3): tasks drawn by configured rates."""
from typing import Dict, List, Sequence

import numpy as np
from mmdet.datasets import ConcatDataset
from mmdet.registry import DATASETS
from mmengine.dataset import BaseDataset


@DATASETS.register_module()
class LumenMultiTaskDataset:
    """Mixes task datasets so that a random index hits task k with rate r_k.

    The paper samples detection, grounding, pose and VQA at 0.56 / 0.19 /
    0.19 / 0.06. Index ``i`` of this dataset maps to a fixed (task, item)
    pair: a seeded permutation assigns ``r_k * num_samples`` indices
    (rounded so that they sum to ``num_samples``) to task ``k``, and those
    walk through the task's dataset in order, so that an epoch covers every
    task dataset evenly and a resumed run sees the same samples. Shuffling
    is the sampler's job.

    Args:
        datasets: task name -> dataset config (or dataset).
        sample_rates: task name -> rate (normalised here).
        num_samples: length of one epoch.
        seed: seed of the index-to-task assignment.
    """

    def __init__(self,
                 datasets: Dict[str, dict],
                 sample_rates: Dict[str, float],
                 num_samples: int,
                 seed: int = 0) -> None:
        unknown = set(sample_rates) - set(datasets)
        if unknown:
            raise KeyError(f'sample_rates names tasks without a dataset: '
                           f'{sorted(unknown)}')
        self.tasks: List[str] = [t for t in datasets if sample_rates.get(t)]
        self.datasets: Dict[str, BaseDataset] = {
            t: DATASETS.build(cfg) if isinstance(cfg, dict) else cfg
            for t, cfg in datasets.items() if t in self.tasks
        }
        rates = np.array([sample_rates[t] for t in self.tasks], float)
        # largest remainders: the counts sum to num_samples, where rounding
        # each share may miss by one per task
        shares = rates / rates.sum() * num_samples
        counts = np.floor(shares).astype(int)
        short = num_samples - counts.sum()
        counts[np.argsort(counts - shares, kind='stable')[:short]] += 1
        task_of = np.repeat(np.arange(len(self.tasks)), counts)
        order = np.random.default_rng(seed).permutation(len(task_of))
        self._task = task_of[order]
        # position of each index among the indices of its task
        self._item = np.zeros(len(task_of), dtype=int)
        for k in range(len(self.tasks)):
            mine = np.flatnonzero(self._task == k)
            self._item[mine] = np.arange(len(mine))
        self.metainfo = next(iter(self.datasets.values())).metainfo

    def __len__(self) -> int:
        return len(self._task)

    def task_of(self, idx: int) -> str:
        return self.tasks[self._task[idx]]

    def __getitem__(self, idx: int) -> dict:
        dataset = self.datasets[self.task_of(idx)]
        return dataset[int(self._item[idx]) % len(dataset)]

    def counts(self) -> Dict[str, int]:
        """Indices per task (what one epoch samples)."""
        return {
            t: int((self._task == k).sum())
            for k, t in enumerate(self.tasks)
        }



@DATASETS.register_module()
class LumenConcatDataset(ConcatDataset):
    """mmdet's ``ConcatDataset`` for validation sets of different tasks.

    mmdet 3.3 compares every dataset's metainfo with the first one's and
    raises ``KeyError`` when a later dataset has a key the first lacks (a pose
    dataset's keypoint info after a detection dataset). Here the first
    dataset's metainfo (the classes that COCO metrics need) serves every
    metric; the pose metric brings its own keypoint info.
    """

    def __init__(self, datasets: Sequence, **kwargs) -> None:
        built = [
            DATASETS.build(d) if isinstance(d, dict) else d for d in datasets
        ]
        keys = set().union(*(d.metainfo.keys() for d in built))
        super().__init__(built, ignore_keys=sorted(keys), **kwargs)
