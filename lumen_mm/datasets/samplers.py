"""The multi-task draw (Sec. 4.1.3): every item reached, at the task rates.

mmdet's ``MultiSourceSampler`` fixes how many samples of each source a batch
holds, rounded down to integers: with batch 20 and rates 0.56 / 0.19 / 0.19
/ 0.06 that is 13 / 3 / 3 / 1 (0.65 / 0.15 / 0.15 / 0.05), and with 16
images and seven Lumen-Shapes tasks VQA (0.96 a batch) gets none. mmengine's
``InfiniteSampler`` shuffles one index space without rates. Hence this
sampler, infinite like ``InfiniteSampler`` and sliced by rank the same way,
so that mmengine's Runner resumes it the same way: ``IterBasedTrainLoop``
replays the iterations done, and a sampler with the run's seed (see
``lumen_mm.cli.resume_with_checkpoint_seed``) yields the same draw again.
"""
from typing import Iterator, List, Optional, Tuple

import numpy as np
from mmdet.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

# A walk draws this many items at a time (several passes of a small
# dataset), so that short passes do not each cost a generator.
_GROUP_ITEMS = 1 << 16
# seed-sequence tags of the two kinds of random numbers
_EPOCH, _WALK = 0, 1


class _Walk:
    """Passes over ``range(size)``, each in a fresh seeded order.

    Item ``q`` of the walk is item ``q % size`` of pass ``q // size``, so a
    walk uses every item once before any twice, and any stretch of it can be
    computed without the ones before it.
    """

    def __init__(self, size: int, key: List[int]) -> None:
        self.size = size
        self.key = key
        self.passes = max(1, -(-_GROUP_ITEMS // size))  # per group
        self.span = self.passes * size
        self._cached: Tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))

    def _group(self, group: int) -> np.ndarray:
        if self._cached[0] != group:
            rng = np.random.default_rng(self.key + [group])
            orders = np.tile(np.arange(self.size, dtype=np.int64),
                             (self.passes, 1))
            self._cached = (group, rng.permuted(orders, axis=1).ravel())
        return self._cached[1]

    def take(self, start: int, count: int) -> np.ndarray:
        """Items ``start`` to ``start + count`` of the walk."""
        pieces = []
        while count > 0:
            group, offset = divmod(start, self.span)
            piece = self._group(group)[offset:offset + count]
            pieces.append(piece)
            start += len(piece)
            count -= len(piece)
        return np.concatenate(pieces) if pieces else np.empty(0, np.int64)


@DATA_SAMPLERS.register_module()
class LumenMultiTaskSampler(Sampler):
    """Draws a ``LumenMultiTaskDataset``'s items at its sampling rates.

    The draw is one endless sequence of dataset indices, the same on every
    rank; rank ``r`` of ``w`` takes positions ``r, r + w, ...`` (as
    mmengine's ``InfiniteSampler``). It is cut into epochs of
    ``dataset.num_samples`` draws. Each dataset (a task's dataset, or each
    dataset of a task's concatenation) has a share ``p`` of the draws (its
    task's rate times its share of the task, ``dataset.streams``) and gets
    ``floor(p * num_samples)`` or one more in each epoch, one more with
    probability equal to the fraction (systematic sampling), so the counts
    are exact on average and a share below one draw per epoch is still
    drawn. Each dataset's draws walk it in passes of fresh random orders
    (``_Walk``), so that every item is drawn once before any is drawn twice;
    an epoch's draws are then shuffled together.

    The draw is a function of ``seed`` alone, and any stretch of it follows
    from the epoch it starts in (``indices(start, stop)``) without loading
    an item: a new sampler with the run's seed continues the run.

    Args:
        dataset: a ``LumenMultiTaskDataset``.
        seed: seed of the draw; mmengine's Runner passes its own. None
            draws one, the same on every rank.
    """

    def __init__(self, dataset, seed: Optional[int] = None) -> None:
        if not hasattr(dataset, 'streams'):
            raise TypeError(
                f'LumenMultiTaskSampler draws from a LumenMultiTaskDataset '
                f'(its tasks, rates and datasets); got '
                f'{type(dataset).__name__}. Set the train dataloader\'s '
                f'dataset to type=\'LumenMultiTaskDataset\'.')
        if seed is None:
            seed = sync_random_seed()
        if seed < 0:
            raise ValueError(f'seed must be >= 0 (numpy seeds the draw), '
                             f'got {seed}')
        self.rank, self.world_size = get_dist_info()
        self.seed = int(seed)
        self.num_samples = int(dataset.num_samples)
        streams = dataset.streams
        self._starts = np.array([s.start for s in streams], np.int64)
        shares = np.array([s.share for s in streams], float)
        self._expected = shares * self.num_samples  # draws per epoch
        self._walks = [
            _Walk(s.size, [self.seed, _WALK, k]) for k, s in enumerate(streams)
        ]
        # where each walk stands at the start of epoch ``_at_epoch``
        self._at_epoch = 0
        self._positions = np.zeros(len(streams), np.int64)

    def _counts(self, rng: np.random.Generator) -> np.ndarray:
        """Draws per dataset in one epoch: floor or ceil of its share."""
        base = np.floor(self._expected).astype(np.int64)
        extra = self.num_samples - int(base.sum())
        bounds = np.concatenate([[0.0], np.cumsum(self._expected - base)])
        bounds[-1] = extra  # the fractions add up to ``extra``, up to floats
        points = rng.random() + np.arange(extra)
        return base + np.diff(np.searchsorted(points, bounds))

    def _walk_positions(self, epoch: int) -> np.ndarray:
        """Where each dataset's walk stands when ``epoch`` starts."""
        if epoch < self._at_epoch:
            self._at_epoch = 0
            self._positions = np.zeros_like(self._positions)
        while self._at_epoch < epoch:
            rng = np.random.default_rng([self.seed, _EPOCH, self._at_epoch])
            self._positions = self._positions + self._counts(rng)
            self._at_epoch += 1
        return self._positions

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The dataset indices of one epoch of the draw, in order."""
        positions = self._walk_positions(epoch)
        rng = np.random.default_rng([self.seed, _EPOCH, epoch])
        counts = self._counts(rng)
        drawn = [
            walk.take(int(at), int(n)) + start for walk, at, n, start in zip(
                self._walks, positions, counts, self._starts)
        ]
        return rng.permutation(np.concatenate(drawn))

    def indices(self, start: int, stop: int) -> np.ndarray:
        """Positions ``start`` to ``stop`` of the draw (all ranks')."""
        pieces = []
        while start < stop:
            epoch, offset = divmod(start, self.num_samples)
            piece = self.epoch_indices(epoch)[offset:offset + stop - start]
            pieces.append(piece)
            start += len(piece)
        return np.concatenate(pieces) if pieces else np.empty(0, np.int64)

    def __iter__(self) -> Iterator[int]:
        position = self.rank
        while True:
            epoch, offset = divmod(position, self.num_samples)
            mine = self.epoch_indices(epoch)[offset::self.world_size]
            yield from mine.tolist()
            position += len(mine) * self.world_size

    def __len__(self) -> int:
        """Draws of one epoch on this rank (the draw itself never ends)."""
        return -(-self.num_samples // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Nothing: the draw is endless, as ``InfiniteSampler``'s is."""
