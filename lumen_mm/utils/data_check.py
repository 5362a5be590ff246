"""Check, before a run starts, that the files a config's datasets read exist.

mmengine builds datasets lazily, deep inside ``Runner.train``/``test``, and a
missing annotation file then surfaces as a bare ``FileNotFoundError`` from
``mmengine.fileio``. :func:`check_dataset_files` walks the config instead and
lists every missing path as the ``data/`` tree the config expects.
"""
import os.path as osp
from typing import Dict, Iterable, Mapping, Tuple

# keys that name a file or a folder under a dataset's ``data_root``
_FILE_KEYS = ('ann_file', 'split_file')

GET_DATA_HINT = (
    'Lumen-Shapes is generated with `python tools/make_shapes.py --out '
    'data/lumen_shapes`; other datasets (COCO, RefCOCO...) must be '
    'downloaded into that layout. Or point the datasets\' `data_root` in '
    'the config at where the data is.')


def _join(root: str, path: str) -> str:
    """mmengine's rule: relative paths are joined to ``data_root``."""
    return path if osp.isabs(path) or not root else osp.join(root, path)


def _dataset_paths(node) -> Iterable[Tuple[str, bool]]:
    """(path, is_dir) of every file and folder a config node reads."""
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from _dataset_paths(item)
        return
    if not isinstance(node, Mapping):
        return
    root = node.get('data_root') or ''
    for key in _FILE_KEYS:
        if node.get(key):
            yield _join(root, node[key]), False
    prefix = node.get('data_prefix')
    if isinstance(prefix, Mapping):
        for folder in prefix.values():
            if isinstance(folder, str):
                yield _join(root, folder), True
    for key, value in node.items():
        if key not in ('pipeline', 'data_prefix'):
            yield from _dataset_paths(value)


def expected_dataset_files(cfg: Mapping,
                           keys: Iterable[str]) -> Dict[str, bool]:
    """Every local file and folder (ending in ``/``) that ``cfg[key]`` reads,
    for each key (dataloaders, evaluators), mapped to whether it exists."""
    expected = {}
    for key in keys:
        for path, is_dir in _dataset_paths(cfg.get(key)):
            if '://' in path:  # remote storage: not checked here
                continue
            name = osp.join(path, '') if is_dir else path
            expected[name] = osp.isdir(path) if is_dir else osp.isfile(path)
    return expected


def check_dataset_files(cfg: Mapping, keys: Iterable[str]) -> None:
    """Raise ``FileNotFoundError`` showing the data layout ``cfg`` expects,
    with the missing paths marked, if any is missing.

    Args:
        cfg: a full config.
        keys: what the run reads, e.g. ``('train_dataloader',
            'val_dataloader', 'val_evaluator')``.
    """
    expected = expected_dataset_files(cfg, keys)
    if all(expected.values()):
        return
    tree = '\n'.join(f'  {path}{"" if ok else "   <- missing"}'
                     for path, ok in sorted(expected.items()))
    raise FileNotFoundError(
        'Dataset files of this config are missing. It expects this data '
        f'layout (annotation files, and image folders ending in /):\n{tree}\n'
        + GET_DATA_HINT)
