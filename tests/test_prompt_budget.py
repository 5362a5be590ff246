"""tools/analysis/prompt_budget.py: prompts and LLM tokens per training
batch, by task, on fake datasets, the Lumen-Shapes config and the paper
config over fixtures in its datasets' released formats."""
import copy
import json
import pickle

import pytest
from mmdet.structures import DetDataSample
from mmengine.config import Config

from conftest import REPO, SHAPES_CONFIG, retarget
from fixtures_datasets import _coco_instances, _image, _json
from lumen_mm.analysis.prompt_budget import (counting_lmm, format_report,
                                             main, measure, prompt_budget)
from lumen_mm.datasets import LumenMultiTaskDataset

ALL_TASKS = REPO / 'configs/lumen/shapes/lumen_tiny_shapes_all_tasks.py'
PAPER = REPO / 'configs/lumen/lumen_llava-v1.1-7b_lora_448_multitask_50k.py'


class _Samples:
    """``n`` packed samples of one task, each with the same prompts."""
    metainfo = dict(classes=('circle', ))

    def __init__(self, n: int, task: str, prompts: list, answers=None):
        self.n, self.task, self.prompts = n, task, prompts
        self.answers = answers

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        meta = dict(task=self.task, prompts=list(self.prompts),
                    prompt_labels=list(range(len(self.prompts))))
        if self.answers:
            meta['answers'] = list(self.answers)
        return dict(data_samples=DetDataSample(metainfo=meta))


@pytest.fixture(scope='module')
def tiny_lmm(tokenizer_dir):
    cfg = Config.fromfile(str(SHAPES_CONFIG))
    return counting_lmm(cfg.model.backbone, tokenizer_dir)


def test_counts_on_fake_datasets_are_exact(tiny_lmm):
    classes = ['circle', 'square', 'star']
    dataset = LumenMultiTaskDataset(
        datasets=dict(
            det=_Samples(7, 'det', classes),
            ground=_Samples(5, 'ground', ['the red circle on the left']),
            vqa=_Samples(3, 'vqa', ['What is it?'], ['A circle.'])),
        sample_rates=dict(det=0.5, ground=0.3, vqa=0.2), num_samples=50)
    report = measure(dataset, tiny_lmm, batch_size=10, num_batches=5)
    tasks, total = report['tasks'], report['total']
    assert list(tasks) == ['det', 'ground', 'vqa']
    assert sum(t['images_per_batch'] for t in tasks.values()) == 10
    # the sampler's rates, to within a draw an epoch
    for task, rate in dict(det=0.5, ground=0.3, vqa=0.2).items():
        assert tasks[task]['rate'] == pytest.approx(rate)
        assert tasks[task]['images_per_batch'] == pytest.approx(
            10 * rate, abs=0.21)
    assert tasks['det']['prompts_per_image'] == 3
    assert tasks['ground']['prompts_per_image'] == 1
    assert tasks['vqa']['prompts_per_image'] == 1
    det, ground = (tasks[t]['images_per_batch'] for t in ('det', 'ground'))
    assert tasks['det']['location_prompt_share'] == pytest.approx(
        3 * det / (3 * det + ground))
    assert tasks['vqa']['location_prompt_share'] == 0
    # tokens: an image's prefix once plus each of its prompts' suffixes
    conv = tiny_lmm.conversation

    def suffix(p):
        return len(p.input_ids) - p.prefix_len

    located = [conv.location_prompt('det', c) for c in classes]
    per_det = located[0].prefix_len + sum(suffix(p) for p in located)
    ref = conv.location_prompt('ground', 'the red circle on the left')
    chat = conv.chat_prompt([('What is it?', 'A circle.')])
    expected = dict(det=per_det, ground=len(ref.input_ids),
                    vqa=len(chat.input_ids))
    for task, per_image in expected.items():
        assert tasks[task]['llm_tokens_per_batch'] == pytest.approx(
            tasks[task]['images_per_batch'] * per_image)
    assert total['llm_tokens_per_batch'] == pytest.approx(
        sum(t['llm_tokens_per_batch'] for t in tasks.values()))
    assert sum(t['llm_token_share'] for t in tasks.values()) == \
        pytest.approx(1)
    # the shared mode pads each image's suffixes to the longest
    assert total['llm_tokens_processed_per_batch'] >= \
        total['llm_tokens_per_batch']
    assert total['llm_tokens_full_prompts_per_batch'] > \
        total['llm_tokens_per_batch']
    # the same seed, the same batches
    assert measure(dataset, tiny_lmm, 10, 5) == report
    assert 'det' in format_report(report)


