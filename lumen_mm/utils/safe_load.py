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
import os
import os.path as osp
import pickle
import re
import weakref
import zipfile
import zlib
from typing import Any, Callable, List, Optional, Tuple, Union

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


class CorruptCheckpointError(ValueError):
    """A checkpoint file is empty, truncated or its bytes are damaged."""


class CheckpointFormatError(ValueError):
    """A checkpoint file loads, but does not hold a checkpoint."""


_FIX = ('Use another checkpoint of the run (every save writes '
        'work_dirs/<config>/iter_<N>.pth; `tools/train.py --resume` picks '
        'the newest intact one) or copy the file again from its source.')

# (real path, size, mtime_ns) of files whose checksums were verified: a
# resume reads its checkpoint twice (seed, then weights), verified once
_VERIFIED = set()


def verify_checkpoint_file(filename: str) -> None:
    """Check that ``filename`` is a complete checkpoint with intact bytes.

    torch saves zip files whose records carry a CRC-32 of their bytes, but
    ``torch.load`` does not check it: damaged bytes inside a weight load as
    wrong numbers. This reads the whole file once and compares every
    record's CRC-32 (``zipfile.ZipFile.testzip``; about the cost of reading
    the file, see :func:`load_checkpoint`). A legacy (not zip) pickle has no
    checksum: only its emptiness is checked here, truncation when it loads.

    Raises:
        CorruptCheckpointError: empty, truncated, or a checksum differs.
    """
    stat = os.stat(filename)
    key = (osp.realpath(filename), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    if stat.st_size == 0:
        raise CorruptCheckpointError(
            f'Checkpoint file {filename!r} is empty (0 bytes): a save that '
            f'was interrupted or a failed copy. {_FIX}')
    with open(filename, 'rb') as f:
        is_zip_start = f.read(4) == b'PK\x03\x04'
    if zipfile.is_zipfile(filename):
        try:
            with zipfile.ZipFile(filename) as archive:
                records = archive.infolist()
                # torch.serialization.config.save.compute_crc32=False writes
                # no checksums (every CRC 0): nothing to compare
                damaged = (archive.testzip() if any(
                    r.CRC for r in records if r.file_size) else None)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
            raise CorruptCheckpointError(
                f'Checkpoint file {filename!r} is truncated or damaged ({e}). '
                f'{_FIX}') from e
        if damaged is not None:
            raise CorruptCheckpointError(
                f'Checkpoint file {filename!r} is corrupt: the bytes of its '
                f'record {damaged!r} do not match their CRC-32 checksum (a '
                f'damaged disk, download or copy). {_FIX}')
    elif is_zip_start:  # a zip without its closing directory
        raise CorruptCheckpointError(
            f'Checkpoint file {filename!r} is truncated: its zip archive '
            f'ends before its directory (an interrupted save or copy). {_FIX}')
    _VERIFIED.add(key)


def _legacy_truncated(filename: str) -> bool:
    """Whether a legacy (not zip) torch file ends inside one of its pickles
    (magic number, protocol, system info, object, storage keys; a plain
    pickle file has one)."""
    import pickletools
    if zipfile.is_zipfile(filename):
        return False
    with open(filename, 'rb') as f:
        for _ in range(5):
            start = f.tell()
            if not f.read(1):
                return False  # ends between pickles
            f.seek(start)
            try:
                for _ in pickletools.genops(f):
                    pass
            except Exception:  # genops: ValueError / EOF inside an opcode
                return True
    return False


def check_checkpoint_structure(checkpoint: Any, filename: str) -> None:
    """Raise :class:`CheckpointFormatError` unless ``checkpoint`` is a dict:
    an mmengine checkpoint (its ``state_dict`` a dict of tensors) or a
    plain state dict."""
    expected = ('expected a dict: an mmengine checkpoint whose '
                "'state_dict' maps parameter names to tensors (what "
                'tools/train.py saves), or such a state dict itself '
                '(`torch.save(model.state_dict(), path)`)')
    if not isinstance(checkpoint, dict):
        raise CheckpointFormatError(
            f'Checkpoint file {filename!r} holds a '
            f'{type(checkpoint).__name__}, not a checkpoint: {expected}.')
    if 'state_dict' in checkpoint and not isinstance(
            checkpoint['state_dict'], dict):
        raise CheckpointFormatError(
            f"Checkpoint file {filename!r} has a 'state_dict' that is "
            f"{type(checkpoint['state_dict']).__name__}, not a dict of "
            f'tensors: {expected}.')


def load_checkpoint(filename: str,
                    map_location: Any = None,
                    mmap: bool = False,
                    verify: bool = True) -> dict:
    """``torch.load(filename, weights_only=True)`` allowing mmengine's types,
    with the file's integrity and the checkpoint's structure checked.

    ``mmap=True`` maps the tensors instead of reading them (to read ``meta``
    only). ``verify`` compares the CRC-32 of every record first
    (:func:`verify_checkpoint_file`); measured on this repository's 2-core
    machine: about 0.4 s per GB read from the page cache, once per file.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        CorruptCheckpointError: the file is empty, truncated or damaged.
        CheckpointFormatError: it loads, but is not a dict checkpoint.
        UnsafeCheckpointError: the pickle names a function or type outside the
            allow-list (it could run code when loaded); nothing of it is run.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'Checkpoint file {filename!r} does not exist. Pass a .pth file '
            'written by tools/train.py (work_dirs/<config>/iter_<N>.pth; '
            'work_dirs/<config>/last_checkpoint names the latest).')
    if verify:
        verify_checkpoint_file(filename)
    # Registered for good, not with torch.serialization.safe_globals: that
    # context manager removes its globals on exit, even ones registered
    # before it (by `import lumen_mm`), and mmengine's loader needs them.
    register_safe_globals()
    try:
        checkpoint = torch.load(
            filename, map_location=map_location, weights_only=True, mmap=mmap)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as e:
        if (isinstance(e, EOFError) or 'unexpected EOF' in str(e)
                or _legacy_truncated(filename)):
            raise CorruptCheckpointError(
                f'Checkpoint file {filename!r} is truncated: its data ends '
                f'early (an interrupted save or copy). {_FIX}') from e
        if not isinstance(e, pickle.UnpicklingError):
            raise
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename!r}: {_refusal(str(e))}. '
            'lumen_mm loads tensors, plain containers and the types mmengine '
            'checkpoints hold; anything else could execute code while '
            'loading. Only load checkpoints from sources you trust; if you '
            'trust this one and it holds another type, allow that type with '
            '`torch.serialization.add_safe_globals([...])` before loading.'
        ) from e
    check_checkpoint_structure(checkpoint, filename)
    return checkpoint


# The checkpoint mmengine's loader read last, until a model loads it: its
# file, its meta and one of its tensors (a weak reference: the tensor is how
# the model recognises the state dict mmengine hands it).
_mmengine_read: dict = {}


def _mmengine_local_loader(filename: str, map_location: Any) -> dict:
    """mmengine's loader of local files (``load_from_local``) with
    :func:`load_checkpoint`'s checks; remembers what it read (see
    :func:`take_mmengine_read`)."""
    checkpoint = load_checkpoint(filename, map_location=map_location)
    state = checkpoint.get('state_dict', checkpoint)
    tensor = next((v for v in state.values() if isinstance(v, torch.Tensor)),
                  None)
    _mmengine_read.clear()
    if tensor is not None:
        _mmengine_read.update(
            filename=filename, meta=checkpoint.get('meta') or {},
            tensor=weakref.ref(tensor))
    return checkpoint


def take_mmengine_read(state_dict: Optional[dict] = None) -> Optional[dict]:
    """What mmengine's loader read last (``filename``, ``meta``), if
    ``state_dict`` holds its tensors (``None``: whatever it was); forgotten
    once taken. mmengine hands a model only the state dict, without the
    checkpoint's meta (trainable-only, tokenizer) that checking it needs."""
    read = dict(_mmengine_read)
    _mmengine_read.clear()
    tensor = read.pop('tensor', lambda: None)()
    if tensor is None or (state_dict is not None and not any(
            v is tensor for v in state_dict.values())):
        return None
    return read


