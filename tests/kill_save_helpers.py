"""Imported (``custom_imports``) by the training subprocess of
tests/test_hostile.py: records each iteration's losses, and, when
``LUMEN_TEST_PAUSE_SAVE`` names a file, writes half of that file, leaves a
``paused`` marker beside it and waits for the test's SIGKILL."""
import json
import os
import os.path as osp
import signal

from mmdet.registry import HOOKS
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook


@HOOKS.register_module()
class RecordLossesHook(Hook):
    """Appends ``{"iter": i, "losses": {...}}`` per iteration to a file."""

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        losses = {k: v.item() for k, v in outputs.items()}
        with open(self.out_file, 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter, losses=losses)) + '\n')


_PAUSE = os.environ.get('LUMEN_TEST_PAUSE_SAVE')
if _PAUSE:
    _put = LocalBackend.put

    def _put_pausing_halfway(self, obj, filepath):
        if osp.basename(filepath) != _PAUSE:
            return _put(self, obj, filepath)
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
        open(osp.join(osp.dirname(filepath), 'paused'), 'w').close()
        while True:  # until the test kills this process
            signal.pause()

    LocalBackend.put = _put_pausing_halfway
