"""A dry run of the paper config and its Table 1/4 test configs: a tiny model
on fixtures of all nine datasets in their released formats, through the
Runner that tools/train.py and tools/test.py build (mmengine's, or the
config's runner_type), with each config's own data, sampler and
evaluators."""
import math
from argparse import Namespace

import pytest
from mmengine.config import Config
from mmengine.hooks import Hook

from conftest import REPO, retarget, tiny_model
from fixtures_datasets import write_paper_datasets
from lumen_mm.cli import build_runner
from lumen_mm.cli.train import apply_train_args

CONFIG_ROOT = REPO / 'configs/lumen'
PAPER = CONFIG_ROOT / 'lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
# each test config and the metrics its evaluator must report
TEST_METRICS = {
    'coco-det': {'coco/bbox_mAP', 'coco/bbox_mAP_50'},
    'coco-instance': {'coco/segm_mAP', 'coco/segm_mAP_50'},
    'coco-pose': {'coco/AP', 'coco/AP .5'},
    'refcocog-ground': {'grounding/acc@0.5'},
    'refcocog-refseg': {'refseg/cIoU'},
    'voc07-zeroshot': {'pascal_voc/mAP'},
    'fsc147-count': {'count/mae', 'count/rmse'},
}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return write_paper_datasets(tmp_path_factory.mktemp('data'))


@pytest.fixture(autouse=True)
def unformatted_config_text(monkeypatch):
    """The Runner logs and dumps the config formatted by yapf: 5 s a run for
    the paper config on this machine; the text is not what is checked."""
    import mmengine.config.config as config
    monkeypatch.setattr(config, 'FormatCode', lambda text, **_: (text, None))


def _set_sam_size(node, size: int):
    """LumenSamImage steps resize for the tiny SAM's input, not 1024."""
    if isinstance(node, dict):
        if node.get('type') == 'LumenSamImage':
            node['size'] = size
        for value in node.values():
            _set_sam_size(value, size)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_sam_size(value, size)


def _dry_run_config(path, data_root, tokenizer_dir, work_dir) -> Config:
    """The config on the fixtures with the tiny model; only loader workers,
    the run's length, logging and outputs change."""
    cfg = retarget(Config.fromfile(str(path)), 'data/', f'{data_root}/')
    cfg.model = tiny_model(cfg, tokenizer_dir)
    for key in cfg.keys():  # the tiny SAM's input size in the pipelines
        _set_sam_size(cfg[key], cfg.model.mask_head.tiny.img_size)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    # the config's bf16 AmpOptimWrapper, as `tools/train.py --amp` runs it
    # where CUDA is absent (CpuAmpOptimWrapper)
    apply_train_args(cfg, Namespace(amp=True, auto_scale_lr=False,
                                    resume=None))
    cfg.default_hooks.logger.interval = 1
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = str(work_dir)
    return cfg


class _Record(Hook):
    """The tasks and losses of each training batch, the validation's
    metrics."""

    def __init__(self):
        self.tasks, self.losses, self.val_metrics = [], [], None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.tasks += [s.task for s in data_batch['data_samples']]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append({k: float(v) for k, v in outputs.items()})

    def after_val_epoch(self, runner, metrics=None):
        self.val_metrics = metrics


def test_paper_config_trains_every_task_then_validates(
        data_root, tokenizer_dir, tmp_path):
    """Two iterations of 9 images with an 18-draw epoch: the sampler gives
    each task floor(rate x 18) >= 1 draws (VQA: 0.06 x 18), every dataset
    item once before any twice; then COCO and RefCOCOg validation."""
    cfg = _dry_run_config(PAPER, data_root, tokenizer_dir, tmp_path)
    cfg.train_dataloader.batch_size = 9
    cfg.train_dataloader.dataset.num_samples = 18
    runner = build_runner(cfg, 'train')
    record = _Record()
    runner.register_hook(record)
    runner.train()

    loader = runner.train_loop.dataloader
    dataset, sampler = loader.dataset, loader.sampler
    assert type(dataset).__name__ == 'LumenMultiTaskDataset'
    assert type(sampler).__name__ == 'LumenMultiTaskSampler'
    drawn = sampler.indices(0, 18)
    # the samples trained are those drawn, each of its dataset's task
    assert record.tasks == [dataset.task_of(i) for i in drawn]
    rates = cfg.train_dataloader.dataset.sample_rates
    assert set(record.tasks) == {t for t, r in rates.items() if r} == {
        'det', 'seg', 'ground', 'refseg', 'pose', 'vqa'}
    # det, seg, ground, refseg: 3 datasets each; pose 2; vqa 1
    assert len(dataset.streams) == 15
    counts = dataset.draws_per_stream(drawn)
    for stream in dataset.streams:
        mine = [i for i in drawn
                if stream.start <= i < stream.start + stream.size]
        # its share of the draw, and no item twice before all once
        assert counts[stream.name] >= math.floor(stream.share * 18)
        assert len(set(mine)) == min(len(mine), stream.size), stream.name
    assert len(record.losses) == 2
    for losses in record.losses:
        assert {'loss', 'loss_heatmap', 'loss_wh', 'loss_lm'} <= set(losses)
        assert all(math.isfinite(v) for v in losses.values()), losses
    # mmdet's MultiDatasetsEvaluator: dataset prefix, then the metric's
    val = {'coco/coco/bbox_mAP', 'refcocog/grounding/acc@0.5'}
    assert val <= set(record.val_metrics), sorted(record.val_metrics)
    assert all(math.isfinite(record.val_metrics[k]) for k in val)


@pytest.mark.parametrize('name', sorted(TEST_METRICS))
def test_paper_test_config_runs_its_evaluator(name, data_root, tokenizer_dir,
                                              tmp_path):
    path = CONFIG_ROOT / f'lumen_llava-v1.1-7b_test_{name}.py'
    cfg = _dry_run_config(path, data_root, tokenizer_dir, tmp_path)
    metrics = build_runner(cfg, 'test').test()
    assert TEST_METRICS[name] <= set(metrics), sorted(metrics)
    assert all(math.isfinite(metrics[k]) for k in TEST_METRICS[name])


def test_every_test_config_is_dry_run():
    tests = {p.stem.split('_test_')[1]
             for p in CONFIG_ROOT.glob('lumen_llava-v1.1-7b_test_*.py')}
    assert tests == set(TEST_METRICS)