def test_shapes_config_from_the_command_line(shapes_root, tmp_path,
                                             monkeypatch, capsys):
    """The all-task Lumen-Shapes config, run as tools/analysis/
    prompt_budget.py runs it (its data/lumen_shapes is the test set)."""
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data/lumen_shapes').symlink_to(shapes_root)
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(ALL_TASKS))
    out = tmp_path / 'budget.json'
    report = main([str(ALL_TASKS), '--batches', '3', '--json', str(out)])
    table = capsys.readouterr().out
    assert json.loads(out.read_text()) == report
    rates = cfg.train_dataloader.dataset.sample_rates
    assert set(report['tasks']) == set(rates)
    assert report['batch_size'] == cfg.train_dataloader.batch_size
    for task in rates:
        assert f'| {task} ' in table
    assert 'share of location prompts' in table
    # no max_prompts in the Shapes configs: every class of an image
    classes = len(cfg.classes)
    assert report['tasks']['det']['prompts_per_image'] == classes
    assert report['tasks']['seg']['prompts_per_image'] == classes
    assert report['tasks']['pose']['prompts_per_image'] == len(
        cfg.keypoint_names)
    # --json -: the JSON alone on stdout
    again = main([str(ALL_TASKS), '--batches', '3', '--json', '-'])
    assert json.loads(capsys.readouterr().out) == again == report


def test_shapes_base_config_budget(shapes_root, tokenizer_dir):
    cfg = retarget(Config.fromfile(str(SHAPES_CONFIG)), 'data/lumen_shapes',
                   str(shapes_root))
    report = prompt_budget(cfg, num_batches=2, batch_size=4)
    assert set(report['tasks']) == {'det', 'ground'}
    assert report['total']['images_per_batch'] == 4


# -- the paper config on fixtures --------------------------------------------
def _paper_fixtures(root):
    """COCO (detection, keypoints), RefCOCO and LLaVA-Instruct in their
    released layouts under ``root``/data, as the paper config reads them."""
    from mmdet.datasets import CocoDataset
    coco = root / 'data/coco'
    _coco_instances(coco, 'annotations/instances_train2017.json',
                    'train2017', CocoDataset.METAINFO['classes'], n_images=3)
    # RefCOCO: one image, two referred objects with 5 sentences each
    name = 'COCO_train2014_000000000001.jpg'
    _image(coco / 'train2014' / name)
    anns = [dict(id=k, image_id=1, category_id=1, iscrowd=0, area=600,
                 bbox=[x, 4, 20, 30],
                 segmentation=[[x, 4, x + 20, 4, x + 20, 34, x, 34]])
            for k, x in ((1, 4), (2, 36))]
    _json(coco / 'refcoco/instances.json', dict(
        images=[dict(id=1, file_name=name, width=64, height=48)],
        annotations=anns, categories=[dict(id=1, name='person')]))
    refs = [dict(ref_id=k, ann_id=k + 1, image_id=1, split='train',
                 category_id=1, file_name=name,
                 sentences=[dict(raw=f'person {k} said {s}')
                            for s in range(5)]) for k in range(2)]
    with open(coco / 'refcoco/refs(unc).p', 'wb') as f:
        pickle.dump(refs, f)
    # COCO keypoints: one person, 12 of 17 keypoints labelled
    points = []
    for k in range(17):
        points += [10 + k, 8 + k, 2] if k < 12 else [0, 0, 0]
    _json(coco / 'annotations/person_keypoints_train2017.json', dict(
        images=[dict(id=1, file_name='000000000001.jpg', width=64,
                     height=48)],
        annotations=[dict(id=1, image_id=1, category_id=1, iscrowd=0,
                          bbox=[5, 5, 30, 35], area=1050, keypoints=points,
                          num_keypoints=12)],
        categories=[dict(id=1, name='person',
                         keypoints=[f'k{i}' for i in range(17)],
                         skeleton=[[16, 14]])]))
    _json(root / 'data/llava_instruct/llava_instruct_150k.json', [
        dict(id='1', image='000000000001.jpg', conversations=[
            {'from': 'human', 'value': '<image>\nWhat is in the picture?'},
            {'from': 'gpt', 'value': 'Two people.'}])])


def test_paper_config_asks_at_most_its_prompts_per_image(
        tmp_path, monkeypatch, tokenizer_dir):
    """The paper config's pipelines and rates (one dataset per task: COCO,
    RefCOCO, COCO keypoints, LLaVA-Instruct), counted with the Shapes
    tokenizer (the LLaVA one is not here)."""
    _paper_fixtures(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(PAPER))
    datasets = cfg.train_dataloader.dataset.datasets
    for task in ('det', 'seg', 'ground', 'refseg', 'pose'):
        datasets[task].datasets = datasets[task].datasets[:1]
    report = prompt_budget(copy.deepcopy(cfg), num_batches=2,
                           tokenizer=tokenizer_dir)
    tasks = report['tasks']
    assert set(tasks) == {'det', 'seg', 'ground', 'refseg', 'pose', 'vqa'}
    assert report['batch_size'] == 20
    k = cfg.prompts_per_image
    # 2 present classes + 6 absent; 8 of 10 sentences; 8 of 12 keypoints
    for task in ('det', 'seg', 'ground', 'refseg', 'pose'):
        if tasks[task]['images_per_batch']:
            assert tasks[task]['prompts_per_image'] == k, task
    assert report['total']['prompts_per_batch_max'] <= 20 * k
    rates = dict(det=0.28, seg=0.28, ground=0.095, refseg=0.095, pose=0.19,
                 vqa=0.06)
    for task, rate in rates.items():
        assert tasks[task]['rate'] == pytest.approx(rate)
