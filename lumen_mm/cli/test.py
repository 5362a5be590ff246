"""Test (and evaluate) a model; the logic of mmdet 3.3's tools/test.py.

Beyond mmdet's tool, ``--metrics-json`` writes the metrics returned by
``runner.test()`` to a JSON file, so that scripts and CI can read results
without parsing logs, and the metrics are printed as a small table.
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import Any, Mapping, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.structures import BaseDataElement

from lumen_mm.cli import add_common_args, build_runner, load_config, parse_args


def build_parser() -> argparse.ArgumentParser:
    """Arguments of mmdet's test tool, plus ``--metrics-json``."""
    parser = argparse.ArgumentParser(
        description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--metrics-json',
        help='write the final metrics dict to this JSON file')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. If specified, '
        'it will be automatically saved to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_common_args(parser)
    return parser


class DumpPredictionsHook(Hook):
    """Dump test predictions to a pickle file with mmdet's DumpDetResults.

    mmdet's tool appends the dump metric to ``runner.test_evaluator.metrics``.
    mmdet's ``MultiDatasetsEvaluator`` (one metric per dataset of a
    ``ConcatDataset``) pairs metrics with dataset slices and silently skips
    an extra one (Lumen's configs use ``LumenMultiDatasetsEvaluator``, which
    runs it); this hook sees every prediction whatever the evaluator.
    """

    priority = 'LOW'

    def __init__(self, out_file: str) -> None:
        from mmdet.evaluation import DumpDetResults
        self.dump = DumpDetResults(out_file_path=out_file)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        # as Evaluator.process hands samples to metrics: plain dicts
        samples = [
            out.to_dict() if isinstance(out, BaseDataElement) else out
            for out in outputs
        ]
        self.dump.process(data_batch, samples)

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self.dump.evaluate(len(runner.test_dataloader.dataset))


def to_json_safe(value: Any) -> Any:
    """Turn numpy/torch scalars and arrays, tuples and paths into JSON types.

    Non-finite floats become ``None`` so that the file is strict JSON; objects
    JSON does not know are written as their ``str``.
    """
    if isinstance(value, Mapping):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json_safe(v) for v in value]
    if hasattr(value, 'tolist'):  # numpy scalars and arrays, torch tensors
        return to_json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def dump_metrics_json(metrics: Mapping[str, Any], path: str) -> str:
    """Write ``metrics`` as JSON to ``path`` (parents created); return path."""
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(to_json_safe(metrics), f, indent=2, allow_nan=False)
        f.write('\n')
    return path


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Render ``metrics`` as a two-column, left-aligned text table."""
    rows = []
    for key, value in to_json_safe(metrics).items():
        text = f'{value:.4f}' if isinstance(value, float) else str(value)
        rows.append((key, text))
    width = max([len('metric')] + [len(k) for k, _ in rows])
    lines = [f'{"metric":<{width}}  value', f'{"-" * width}  -----']
    lines += [f'{k:<{width}}  {v}' for k, v in rows]
    return '\n'.join(lines)


def main(argv: Optional[list] = None) -> dict:
    """Entry point of ``tools/test.py``; returns the metrics dict."""
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')

    from mmengine.dist import is_main_process

    from mmdet.engine.hooks.utils import trigger_visualization_hook
    from mmdet.utils import setup_cache_size_limit_of_dynamo

    # Fewer repeated torch.compile recompilations of dynamic-shape code.
    setup_cache_size_limit_of_dynamo()

    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    runner = build_runner(cfg, run='test')
    if args.out is not None:
        runner.register_hook(DumpPredictionsHook(args.out))

    metrics = runner.test()
    if is_main_process():
        print(format_metrics_table(metrics))
        if args.metrics_json is not None:
            dump_metrics_json(metrics, args.metrics_json)
            print(f'metrics written to {args.metrics_json}')
    return metrics


if __name__ == '__main__':
    main()
