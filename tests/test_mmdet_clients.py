"""mmdet's own clients on Lumen (issue 34): mmdet's tools/test.py (from the
installed mmdet, in a subprocess, lumen_mm through the config's
``custom_imports``), ``DetInferencer`` and ``init_detector`` /
``inference_detector``, on tiny Lumen-Shapes checkpoints trained 2
iterations."""
import copy
import json
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mmcv
import pytest
import torch

from conftest import REPO, tiny_config

CONFIGS = REPO / 'configs/lumen/shapes'


def _mmdet_test_tool() -> Path:
    """tools/test.py as the installed mmdet wheel ships it."""
    import mmdet
    tool = Path(mmdet.__file__).parent / '.mim/tools/test.py'
    assert tool.is_file(), f'mmdet ships no tools/test.py at {tool}'
    return tool


def _train(name: str, shapes_root, work_dir: Path):
    """The tiny config written as a user's file, and its checkpoint after
    2 training iterations."""
    from mmengine.runner import Runner
    cfg = tiny_config(CONFIGS / f'{name}.py', shapes_root, work_dir)
    if cfg.model.get('mask_head'):
        cfg.model.mask_head.tiny = dict(
            img_size=128, embed_dim=32, depth=1, prompt_embed_dim=32,
            decoder_depth=1, decoder_mlp_dim=64)
    config = work_dir / f'{name}.py'
    cfg.dump(str(config))
    train = copy.deepcopy(cfg)
    train.train_cfg.update(max_iters=2, val_interval=2)
    train.param_scheduler = []
    train.default_hooks.checkpoint.interval = 2
    train.update(val_dataloader=None, val_evaluator=None, val_cfg=None)
    torch.manual_seed(0)
    Runner.from_cfg(train).train()
    return config, work_dir / 'iter_2.pth'


@pytest.fixture(scope='module')
def det_ground(shapes_root, tmp_path_factory):
    return _train('lumen_tiny_shapes_det_ground', shapes_root,
                  tmp_path_factory.mktemp('det_ground'))


@pytest.fixture(scope='module')
def all_tasks(shapes_root, tmp_path_factory):
    return _train('lumen_tiny_shapes_all_tasks', shapes_root,
                  tmp_path_factory.mktemp('all_tasks'))


def _run(args, cwd):
    """A tool in a fresh interpreter, as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS='2')
    done = subprocess.run([sys.executable, *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _metrics_of_mmdet_run(work_dir: Path) -> dict:
    """The metrics mmengine's logger wrote for a test run."""
    (log, ) = [p for p in work_dir.glob('*/*.json')]
    return json.loads(log.read_text())


@pytest.mark.parametrize('trained, drawer', [('det_ground', 'ours'),
                                             ('all_tasks', 'mmdet')])
def test_mmdet_test_tool_equals_ours(trained, drawer, request, tmp_path):
    """mmdet's tools/test.py and ours, one of them with --show-dir, both
    with --out: the same metrics and predictions, and a drawing of every
    test sample."""
    config, checkpoint = request.getfixturevalue(trained)
    mmdet_dir, our_dir = tmp_path / 'mmdet', tmp_path / 'ours'
    show = ['--show-dir', 'shows']
    _run([_mmdet_test_tool(), config, checkpoint, '--work-dir', mmdet_dir,
          '--out', tmp_path / 'mmdet.pkl', *(show if drawer == 'mmdet' else
                                              [])], cwd=tmp_path)
    _run([REPO / 'tools/test.py', config, checkpoint, '--work-dir', our_dir,
          '--out', tmp_path / 'ours.pkl', '--metrics-json',
          tmp_path / 'ours.json', *(show if drawer == 'ours' else [])],
         cwd=tmp_path)

    ours = json.loads((tmp_path / 'ours.json').read_text())
    theirs = _metrics_of_mmdet_run(mmdet_dir)
    assert {k: theirs[k] for k in ours} == pytest.approx(ours, abs=1e-6)
    with open(tmp_path / 'mmdet.pkl', 'rb') as f:
        dumped = pickle.load(f)
    with open(tmp_path / 'ours.pkl', 'rb') as f:
        our_dump = pickle.load(f)
    assert len(dumped) == len(our_dump) > 0
    for a, b in zip(dumped, our_dump):
        assert (a['img_path'], a['task']) == (b['img_path'], b['task'])
        assert a.keys() == b.keys()
        preds, our_preds = a.get('pred_instances', {}), b.get(
            'pred_instances', {})
        assert preds.keys() == our_preds.keys()
        for key in ('bboxes', 'scores', 'keypoints'):
            if key in preds:
                assert torch.equal(preds[key], our_preds[key])
        # boxes are named by the prompts they answer
        if 'label_names' in preds:
            assert set(preds['label_names']) <= set(a['prompts'])

    # one drawing per test sample, under its task
    (shows, ) = (mmdet_dir if drawer == 'mmdet' else our_dir).glob('*/shows')
    assert not list((our_dir if drawer == 'mmdet' else mmdet_dir).glob(
        '*/shows'))
    drawn = Counter(p.parent.name for p in shows.glob('*/*.png'))
    assert drawn == Counter(d['task'] for d in dumped)
    assert mmcv.imread(next(shows.glob('*/*.png'))).size > 0


