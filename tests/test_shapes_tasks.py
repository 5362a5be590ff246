"""Lumen-Shapes pose, counting and VQA parts: annotations that hold, checked
from the files alone, and mmpose / mmdet loading them.

Uses the shared ``shapes_root`` fixture (12 / 6 shapes images, 6 / 4 pose and
counting images); determinism is tested in test_shapes.py.
"""
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from pycocotools import mask as mask_utils

from lumen_mm.datasets.shapes.counting import CountConfig
from lumen_mm.datasets.shapes.objects import (COLORS, SHAPE_CLASSES,
                                              ShapeObject, draw_shape_mask,
                                              shapes_metainfo)
from lumen_mm.datasets.shapes.pose import (KEYPOINT_NAMES, PERSON_AREA_RATIO,
                                           SKELETON, PoseConfig)
from lumen_mm.datasets.shapes.questions import (POSITION_MARGIN,
                                                shape_questions)

REPO = Path(__file__).resolve().parents[1]
POSE_INFO = REPO / 'configs/lumen/_base_/datasets/lumen_shapes_pose_info.py'
SIZES = dict(train=6, val=4)  # pose and counting images in the fixture
SPLITS = ('train', 'val')


def _load(root, name):
    return json.loads((root / 'annotations' / name).read_text())


def _by_image(coco):
    anns = defaultdict(list)
    for ann in coco['annotations']:
        anns[ann['image_id']].append(ann)
    return anns


def _decode(ann):
    return mask_utils.decode(ann['segmentation']).astype(bool)


# --------------------------------------------------------------------------
# Pose
# --------------------------------------------------------------------------


@pytest.mark.parametrize('split', SPLITS)
def test_pose_annotations_hold(shapes_root, split):
    coco = _load(shapes_root, f'person_keypoints_{split}.json')
    assert coco['categories'] == [
        dict(id=1, name='person', supercategory='person',
             keypoints=list(KEYPOINT_NAMES),
             skeleton=[[KEYPOINT_NAMES.index(a) + 1,
                        KEYPOINT_NAMES.index(b) + 1] for a, b in SKELETON])
    ]
    assert len(coco['images']) == SIZES[split]
    anns = _by_image(coco)
    hidden = 0
    for img in coco['images']:
        size = img['width']
        assert (shapes_root / f'pose_{split}' / img['file_name']).is_file()
        people = anns[img['id']]
        assert 1 <= len(people) <= PoseConfig().max_people
        masks = [_decode(a) for a in people]
        for ann, mask in zip(people, masks):
            assert ann['category_id'] == 1 and ann['iscrowd'] == 0
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
            assert ann['area'] == pytest.approx(PERSON_AREA_RATIO * w * h)
            # visible pixels lie in the (whole-figure) box
            assert 0 < mask[y:y + h, x:x + w].sum() == mask.sum()
            kpts = np.array(ann['keypoints']).reshape(-1, 3)
            assert ann['num_keypoints'] == len(kpts) == len(KEYPOINT_NAMES)
            assert set(kpts[:, 2]) <= {1, 2}
            assert np.all((kpts[:, 0] > x) & (kpts[:, 0] < x + w))
            assert np.all((kpts[:, 1] > y) & (kpts[:, 1] < y + h))
            for kx, ky, v in kpts:
                px, py = int(kx), int(ky)  # the pixel of a pixel centre
                if v == 2:  # drawn and not hidden
                    assert mask[py, px]
                else:  # hidden by another figure
                    hidden += 1
                    assert not mask[py, px]
                    assert any(m[py, px] for m in masks if m is not mask)
    assert hidden < 0.1 * len(coco['annotations']) * len(KEYPOINT_NAMES)


def test_pose_left_is_the_persons_own(shapes_root):
    """Figures face the viewer: the person's left is right of its torso
    axis (hip to neck) as seen in the image."""
    coco = _load(shapes_root, 'person_keypoints_train.json')
    index = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
    for ann in coco['annotations']:
        kpts = np.array(ann['keypoints']).reshape(-1, 3)[:, :2]
        hip, neck = kpts[index['hip']], kpts[index['neck']]
        up = neck - hip
        assert up[1] < 0  # upright
        own_left = np.array([-up[1], up[0]])  # image right of an upright axis
        for side, sign in (('left', 1), ('right', -1)):
            for part in ('hand', 'foot'):
                offset = kpts[index[f'{side}_{part}']] - hip
                assert sign * offset @ own_left > 0, (side, part, ann['id'])


