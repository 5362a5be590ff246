"""Compare two prediction dumps of ``tools/test.py --out`` sample by sample.

Used to check that a refactor keeps a checkpoint's outputs: dump the same
checkpoint's predictions with the old and the new code, then::

    python scripts/compare_predictions.py old.pkl new.pkl

Boxes, scores and keypoints must agree within ``--atol``; labels, masks (RLE),
counts and generated text must be identical. Keys that only one side has are
listed (a new output field is not a difference in what was predicted).
Exits 1 on the first kind of difference, after printing every one found.
"""
import argparse
import pickle
import sys
from typing import Any, List

import numpy as np

# fields compared numerically; everything else must be equal
CLOSE = ('bboxes', 'scores', 'keypoints', 'keypoint_scores', 'bbox_scores',
         'heatmaps')
PREDICTIONS = ('pred_instances', 'pred_count', 'pred_text', 'pred_task')


def _as_array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, 'numpy') else value)


def compare(old: List[dict], new: List[dict], atol: float) -> List[str]:
    """Differences between two lists of dumped samples (empty: the same)."""
    problems = []
    if len(old) != len(new):
        return [f'{len(old)} samples against {len(new)}']
    for i, (a, b) in enumerate(zip(old, new)):
        where = f'sample {i} ({a.get("img_path")}, {a.get("task")})'
        for key in PREDICTIONS:
            if (key in a) != (key in b):
                problems.append(f'{where}: {key} in one dump only')
            elif key == 'pred_instances' and key in a:
                problems += _compare_instances(a[key], b[key], atol, where)
            elif key in a and a[key] != b[key]:
                problems.append(f'{where}: {key} {a[key]!r} != {b[key]!r}')
    return problems


def _compare_instances(a: dict, b: dict, atol: float,
                       where: str) -> List[str]:
    problems = []
    for key in sorted(set(a) | set(b)):
        if key not in b:  # a field the new code dropped
            problems.append(f'{where}: pred_instances.{key} is gone')
        if key not in a or key not in b:
            continue
        if key in CLOSE:
            x, y = _as_array(a[key]), _as_array(b[key])
            if x.shape != y.shape or not np.allclose(x, y, atol=atol):
                diff = (np.abs(x - y).max()
                        if x.shape == y.shape and x.size else 'shape')
                problems.append(f'{where}: {key} differs ({diff})')
        elif key == 'masks':  # RLE dicts from DumpDetResults
            if a[key] != b[key]:
                problems.append(f'{where}: masks differ')
        elif not np.array_equal(_as_array(a[key]), _as_array(b[key])):
            problems.append(f'{where}: {key} differs')
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('old', help='pickle of tools/test.py --out (before)')
    parser.add_argument('new', help='pickle of tools/test.py --out (after)')
    parser.add_argument('--atol', type=float, default=1e-5)
    args = parser.parse_args()
    with open(args.old, 'rb') as f:
        old = pickle.load(f)
    with open(args.new, 'rb') as f:
        new = pickle.load(f)
    problems = compare(old, new, args.atol)
    def fields(dump):
        return {k for s in dump for k in s.get('pred_instances', {})}

    extra = sorted(fields(new) - fields(old))
    print(f'{len(old)} samples compared; fields only in the new dump: '
          f'{extra or "none"}')
    for line in problems:
        print(line)
    print('identical within atol' if not problems else
          f'{len(problems)} differences')
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