def register_checkpoint_loader() -> None:
    """Make mmengine read local checkpoints with :func:`load_checkpoint`.

    mmengine's ``CheckpointLoader`` picks a loader by path prefix; ``''``
    (local files) is its ``load_from_local``, a bare ``torch.load``. Replacing
    that entry gives every mmengine / mmdet client (``Runner.load_checkpoint``
    and ``resume``, ``init_detector``, mmdet's ``tools/test.py``) the
    integrity and structure checks. ``import lumen_mm`` calls it.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=_mmengine_local_loader, force=True)


class UnsafeDataFileError(pickle.UnpicklingError):
    """A data pickle names a function or class: it could run code."""


# globals a pickle of plain data may name (protocol 2 spells sets this way)
_PLAIN_GLOBALS = frozenset({('builtins', 'set'), ('builtins', 'frozenset')})


class _PlainDataUnpickler(pickle.Unpickler):
    """Rebuilds lists, dicts, tuples, strings, numbers, None and sets; any
    other global a pickle names is refused before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeDataFileError(f'{module}.{name}')


def load_plain_pickle(file: Any, filename: str) -> Any:
    """Unpickle plain data (lists, dicts, strings, numbers) from ``file``
    (a path or a binary file object), refusing anything that could run code.

    Raises:
        UnsafeDataFileError: the pickle names a function or class.
    """
    try:
        if isinstance(file, (str, os.PathLike)):
            with open(file, 'rb') as f:
                return _PlainDataUnpickler(f).load()
        return _PlainDataUnpickler(file).load()
    except UnsafeDataFileError as e:
        raise UnsafeDataFileError(
            f'Refused to load {filename!r}: its pickle asks for {e}, and '
            'data pickles here may hold only lists, dicts, tuples, strings '
            'and numbers (anything else could execute code while loading). '
            'Regenerate the file from its source (for RefCOCO-style refs: '
            'the refer API, or tools/make_shapes.py for Lumen-Shapes).'
        ) from None
