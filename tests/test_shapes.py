"""Lumen-Shapes generator: determinism (all parts), annotation validity and
mmdet loading of the shapes part (the others: test_shapes_tasks.py)."""
import json
import os
import pickle
import runpy
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from lumen_mm.datasets.shapes import make_shapes
from lumen_mm.datasets.shapes.objects import (COLORS, SHAPE_CLASSES,
                                              ShapeObject, ShapesConfig,
                                              _place_objects, shapes_metainfo)
from lumen_mm.datasets.shapes.referring import candidate_expressions

REPO = Path(__file__).resolve().parents[1]
NUM_TRAIN, NUM_VAL = 6, 4
# pose and counting images per split (tests/test_shapes_tasks.py checks them)
TASK_SIZES = dict(num_pose_train=3, num_pose_val=2, num_count_train=3,
                  num_count_val=2)
CFG = ShapesConfig()


def _generate(out_dir, seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL,
              **task_sizes):
    make_shapes(str(out_dir), seed, num_train, num_val, progress=False,
                **dict(TASK_SIZES, **task_sizes))
    return out_dir


def _files(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(Path(root).rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp('shapes'))


def _load(data_root, name):
    return json.loads((data_root / 'annotations' / name).read_text())


def _refs(data_root):
    with open(data_root / 'annotations' / 'refs_shapes.p', 'rb') as f:
        return pickle.load(f)


def test_same_seed_gives_identical_files(data_root, tmp_path):
    again = _files(_generate(tmp_path / 'again'))
    assert again == _files(data_root)
    assert len([f for f in again if f.endswith('.png')]) == (
        NUM_TRAIN + NUM_VAL + sum(TASK_SIZES.values()))
    for name in ('person_keypoints', 'count', 'qa'):
        assert f'annotations/{name}_train.json' in again


def test_other_seed_gives_other_files(data_root, tmp_path):
    other = _files(_generate(tmp_path / 'other', seed=1))
    ours = _files(data_root)
    assert other.keys() == ours.keys()
    data = [f for f in ours if f.endswith(('.png', '.json', '.p'))
            and not f.startswith('tokenizer')]
    # + instances x 3, refs, and per split qa, person_keypoints, count
    assert len(data) == NUM_TRAIN + NUM_VAL + sum(TASK_SIZES.values()) + 10
    assert all(other[f] != ours[f] for f in data)


def test_split_size_leaves_other_split_alone(data_root, tmp_path):
    bigger_val = _files(
        _generate(tmp_path / 'val', num_val=NUM_VAL + 3,
                  num_pose_val=TASK_SIZES['num_pose_val'] + 1,
                  num_count_val=TASK_SIZES['num_count_val'] + 1))
    ours = _files(data_root)
    train = [f for f in ours
             if f.startswith(('train', 'pose_train', 'count_train'))]
    train += [os.path.join('annotations', f'{name}_train.json')
              for name in ('instances', 'qa', 'person_keypoints', 'count')]
    assert len(train) == NUM_TRAIN + 3 + 3 + 4
    assert all(bigger_val[f] == ours[f] for f in train)


def test_task_parts_leave_shapes_files_alone(data_root, tmp_path):
    """Pose and counting images draw from their own random streams."""
    without = _files(_generate(tmp_path / 'without', num_pose_train=0,
                               num_pose_val=0, num_count_train=0,
                               num_count_val=0))
    ours = _files(data_root)
    shapes = [f for f in ours if not f.startswith(('pose_', 'count_'))
              and 'person_keypoints' not in f and 'count_' not in f]
    assert len(shapes) > NUM_TRAIN + NUM_VAL + 6
    assert all(without[f] == ours[f] for f in shapes)


def test_placements_keep_earlier_objects_visible():
    for seed in range(20):
        placed = _place_objects(np.random.default_rng(seed), CFG)
        for i, p in enumerate(placed):
            hidden = np.zeros_like(p.mask)
            for later in placed[i + 1:]:
                hidden |= later.mask
            visible = (p.mask & ~hidden).sum()
            assert visible >= CFG.min_visible * p.mask.sum()


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_annotations_are_valid(data_root, split):
    num_images = dict(train=NUM_TRAIN, val=NUM_VAL)[split]
    coco = COCO(str(data_root / 'annotations' / f'instances_{split}.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        SHAPE_CLASSES)
    assert len(coco.getImgIds()) == num_images
    for img in coco.loadImgs(coco.getImgIds()):
        assert (data_root / split / img['file_name']).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        assert CFG.min_objects <= len(anns) <= CFG.max_objects
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= img['width'] and y + h <= img['height']
            mask = mask_utils.decode(ann['segmentation']).astype(bool)
            assert mask.shape == (img['height'], img['width'])
            assert ann['area'] == mask.sum() > 0
            assert mask[y:y + h, x:x + w].sum() == mask.sum()
            assert mask_utils.toBbox(ann['segmentation']).tolist() == [
                x, y, w, h
            ]
            assert ann['iscrowd'] == 0
            assert ann['color'] in COLORS
            assert CFG.min_size <= ann['size'] <= CFG.max_size


def test_referring_expressions_are_unique(data_root):
    coco = _load(data_root, 'instances_refs.json')
    objects = defaultdict(list)  # image id -> (ann id, object), drawing order
    for ann in coco['annotations']:
        obj = ShapeObject.from_coco(ann)
        objects[ann['image_id']].append((ann['id'], obj))
    images = {img['id']: img for img in coco['images']}
    refs = _refs(data_root)
    assert {ref['split'] for ref in refs} == {'train', 'val'}
    refs_per_image = defaultdict(list)
    for ref in refs:
        assert ref['file_name'] == images[ref['image_id']]['file_name']
        assert ref['file_name'].startswith(ref['split'] + '/')
        assert 1 <= len(ref['sentences']) <= CFG.max_sentences
        assert ref['sent_ids'] == [s['sent_id'] for s in ref['sentences']]
        refs_per_image[ref['image_id']].append(ref['ann_id'])
        ann_ids, objs = zip(*objects[ref['image_id']])
        candidates = candidate_expressions(objs)
        for sent in ref['sentences']:
            assert sent['tokens'] == sent['sent'].split()
            expr = candidates[sent['sent']]
            assert expr.referent(objs) == ann_ids.index(ref['ann_id']), (
                f'{sent["sent"]!r} is ambiguous in {ref["file_name"]}')
    for ann_ids in refs_per_image.values():
        assert len(set(ann_ids)) == len(ann_ids) <= CFG.refs_per_image


def test_refcoco_dataset_reads_refs(data_root):
    pytest.importorskip('mmdet')
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import RefCocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    anns = {a['id']: a for a in _load(data_root,
                                      'instances_refs.json')['annotations']}
    val_refs = [ref for ref in _refs(data_root) if ref['split'] == 'val']
    ds = RefCocoDataset(
        data_root=str(data_root),
        ann_file='annotations/instances_refs.json',
        split_file='annotations/refs_shapes.p',
        split='val',
        data_prefix=dict(img_path=''),
        text_mode='select_first',
        pipeline=[
            LoadImageFromFile(),
            LoadAnnotations(with_bbox=False, with_label=False, with_mask=True)
        ])
    assert len(ds) == len({ref['image_id'] for ref in val_refs}) > 0
    item = ds[0]
    refs = [ref for ref in val_refs if ref['image_id'] == item['img_id']]
    assert item['text'] == [ref['sentences'][0]['raw'] for ref in refs]
    assert item['img'].shape == (CFG.image_size, CFG.image_size, 3)
    assert item['gt_masks'].areas.tolist() == [
        anns[ref['ann_id']]['area'] for ref in refs
    ]


def test_coco_dataset_reads_instances(data_root):
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset

    ds = CocoDataset(
        data_root=str(data_root),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        metainfo=shapes_metainfo(),
        pipeline=[])
    assert len(ds) == NUM_VAL
    assert ds.metainfo['classes'] == SHAPE_CLASSES
    assert ds.cat_ids == list(range(1, len(SHAPE_CLASSES) + 1))
    item = ds[0]
    anns = [
        a for a in _load(data_root, 'instances_val.json')['annotations']
        if a['image_id'] == item['img_id']
    ]
    assert os.path.isfile(item['img_path'])
    assert [i['bbox_label'] for i in item['instances']] == [
        a['category_id'] - 1 for a in anns
    ]


def test_cli_writes_dataset(tmp_path, monkeypatch, capsys):
    # In-process: a subprocess would pay for importing lumen_mm again.
    monkeypatch.setattr(sys, 'argv', [
        'make_shapes.py', '--out',
        str(tmp_path), '--num-train', '2', '--num-val', '1', '--image-size',
        '64', '--max-size', '30', '--num-pose-train', '2', '--num-pose-val',
        '1', '--num-count-train', '1', '--num-count-val', '1'
    ])
    runpy.run_path(str(REPO / 'tools' / 'make_shapes.py'), run_name='__main__')
    out = capsys.readouterr().out
    assert 'train: 2 images' in out and 'val: 1 images' in out
    assert '2 pose images' in out and '1 count images' in out
    assert (tmp_path / 'annotations' / 'refs_shapes.p').is_file()
    # 64 px images: figures and counting objects still fit
    with open(tmp_path / 'annotations' / 'person_keypoints_train.json') as f:
        pose = json.load(f)
    assert {img['width'] for img in pose['images']} == {64}
    assert all(x + w <= 64 and y + h <= 64
               for x, y, w, h in (a['bbox'] for a in pose['annotations']))
