"""Exact resume and run-to-run determinism of the tiny Lumen (issue 8).

Both need ``randomness.deterministic=True`` on this CPU: without it the
backward pass of the vision tower differs in the last bits from run to run
(2 threads), measured on identical weights and data; mmengine's flag turns on
``torch.use_deterministic_algorithms``. Byte-identical Lumen-Shapes files for
one seed are tested in tests/test_shapes.py
(``test_same_seed_gives_identical_files``).
"""
import pytest
import torch
from mmengine.hooks import Hook

from lumen_mm.cli import build_runner, resume_with_checkpoint_seed


@pytest.fixture
def deterministic_cfg(tiny_cfg):
    """The tiny config without a seed (the case resume_with_checkpoint_seed
    covers), deterministic kernels."""
    cfg = tiny_cfg
    cfg.randomness = dict(seed=None, deterministic=True)
    cfg.default_hooks.logger.interval = 1
    yield cfg
    torch.use_deterministic_algorithms(False)  # global; set by the Runner


class RecordRun(Hook):
    """The iterations a run trained, their losses, its validation scores and
    metrics."""

    def __init__(self) -> None:
        self.iters, self.losses, self.scores, self.metrics = [], [], [], None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.iters.append(runner.iter)
        self.losses.append({k: v.item() for k, v in outputs.items()})

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        self.scores += [out.pred_instances.scores for out in outputs]

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = metrics


def _run(cfg, **changes):
    cfg = cfg.copy()
    cfg.update(changes)
    runner = build_runner(cfg)
    record = RecordRun()
    runner.register_hook(record)
    runner.train()
    return runner, record


def _weights(runner):
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_resume_continues_the_run_exactly(deterministic_cfg, tmp_path):
    """4 iterations straight == 2, a new Runner resuming, 2 more."""
    cfg = deterministic_cfg
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4,
                         val_interval=100)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    # warm-up over the first half, cosine over the second: the scheduler's
    # state must come back too
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=2),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=2, end=4,
             eta_min=1e-5)
    ]
    cfg.default_hooks.checkpoint.interval = 2

    straight, straight_log = _run(cfg)
    checkpoint = f'{cfg.work_dir}/iter_2.pth'  # what a run killed at 2 leaves
    resume_cfg = cfg.copy()
    resume_cfg.update(work_dir=str(tmp_path / 'resumed'), resume=True,
                      load_from=checkpoint)
    # no seed in the config: the resumed run must take the checkpoint's
    seeded = resume_with_checkpoint_seed(resume_cfg.copy())
    assert seeded.randomness.seed == straight.seed
    resumed, resumed_log = _run(resume_cfg)

    assert straight_log.iters == [0, 1, 2, 3]
    assert resumed_log.iters == [2, 3] and resumed.iter == 4
    assert resumed_log.losses == straight_log.losses[2:]
    ours, theirs = _weights(resumed), _weights(straight)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_same_seed_gives_same_training_and_metrics(deterministic_cfg,
                                                   tmp_path):
    """Two 2-iteration runs with one seed, each evaluated on the tiny set."""
    cfg = deterministic_cfg
    cfg.randomness.seed = 0
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = 100
    (a, log_a), (b, log_b) = [
        _run(cfg, work_dir=str(tmp_path / name)) for name in 'ab'
    ]
    assert 'shapes_det/coco/bbox_mAP_50' in log_a.metrics
    assert 'shapes_ground/grounding/acc@0.5' in log_a.metrics
    assert log_a.metrics == log_b.metrics
    assert log_a.losses == log_b.losses and len(log_a.losses) == 2
    # the metrics of an untrained model are ~0: compare the scores as well
    assert len(log_a.scores) == len(log_b.scores) > 0
    assert all(torch.equal(x, y) for x, y in zip(log_a.scores, log_b.scores))
    weights_a, weights_b = _weights(a), _weights(b)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