def test_pose_ids_are_unique_across_splits_and_parts(shapes_root):
    image_ids, ann_ids = [], []
    for name in ('instances_train', 'instances_val', 'person_keypoints_train',
                 'person_keypoints_val', 'count_train', 'count_val'):
        coco = _load(shapes_root, f'{name}.json')
        image_ids += [img['id'] for img in coco['images']]
        ann_ids += [ann['id'] for ann in coco['annotations']]
    assert len(set(image_ids)) == len(image_ids)
    assert len(set(ann_ids)) == len(ann_ids)


def test_pose_dataset_info_matches_the_generator():
    info = Config.fromfile(str(POSE_INFO)).dataset_info
    keypoints = [info.keypoint_info[i] for i in range(len(KEYPOINT_NAMES))]
    assert [k['name'] for k in keypoints] == list(KEYPOINT_NAMES)
    assert [k['id'] for k in keypoints] == list(range(len(KEYPOINT_NAMES)))
    for k in keypoints:  # left <-> right
        expected = (k['name'].replace('left', 'right') if 'left' in k['name']
                    else k['name'].replace('right', 'left'))
        assert k['swap'] == ('' if expected == k['name'] else expected)
    assert [tuple(s['link']) for s in info.skeleton_info.values()
            ] == list(SKELETON)
    assert len(info.sigmas) == len(info.joint_weights) == len(KEYPOINT_NAMES)


def test_mmpose_coco_dataset_reads_pose(shapes_root):
    from mmpose.datasets import CocoDataset
    coco = _load(shapes_root, 'person_keypoints_train.json')
    ds = CocoDataset(
        ann_file='annotations/person_keypoints_train.json',
        data_root=str(shapes_root),
        data_prefix=dict(img='pose_train/'),
        metainfo=dict(from_file=str(POSE_INFO)),
        data_mode='topdown',
        pipeline=[])
    assert ds.metainfo['num_keypoints'] == len(KEYPOINT_NAMES)
    assert ds.metainfo['flip_indices'] == [0, 1, 3, 2, 4, 6, 5]
    # one item per person, each with its own keypoints inside its box
    assert len(ds) == len(coco['annotations'])
    assert sorted(ds[i]['id'] for i in range(len(ds))) == sorted(
        a['id'] for a in coco['annotations'])
    for i in range(len(ds)):
        item = ds[i]
        assert Path(item['img_path']).is_file()
        (x1, y1, x2, y2), = item['bbox']
        kpts = item['keypoints'][0]
        assert kpts.shape == (len(KEYPOINT_NAMES), 2)
        assert np.all((kpts >= (x1, y1)) & (kpts <= (x2, y2)))
        assert item['keypoints_visible'][0].tolist() == [1.0] * len(
            KEYPOINT_NAMES)


def test_mmpose_coco_metric_scores_the_pose_file(shapes_root, tmp_path):
    """OKS AP with the dataset info's sigmas: 1 for the ground truth, less
    for keypoints moved by 2 px."""
    from mmpose.datasets import CocoDataset
    from mmpose.evaluation.metrics import CocoMetric
    ann_file = shapes_root / 'annotations' / 'person_keypoints_val.json'
    ds = CocoDataset(
        ann_file=str(ann_file),
        data_prefix=dict(img=str(shapes_root / 'pose_val')),
        metainfo=dict(from_file=str(POSE_INFO)),
        data_mode='topdown',
        pipeline=[])
    shapes = {img['id']: (img['height'], img['width'])
              for img in json.loads(ann_file.read_text())['images']}
    aps = []
    for shift in (0.0, 2.0):
        metric = CocoMetric(ann_file=str(ann_file),
                            outfile_prefix=str(tmp_path / f'shift{shift}'))
        metric.dataset_meta = ds.metainfo
        for i in range(len(ds)):
            item = ds[i]
            metric.process([], [dict(
                id=item['id'], img_id=item['img_id'], category_id=1,
                ori_shape=shapes[item['img_id']], gt_instances=dict(),
                pred_instances=dict(
                    keypoints=item['keypoints'] + shift,
                    keypoint_scores=np.ones((1, len(KEYPOINT_NAMES))),
                    bboxes=item['bbox'], bbox_scores=np.ones(1)))])
        aps.append(metric.compute_metrics(metric.results)['AP'])
    assert aps[0] == pytest.approx(1.0)
    assert aps[1] < 0.9


