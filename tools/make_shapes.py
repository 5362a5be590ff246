"""Generate the Lumen-Shapes synthetic dataset (see the package
lumen_mm.datasets.shapes).

Example::

    python tools/make_shapes.py --out data/shapes --seed 0
"""
import argparse
import time

from lumen_mm.datasets.shapes import ShapesConfig, make_shapes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the Lumen-Shapes synthetic dataset')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=2000)
    parser.add_argument('--num-val', type=int, default=200)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--min-objects', type=int, default=1)
    parser.add_argument('--max-objects', type=int, default=6)
    parser.add_argument('--min-size', type=int, default=10,
                        help='smallest drawn shape side, px')
    parser.add_argument('--max-size', type=int, default=50,
                        help='largest drawn shape side, px')
    parser.add_argument('--num-pose-train', type=int, default=1000,
                        help='stick-figure images (pose_train/)')
    parser.add_argument('--num-pose-val', type=int, default=100)
    parser.add_argument('--num-count-train', type=int, default=1000,
                        help='counting images (count_train/)')
    parser.add_argument('--num-count-val', type=int, default=100)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = ShapesConfig(
        image_size=args.image_size,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        min_size=args.min_size,
        max_size=args.max_size)
    start = time.perf_counter()
    stats = make_shapes(
        args.out,
        args.seed,
        args.num_train,
        args.num_val,
        cfg,
        num_pose_train=args.num_pose_train,
        num_pose_val=args.num_pose_val,
        num_count_train=args.num_count_train,
        num_count_val=args.num_count_val)
    counts = '; '.join(
        f'{split}: ' + ', '.join(f'{v} {k}' for k, v in s.items())
        for split, s in stats.items())
    print(f'Lumen-Shapes in {args.out} ({counts}) in '
          f'{time.perf_counter() - start:.1f}s')


if __name__ == '__main__':
    main()