IMAGE_NAME = 'val/000000.png'


@pytest.fixture(scope='module')
def det_inferencer_cfg(det_ground):
    from mmengine.config import Config
    config, checkpoint = det_ground
    return Config.fromfile(str(config)), str(checkpoint)


@pytest.mark.parametrize('visualizer',
                         ['LumenLocalVisualizer', 'DetLocalVisualizer'])
def test_det_inferencer_prompts_and_drawn_names(visualizer,
                                                det_inferencer_cfg,
                                                shapes_root, tmp_path):
    """GroundingDINO's prompt forms; the drawn labels are the prompts, with
    our visualizer and with mmdet's stock one."""
    from mmdet.apis import DetInferencer
    cfg, checkpoint = det_inferencer_cfg
    cfg = copy.deepcopy(cfg)
    cfg.visualizer.type = visualizer
    inferencer = DetInferencer(model=cfg, weights=checkpoint, device='cpu',
                               show_progress=False)
    drawn = []
    draw_texts = inferencer.visualizer.draw_texts

    def record(texts, *args, **kwargs):
        drawn.append(texts)
        return draw_texts(texts, *args, **kwargs)

    inferencer.visualizer.draw_texts = record
    image = str(shapes_root / IMAGE_NAME)
    cases = [
        ('circle . square', ['circle', 'square']),
        ('circle . square .', ['circle', 'square']),
        (['star . cross'], ['star', 'cross']),
        ([('star', 'cross')], ['star', 'cross']),
        ('the orange hexagon', ['the orange hexagon']),
    ]
    for case, (texts, prompts) in enumerate(cases):
        drawn.clear()
        out_dir = tmp_path / str(case)
        result = inferencer(image, texts=texts, return_datasamples=True,
                            pred_score_thr=0, out_dir=str(out_dir))
        (sample, ) = result['predictions']
        assert sample.metainfo['prompts'] == prompts, texts
        names = sample.pred_instances.label_names
        assert len(names) > 0 and set(names) <= set(prompts)
        # each box's text is "<prompt>: <score>"
        assert {t.rsplit(': ', 1)[0] for t in drawn} == set(names)
        assert (out_dir / 'vis' / '000000.png').is_file()


def test_det_inferencer_without_texts_names_texts(det_inferencer_cfg,
                                                  shapes_root):
    from mmdet.apis import DetInferencer
    cfg, checkpoint = det_inferencer_cfg
    inferencer = DetInferencer(model=copy.deepcopy(cfg), weights=checkpoint,
                               device='cpu', show_progress=False)
    with pytest.raises(KeyError, match="DetInferencer: texts="):
        inferencer(str(shapes_root / IMAGE_NAME))


def test_det_inferencer_needs_no_dataset_files(det_inferencer_cfg,
                                               shapes_root, tmp_path):
    """DetInferencer builds the test set lazily for its metainfo: the
    concatenation's datasets must not read their annotation files."""
    from mmdet.apis import DetInferencer
    cfg, checkpoint = det_inferencer_cfg
    cfg = copy.deepcopy(cfg)
    for dataset in cfg.test_dataloader.dataset.datasets:
        dataset.data_root = str(tmp_path / 'absent')
    inferencer = DetInferencer(model=cfg, weights=checkpoint, device='cpu',
                               show_progress=False)
    (sample, ) = inferencer(
        str(shapes_root / IMAGE_NAME), texts='star',
        return_datasamples=True)['predictions']
    assert set(sample.pred_instances.label_names) == {'star'}