def test_pose_config_names_the_fix():
    with pytest.raises(ValueError, match='max_height'):
        PoseConfig(max_height=0.9)
    with pytest.raises(ValueError, match='min_people'):
        PoseConfig(min_people=0)


# --------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------


@pytest.mark.parametrize('split', SPLITS)
def test_counts_equal_the_annotations(shapes_root, split):
    cfg = CountConfig()
    coco = _load(shapes_root, f'count_{split}.json')
    assert [c['name'] for c in coco['categories']] == list(SHAPE_CLASSES)
    assert len(coco['images']) == SIZES[split]
    anns = _by_image(coco)
    for img in coco['images']:
        assert (shapes_root / f'count_{split}' / img['file_name']).is_file()
        objs = anns[img['id']]
        kinds = Counter(a['category_id'] for a in objs)
        target = img['count_category_id']
        assert img['count'] == kinds[target]
        assert cfg.min_count <= img['count'] <= cfg.max_count
        assert sum(kinds.values()) - img['count'] <= cfg.max_distractors
        union = np.zeros((img['height'], img['width']), dtype=int)
        centers = []
        for ann in objs:
            mask = _decode(ann)
            x, y, w, h = ann['bbox']
            assert ann['area'] == mask.sum() == mask[y:y + h, x:x + w].sum()
            assert cfg.min_size <= ann['size'] <= cfg.max_size
            assert max(w, h) <= ann['size']
            assert ann['color'] in COLORS
            # whole: the visible mask is the shape drawn at its size
            assert ann['area'] == draw_shape_mask(
                SHAPE_CLASSES[ann['category_id'] - 1], 0, 0, ann['size'],
                ann['size']).sum()
            union += mask
            centers.append((x + w / 2, y + h / 2))
        assert union.max() == 1  # nothing hidden
        centers = np.array(centers)
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
        assert dist[~np.eye(len(centers), dtype=bool)].min() >= 5


def test_mmdet_coco_dataset_reads_counting(shapes_root):
    from mmdet.datasets import CocoDataset
    coco = _load(shapes_root, 'count_val.json')
    ds = CocoDataset(
        data_root=str(shapes_root),
        ann_file='annotations/count_val.json',
        data_prefix=dict(img='count_val/'),
        metainfo=shapes_metainfo(),
        pipeline=[])
    assert len(ds) == SIZES['val']
    images = {img['id']: img for img in coco['images']}
    for i in range(len(ds)):
        item = ds[i]
        img = images[item['img_id']]
        assert Path(item['img_path']).is_file()
        labels = [inst['bbox_label'] for inst in item['instances']]
        assert labels.count(img['count_category_id'] - 1) == img['count']


# --------------------------------------------------------------------------
# VQA
# --------------------------------------------------------------------------

_PLURALS = {s + ('es' if s.endswith('s') else 's'): s for s in SHAPE_CLASSES}
_QUESTIONS = [
    ('colour', re.compile(r'What colour is the (\w+)\?')),
    ('shape', re.compile(r'What shape is the (\w+) object\?')),
    ('count', re.compile(r'How many (\w+) are there\?')),
    ('position', re.compile(r'Is the (.+) (to the left or to the right|to the '
                            r'right or to the left) of the (.+)\?')),
    ('position', re.compile(r'Is the (.+) (above or below|below or above) '
                            r'the (.+)\?')),
]


