"""``LumenRunner``: mmengine's Runner whose data-loader workers end with
their parent and whose ``--resume`` finds the newest intact checkpoint.
Lumen's configs name it (``runner_type``), so mmdet's own tools build it
too; lumen_mm's tools (``lumen_mm.cli.build_runner``) also build it for
configs without a ``runner_type``. Checkpoint checks on load and atomic
saves are in :class:`~lumen_mm.engine.checkpoint.LumenCheckpointHook`,
which every Runner runs.
"""
import ctypes
import os
import signal
import sys
from typing import Callable, Optional

# the root registry: mmdet's tools build runners from mmengine's
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .checkpoint import find_resumable_checkpoint

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DieWithParent:
    """A DataLoader ``worker_init_fn``: the worker gets SIGKILL when the
    process that started it dies (Linux ``PR_SET_PDEATHSIG``), then runs
    ``chained`` (mmengine's seeding or the config's own function).

    torch's workers notice a dead parent only when they next wait for work
    (every 5 s), and a worker whose result queue is full blocks at exit:
    after ``kill -9`` of training, persistent workers stayed for 25+
    minutes, ~600 MB each. Elsewhere than Linux only ``chained`` runs.
    """

    def __init__(self, chained: Optional[Callable] = None) -> None:
        self.chained = chained
        self.parent = os.getpid()

    def __call__(self, worker_id: int) -> None:
        if sys.platform.startswith('linux'):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), 'prctl(PR_SET_PDEATHSIG)')
            # the parent may have died before prctl: then nobody signals us
            if os.getppid() != self.parent:
                os.kill(os.getpid(), signal.SIGKILL)
        if self.chained is not None:
            self.chained(worker_id)


@RUNNERS.register_module()
class LumenRunner(Runner):
    """mmengine's ``Runner`` with two changes (mmengine 0.10.7):

    * data-loader workers end with the training process
      (:class:`DieWithParent` before the loader's own ``worker_init_fn``);
    * ``--resume`` without a path takes the newest intact checkpoint when
      ``last_checkpoint`` is empty, stale or names a damaged file
      (mmengine resumes from whatever ``last_checkpoint`` says).

    It also keeps the name of the file it loads for the errors of
    ``LumenCheckpointHook``.
    """

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        loader = Runner.build_dataloader(
            dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        if getattr(loader, 'num_workers', 0) > 0:
            # read when workers start (each iter()), so it can be set now
            loader.worker_init_fn = DieWithParent(loader.worker_init_fn)
        return loader

    def load_checkpoint(self, filename, *args, **kwargs):
        # the file's name, for LumenCheckpointHook's errors
        self.checkpoint_file = filename
        try:
            return super().load_checkpoint(filename, *args, **kwargs)
        finally:
            self.checkpoint_file = None

    def load_or_resume(self) -> None:
        if self._resume and self._load_from is None and not self._has_loaded:
            # mmengine reads last_checkpoint as it is (find_latest_checkpoint)
            self._load_from = find_resumable_checkpoint(
                self.work_dir, self.logger)
            if self._load_from is None:
                self.logger.info(
                    f'No checkpoint to resume in {self.work_dir}: a new run.')
                self._resume = False
        super().load_or_resume()