def test_inference_detector_text_prompt(det_ground, shapes_root):
    """A single word is one prompt (not one per letter); 'a . b' two; an
    image array goes through mmdet's LoadImageFromNDArray."""
    from mmdet.apis import inference_detector, init_detector
    config, checkpoint = det_ground
    model = init_detector(str(config), str(checkpoint), device='cpu')
    image = str(shapes_root / IMAGE_NAME)
    sample = inference_detector(model, image, text_prompt='circle')
    assert sample.metainfo['prompts'] == ['circle']
    assert set(sample.pred_instances.label_names) == {'circle'}
    with pytest.raises(KeyError, match='text_prompt='):
        inference_detector(model, image)
    # last: mmdet 3.3 turns the config's loader into LoadImageFromNDArray
    # for good (a shallow copy of the config)
    (sample, ) = inference_detector(
        model, [mmcv.imread(image)], text_prompt='circle . star')
    assert sample.metainfo['prompts'] == ['circle', 'star']
    assert set(sample.pred_instances.label_names) <= {'circle', 'star'}


@pytest.mark.parametrize('text, prompts', [
    ('circle', ['circle']),
    ('  circle  ', ['circle']),
    ('circle . square', ['circle', 'square']),
    ('circle . square .', ['circle', 'square']),
    ('the star to the right of the cross', [
        'the star to the right of the cross'
    ]),
    ('st. john . cross', ['st. john', 'cross']),
    (['circle', 'square'], ['circle', 'square']),
    (('circle', ), ['circle']),
])
def test_split_prompts(text, prompts):
    from lumen_mm.datasets.prompts import split_prompts
    assert split_prompts(text) == prompts


@pytest.mark.parametrize('text, error', [
    ('', ValueError),
    ('circle .  . square', ValueError),
    (['circle', ''], ValueError),
    (3, TypeError),
])
def test_split_prompts_errors(text, error):
    from lumen_mm.datasets.prompts import split_prompts
    with pytest.raises(error, match='texts='):
        split_prompts(text)


def test_multi_datasets_evaluator_runs_appended_metrics():
    """A metric after the per-dataset ones (mmdet's tools/test.py --out
    appends one) sees every sample; mmdet's evaluator skipped it."""
    from mmengine.evaluator import BaseMetric

    from lumen_mm.evaluation import LumenMultiDatasetsEvaluator

    class Count(BaseMetric):
        default_prefix = 'n'

        def process(self, data_batch, data_samples):
            self.results += [s['i'] for s in data_samples]

        def compute_metrics(self, results):
            return dict(samples=len(results), first=results[0])

    evaluator = LumenMultiDatasetsEvaluator(
        [Count(), Count()], dataset_prefixes=['a', 'b'])
    evaluator.metrics.append(Count(prefix='all'))
    evaluator.dataset_meta = dict(cumulative_sizes=[2, 5])
    evaluator.process([dict(i=i) for i in range(5)])
    assert evaluator.evaluate(5) == {
        'a/n/samples': 2, 'a/n/first': 0, 'b/n/samples': 3, 'b/n/first': 2,
        'all/samples': 5, 'all/first': 0}
    assert len(evaluator.metrics) == 3


def test_visualization_hook_names_every_sample():
    from mmdet.structures import DetDataSample

    from mmengine.visualization import Visualizer

    from lumen_mm.visualization import LumenVisualizationHook
    Visualizer.get_instance('test_visualization_hook')  # the hook's
    hook = LumenVisualizationHook(draw=True, test_out_dir='shows')

    def sample(task):
        return DetDataSample(
            metainfo=dict(img_path='/data/val/000000.png', task=task))

    names = [
        hook.out_file('out', sample(t)) for t in ('det', 'ground', 'pose',
                                                  'pose', 'pose')
    ]
    assert names == [
        'out/det/000000.png', 'out/ground/000000.png', 'out/pose/000000.png',
        'out/pose/000000_1.png', 'out/pose/000000_2.png'
    ]


def test_ground_truth_named_by_prompts(tiny_cfg):
    """Ground-truth boxes carry their prompts' names, as predictions do:
    a grounding label indexes a sentence, not a class."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    test_set = DATASETS.build(copy.deepcopy(tiny_cfg.test_dataloader.dataset))
    ground = test_set[len(test_set) - 1]['data_samples']
    assert ground.task == 'ground'
    gt = ground.gt_instances
    assert gt.label_names == [ground.prompts[i] for i in gt.labels.tolist()]


def test_concat_pipeline_must_load_images_for_det_inferencer():
    from lumen_mm.datasets.multitask import LumenConcatDataset
    with pytest.raises(ValueError, match="LoadImageFromFile"):
        LumenConcatDataset([], pipeline=[dict(type='LumenLoadImageFromFile')])