def _answer(question, objects):
    """Answer a question from COCO annotations, by parsing its text; None
    when it has no single answer."""
    def named(name):
        words = name.split()
        found = [o for o in objects
                 if o['shape'] == words[-1]
                 and (len(words) == 1 or o['color'] == words[0])]
        return found[0] if len(found) == 1 else None

    for kind, pattern in _QUESTIONS:
        match = pattern.fullmatch(question)
        if not match:
            continue
        if kind == 'colour':
            obj = named(match[1])
            return kind, obj and obj['color']
        if kind == 'shape':
            found = [o for o in objects if o['color'] == match[1]]
            return kind, found[0]['shape'] if len(found) == 1 else None
        if kind == 'count':
            return kind, str(sum(o['shape'] == _PLURALS[match[1]]
                                 for o in objects))
        a, b = named(match[1]), named(match[3])
        if a is None or b is None:
            return kind, None
        horizontal = 'left' in match[2]
        delta = a['center'][0 if horizontal else 1] - b['center'][
            0 if horizontal else 1]
        if abs(delta) < POSITION_MARGIN:
            return kind, None
        if horizontal:
            return kind, 'left' if delta < 0 else 'right'
        return kind, 'above' if delta < 0 else 'below'
    raise AssertionError(f'unknown question {question!r}')


@pytest.mark.parametrize('split', SPLITS)
def test_questions_have_the_annotations_answer(shapes_root, split):
    coco = _load(shapes_root, f'instances_{split}.json')
    objects = defaultdict(list)  # file name -> objects
    files = {img['id']: f'{split}/{img["file_name"]}'
             for img in coco['images']}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        objects[files[ann['image_id']]].append(
            dict(shape=SHAPE_CLASSES[ann['category_id'] - 1],
                 color=ann['color'], center=(x + w / 2, y + h / 2)))
    entries = _load(shapes_root, f'qa_{split}.json')
    assert isinstance(entries, list)
    assert len({e['id'] for e in entries}) == len(entries)
    per_image = Counter(e['image'] for e in entries)
    assert set(per_image) == set(files.values())
    assert all(1 <= n <= 3 for n in per_image.values())
    kinds = Counter()
    for e in entries:
        assert (shapes_root / e['image']).is_file()
        human, gpt = e['conversations']
        assert human['from'] == 'human' and gpt['from'] == 'gpt'
        assert human['value'].startswith('<image>\n')
        question = human['value'][len('<image>\n'):]
        assert '<image>' not in question and '<image>' not in gpt['value']
        kind, answer = _answer(question, objects[e['image']])
        assert e['type'] == kind
        assert gpt['value'] == answer, (e['image'], question)
        kinds[kind] += 1
    assert set(kinds) <= {'colour', 'count', 'position', 'shape'}
    if split == 'train':
        assert len(kinds) == 4  # 12 images: every type occurs


def _object(shape, color, x, y, size=10, image_size=64):
    return ShapeObject(shape, color, size,
                       draw_shape_mask(shape, x, y, size, image_size))


def test_position_questions_need_a_clear_margin():
    # star and circle 4 px apart horizontally, 30 px vertically
    objects = [_object('star', 'red', 10, 5), _object('circle', 'blue', 14,
                                                      35)]
    asked = Counter()
    for seed in range(40):
        for kind, question, answer in shape_questions(
                np.random.default_rng(seed), objects):
            asked[kind] += 1
            if kind == 'position':
                assert 'left' not in question, question
                assert answer == ('above' if question.startswith(
                    'Is the star') else 'below')
            if kind == 'colour':
                assert answer == {'star': 'red', 'circle': 'blue'}[
                    question.split()[-1][:-1]]
    assert asked['position'] > 0 and asked['count'] > 0


def test_tokenizer_holds_the_pose_and_question_words(shapes_root):
    """Keypoint prompts and questions tokenise into whole words: the
    tokenizer is trained on them as well (it once split ' hand' into ' ',
    'ha', 'n', 'd', 17 tokens before the [LOC] state that must tell left
    from right)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(shapes_root / 'tokenizer'))
    words = {w for name in KEYPOINT_NAMES for w in name.split('_')}
    questions = json.loads(
        (shapes_root / 'annotations' / 'qa_train.json').read_text())
    for entry in questions:
        question = entry['conversations'][0]['value'].split('\n')[-1]
        words |= set(question.rstrip('?').split()[1:])
    assert {'hand', 'colour', 'many'} <= words
    split = {w: tok.tokenize(' ' + w) for w in sorted(words)}
    assert {w: t for w, t in split.items() if len(t) != 1} == {}
