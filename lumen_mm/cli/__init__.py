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


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` with an error that names an option without
    ``=`` (mmengine fails with "not enough values to unpack")."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            if '=' not in value or value.startswith('='):
                parser.error(
                    f'{option_string} {value!r}: each option is KEY=VALUE, '
                    'e.g. --cfg-options train_cfg.max_iters=100 '
                    "model.neck.embed_dim=32 (no spaces around '=').")
        super().__call__(parser, namespace, values, option_string)


def add_common_args(parser: argparse.ArgumentParser,
                    launcher: bool = True) -> None:
    """Add ``--cfg-options`` and, for runner tools, the launcher arguments."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help=CFG_OPTIONS_HELP)
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
    """A local mmengine checkpoint, loaded with ``weights_only=True``.

    The allow-list of :mod:`lumen_mm.utils.safe_load`, which ``import
    lumen_mm`` also registers for mmengine's own loader; a refused pickle
    raises :class:`~lumen_mm.utils.UnsafeCheckpointError`, which says what it
    asked for.
    """
    from lumen_mm.utils import load_checkpoint
    return load_checkpoint(filename, map_location=map_location)


def resume_with_checkpoint_seed(cfg: Config) -> Config:
    """When resuming a config without a seed, reuse the checkpoint's seed.

    mmengine's Runner hands its seed to the train sampler when it builds the
    dataloader, before it resumes; it restores the checkpoint's seed only in
    the global RNGs. Without ``randomness.seed`` in the config, a resumed run
    would draw a new seed and shuffle the remaining data differently, so it
    would not continue the run it resumes. The seed is read from the
    checkpoint that mmengine will resume from (``load_from``, or the work
    dir's ``last_checkpoint``).
    """
    from lumen_mm.engine.checkpoint import find_resumable_checkpoint
    from lumen_mm.utils import load_checkpoint

    randomness = cfg.get('randomness') or {}
    if not cfg.get('resume') or randomness.get('seed') is not None:
        return cfg
    path = cfg.get('load_from') or find_resumable_checkpoint(cfg.work_dir)
    if path is None or not osp.isfile(path):
        return cfg  # nothing to resume: mmengine starts a new run
    meta = load_checkpoint(path, map_location='cpu', mmap=True).get('meta')
    if meta and meta.get('seed') is not None:
        cfg.randomness = dict(randomness, seed=meta['seed'])
    return cfg


# What each kind of run reads: checked before the Runner is built.
RUN_DATA = dict(
    train=('train_dataloader', 'val_dataloader', 'val_evaluator'),
    test=('test_dataloader', 'test_evaluator'))


def build_runner(cfg: Config, run: str = 'train'):
    """Build the default Runner, or ``cfg.runner_type`` from the registry.

    The dataset files that ``run`` (``'train'`` or ``'test'``) reads are
    checked first, so a wrong ``data_root`` fails at once with the expected
    layout instead of deep inside the Runner. A resumed run keeps the seed of
    its checkpoint (:func:`resume_with_checkpoint_seed`).
    """
    from mmdet.registry import RUNNERS

    from lumen_mm.utils.data_check import check_dataset_files

    check_dataset_files(cfg, RUN_DATA[run])
    if run == 'train':
        cfg = resume_with_checkpoint_seed(cfg)
    # load_from / resume: mmengine's own loader reads the checkpoint with
    # weights_only=True and the allow-list `import lumen_mm` registered
    from lumen_mm.engine.dist import setup_cpu_distributed
    setup_cpu_distributed(cfg)  # DDP with gloo when there is no GPU
    if 'runner_type' not in cfg:
        # mmengine's Runner with workers that end with their parent and
        # resume from the newest intact checkpoint
        from lumen_mm.engine.runner import LumenRunner
        return LumenRunner.from_cfg(cfg)
    return RUNNERS.build(cfg)
