"""Load torch checkpoints with ``weights_only=True``: data, never code.

A ``.pth`` file is a pickle, and a pickle may name any function for the
loader to call (``os.system``...). ``torch.load(weights_only=True)`` only
rebuilds tensors and plain containers, plus the globals a caller allows.
mmengine 0.10.7's own local loader calls ``torch.load`` without
``weights_only``; since torch 2.6 that means ``True`` with no allowances, which
refuses every mmengine checkpoint (its message hub holds ``HistoryBuffer``
objects and numpy values), so ``resume`` and ``load_from`` fail.
:func:`register_safe_globals` adds exactly the globals they need to torch's
allow-list; ``import lumen_mm`` calls it, so every mmengine / mmdet client
(mmdet's ``tools/test.py``, ``--resume``, ``init_detector``,
``DetInferencer``) loads Lumen checkpoints with ``weights_only=True``.
:func:`load_checkpoint` is lumen_mm's own loader: the same allow-list, with an
error that says what a refused pickle asked for.

What an mmengine 0.10.7 Runner checkpoint holds beyond torch's defaults, found
with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on a checkpoint
of the tiny Lumen (tests/test_safe_load.py re-checks it on a Runner
checkpoint; tests/test_resume.py resumes the tiny Lumen through it):

* numpy arrays and scalars (``numpy._core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.multiarray.scalar``) and
  the classes of numeric dtypes (``numpy.dtypes.Float64DType``...), which
  ``get_unsafe_globals_in_checkpoint`` does not list: they are built, not
  named;
* ``mmengine.logging.history_buffer.HistoryBuffer``;
* ``builtins.getattr``: a ``HistoryBuffer`` holds its statistics functions,
  which pickle as ``getattr(HistoryBuffer, 'mean')``. A general ``getattr``
  would let a pickle walk from an allowed object to any other, so it is
  replaced by :func:`history_buffer_method`, which only fetches those
  functions.

Checkpoints written with numpy 1.x name the same numpy functions under
``numpy.core``; both spellings are allowed.
"""
import os.path as osp
import pickle
import re
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

SafeGlobal = Union[Callable, Tuple[Callable, str]]


def history_buffer_method(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to the statistics methods of HistoryBuffer."""
    if obj is not HistoryBuffer or name not in _STATISTICS:
        raise pickle.UnpicklingError(
            f'the pickle asks for getattr({obj!r}, {name!r}); only '
            'HistoryBuffer statistics methods may be fetched')
    return getattr(HistoryBuffer, name)


# statistics functions every HistoryBuffer holds (min, max, mean, current)
_STATISTICS = frozenset(HistoryBuffer()._statistics_methods)


def mmengine_safe_globals() -> List[SafeGlobal]:
    """Globals an mmengine checkpoint needs, for ``torch.serialization``."""
    # numpy >= 2 moved numpy.core to numpy._core
    core = np._core if hasattr(np, '_core') else np.core
    multiarray = core.multiarray
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        # numpy.dtypes.Float64DType...: a dtype's class rebuilds its state
        *{type(np.dtype(code))
          for code in '?' + np.typecodes['AllInteger'] +
          np.typecodes['AllFloat']},
        (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (history_buffer_method, 'builtins.getattr'),
    ]


def register_safe_globals() -> None:
    """Allow :func:`mmengine_safe_globals` in every weights-only load.

    ``torch.serialization.add_safe_globals`` keeps a set, so calling this
    again changes nothing. mmengine 0.10.7 calls ``torch.load`` without
    ``weights_only`` (``True`` since torch 2.6), so this is what lets its
    loaders read mmengine checkpoints without ``weights_only=False``.
    Code that leaves a ``torch.serialization.safe_globals`` block removes the
    entries that block named, ours included (transformers' ``Trainer`` does
    so for ``numpy.ndarray`` when it resumes); call this again after it.
    """
    torch.serialization.add_safe_globals(mmengine_safe_globals())


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle asks for something that could execute code."""


def _refusal(message: str) -> str:
    """What torch refused, in words, from its ``UnpicklingError`` message."""
    for pattern in (r'GLOBAL (\S+)', r"got <class '([^']+)'>",
                    r'unrecognized function (\S+)'):
        found = re.search(pattern, message)
        if found:
            return f'its pickle asks for {found.group(1)}'
    # otherwise torch's reason: the first line after "WeightsUnpickler error:"
    reason = message.split('WeightsUnpickler error:')[-1].strip()
    reason = reason.splitlines()[0] if reason else 'unknown'
    return f'its pickle is not one weights-only loading reads ({reason})'


def load_checkpoint(filename: str,
                    map_location: Any = None,
                    mmap: bool = False) -> dict:
    """``torch.load(filename, weights_only=True)`` allowing mmengine's types.

    ``mmap=True`` maps the tensors instead of reading them (to read ``meta``
    only).

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UnsafeCheckpointError: the pickle names a function or type outside the
            allow-list (it could run code when loaded); nothing of it is run.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'Checkpoint file {filename!r} does not exist. Pass a .pth file '
            'written by tools/train.py (work_dirs/<config>/iter_<N>.pth; '
            'work_dirs/<config>/last_checkpoint names the latest).')
    # Registered for good, not with torch.serialization.safe_globals: that
    # context manager removes its globals on exit, even ones registered
    # before it (by `import lumen_mm`), and mmengine's loader needs them.
    register_safe_globals()
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename!r}: {_refusal(str(e))}. '
            'lumen_mm loads tensors, plain containers and the types mmengine '
            'checkpoints hold; anything else could execute code while '
            'loading. Only load checkpoints from sources you trust; if you '
            'trust this one and it holds another type, allow that type with '
            '`torch.serialization.add_safe_globals([...])` before loading.'
        ) from e
