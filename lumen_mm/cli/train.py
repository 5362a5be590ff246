"""Train a lumen_mm (or any mmdet) model: mmdet 3.3's tools/train.py."""
import argparse
from typing import Optional

import torch
from mmengine.config import Config

from lumen_mm.cli import add_common_args, build_runner, load_config, parse_args


def build_parser() -> argparse.ArgumentParser:
    """Arguments of mmdet's train tool."""
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training (on a machine '
        'without CUDA: bfloat16 autocast, CpuAmpOptimWrapper)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, resume from the '
        'latest checkpoint in the work directory')
    add_common_args(parser)
    return parser


def apply_train_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``--amp``, ``--auto-scale-lr`` and ``--resume`` to ``cfg``."""
    if args.amp and torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    elif args.amp:  # mmengine's AmpOptimWrapper refuses to run on the CPU
        cfg.optim_wrapper.type = 'CpuAmpOptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr \
                and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your '
                               'configuration file.')

    # An explicit checkpoint wins over auto-resume from the work dir.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv: Optional[list] = None) -> None:
    """Entry point of ``tools/train.py``."""
    args = parse_args(build_parser(), argv)

    from mmdet.utils import setup_cache_size_limit_of_dynamo

    # Fewer repeated torch.compile recompilations of dynamic-shape code.
    setup_cache_size_limit_of_dynamo()

    cfg = apply_train_args(load_config(args), args)
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
