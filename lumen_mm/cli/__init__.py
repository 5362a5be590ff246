"""Command-line entry points (``tools/*.py`` are thin wrappers around these).

The helpers here hold what ``train``, ``test`` and ``smoke`` share: the common
arguments of mmdet's tools and the steps that turn a config path into a
:class:`mmengine.Config` or a :class:`mmengine.runner.Runner` with lumen_mm's
modules registered.
"""
import argparse
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction

CFG_OPTIONS_HELP = (
    'override some settings in the used config, the key-value pair in '
    'xxx=yyy format will be merged into config file. If the value to be '
    'overwritten is a list, it should be like key="[a,b]" or key=a,b. It also '
    'allows nested list/tuple values, e.g. key="[(a,b),(c,d)]". Note that the '
    'quotation marks are necessary and that no white space is allowed.')


def add_common_args(parser: argparse.ArgumentParser,
                    launcher: bool = True) -> None:
    """Add ``--cfg-options`` and, for runner tools, the launcher arguments."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=CFG_OPTIONS_HELP)
    if not launcher:
        return
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank (older); torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_args(parser: argparse.ArgumentParser,
               argv: Optional[list] = None) -> argparse.Namespace:
    """Parse ``argv``, fail early on a missing config and export LOCAL_RANK."""
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config!r} (cwd: '
                     f'{os.getcwd()}). Pass a path to a .py config, e.g. one '
                     'under configs/lumen/.')
    if 'LOCAL_RANK' not in os.environ and hasattr(args, 'local_rank'):
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(args: argparse.Namespace) -> Config:
    """Load ``args.config`` with lumen_mm registered and mmdet as the scope.

    ``--cfg-options`` are merged, and ``work_dir`` is resolved with mmdet's
    priority: CLI > value in the file > ``./work_dirs/<config name>``.
    """
    import lumen_mm  # noqa: F401  registers lumen_mm's modules

    cfg = Config.fromfile(args.config)
    if 'launcher' in args:
        cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # Our configs build mmdet and lumen_mm types by bare name.
    if 'default_scope' not in cfg:
        cfg.default_scope = 'mmdet'

    if getattr(args, 'work_dir', None) is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's local checkpoint loader, with ``weights_only=False``.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, which means
    ``True`` since torch 2.6; that refuses the message hub (``HistoryBuffer``,
    numpy arrays) stored in every mmengine checkpoint, so ``--resume`` and
    testing a checkpoint fail. The tools load only checkpoints the user names,
    as mmdet did before torch 2.6 (and as mmengine's own fix does).
    """
    import torch

    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def build_runner(cfg: Config):
    """Build the default Runner, or ``cfg.runner_type`` from the registry."""
    from mmengine.runner import CheckpointLoader, Runner

    from mmdet.registry import RUNNERS

    # local checkpoints (load_from, resume) under torch >= 2.6
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
