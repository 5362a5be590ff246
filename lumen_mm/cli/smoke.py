"""Smoke check: build a model from a lumen_mm config and run one forward pass.

The first sample of the config's test dataset goes through the model's data
preprocessor and ``test_step``, as in ``Runner.test`` but without a runner,
checkpoint or evaluator. It answers "do config, data and model fit together?"
in seconds.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Optional

from lumen_mm.cli import add_common_args, load_config

DEFAULT_CONFIG = 'configs/lumen/shapes/lumen_tiny_shapes_det_ground.py'


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/smoke.py``."""
    parser = argparse.ArgumentParser(
        description='Build a model from a config and run one forward pass')
    parser.add_argument(
        '--config',
        default=DEFAULT_CONFIG,
        help=f'config file path (default: {DEFAULT_CONFIG})')
    parser.add_argument(
        '--device', default='cpu', help='device to run on, e.g. cpu, cuda')
    add_common_args(parser, launcher=False)
    return parser


def main(argv: Optional[list] = None) -> list:
    """Entry point of ``tools/smoke.py``; returns the predictions."""
    args = build_parser().parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'smoke: config file not found: {args.config} (run from the '
                 'repository root, or pass --config PATH)')

    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS, MODELS
    from mmdet.utils import register_all_modules

    cfg = load_config(args)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.default_scope)

    try:
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    except FileNotFoundError as err:
        sys.exit(f'smoke: test data of {args.config} not found ({err}). '
                 'Lumen-Shapes is made by tools/make_shapes.py.')

    model = MODELS.build(cfg.model).to(args.device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f'built {type(model).__name__} with {n_params:,} parameters')
    batch = pseudo_collate([dataset[0]])
    start = time.perf_counter()
    with torch.no_grad():
        results = model.test_step(batch)
    print(f'one forward pass on {args.device} took '
          f'{time.perf_counter() - start:.2f} s')
    for sample in results:
        preds = sample.get('pred_instances')
        n_preds = len(preds) if preds is not None else 0
        print(f'{sample.metainfo.get("img_path", "sample")}: '
              f'{n_preds} predicted instances')
    return results


if __name__ == '__main__':
    main()
