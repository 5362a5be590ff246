"""Each of the paper's datasets, as configured in
configs/lumen/_base_/datasets/lumen_paper_448.py, reads a tiny fixture in
that dataset's released format (written here) and yields Lumen samples."""
import copy
import json
import pickle

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from conftest import REPO

DATASETS_CONFIG = REPO / 'configs/lumen/_base_/datasets/lumen_paper_448.py'
W, H = 64, 48  # fixture images; the pipelines bring them to 448 x 448


@pytest.fixture(scope='module')
def paper_cfg():
    return Config.fromfile(str(DATASETS_CONFIG))


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def _json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _build(cfg, name, root, **changes):
    """The config's dataset ``name`` on the fixture at ``root``."""
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    dataset_cfg = copy.deepcopy(cfg[name])
    dataset_cfg.update(data_root=str(root) + '/', **changes)
    return DATASETS.build(dataset_cfg)


def _sample(dataset, index=0):
    item = dataset[index]
    assert tuple(item['inputs'].shape) == (3, 448, 448)
    return item['data_samples']


def _coco_instances(root, ann, img_dir, classes, cat_ids=None, n_images=1):
    """A COCO instances file over ``classes`` (ids 1.. unless given) with two
    objects per image, of the first and the last class."""
    cat_ids = cat_ids or list(range(1, len(classes) + 1))
    images, anns = [], []
    for i in range(1, n_images + 1):
        name = f'{i:012d}.jpg'
        _image(root / img_dir / name, i)
        images.append(dict(id=i, file_name=name, width=W, height=H))
        for cat, box in ((cat_ids[0], [4, 4, 20, 30]),
                         (cat_ids[-1], [30, 10, 24, 20])):
            x, y, w, h = box
            anns.append(dict(
                id=len(anns) + 1, image_id=i, category_id=cat, bbox=box,
                area=w * h, iscrowd=0,
                segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    _json(root / ann, dict(
        images=images, annotations=anns,
        categories=[dict(id=c, name=n) for c, n in zip(cat_ids, classes)]))


# -- detection ----------------------------------------------------------------
def test_coco_detection_and_instances(paper_cfg, tmp_path):
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    for split in ('train2017', 'val2017'):
        _coco_instances(tmp_path, f'annotations/instances_{split}.json',
                        split, classes)
    train = _sample(_build(paper_cfg, 'coco_det_train', tmp_path))
    assert train.task == 'det'
    assert train.prompts == list(classes)  # COCO asks all 80 classes
    assert sorted(train.gt_instances.labels.tolist()) == [0, 79]
    # long side 64 -> 448: boxes scaled by 7
    box = train.gt_instances.bboxes.tensor[0].tolist()
    assert box == pytest.approx([28, 28, 168, 238])
    assert _sample(_build(paper_cfg, 'coco_det_val', tmp_path)).task == 'det'
    seg = _sample(_build(paper_cfg, 'coco_seg_val', tmp_path))
    assert seg.task == 'seg' and len(seg.prompts) == 80


def test_objects365_v2(paper_cfg, tmp_path):
    from mmdet.datasets import Objects365V2Dataset
    classes = Objects365V2Dataset.METAINFO['classes']
    _coco_instances(tmp_path, 'annotations/zhiyuan_objv2_train.json',
                    'train', classes)
    sample = _sample(_build(paper_cfg, 'objects365_train', tmp_path))
    # the 2 classes present + 20 absent ones of 365
    assert len(sample.prompts) == 22
    assert {'Person', classes[-1]} <= set(sample.prompts)
    assert sample.prompt_labels == sorted(sample.prompt_labels)


def test_openimages_in_coco_layout(paper_cfg, tmp_path):
    names = ('Tortoise', 'Container', 'Magpie')
    _coco_instances(tmp_path,
                    'annotations/openimages_v6_train_bbox_coco.json',
                    'train', names, cat_ids=[10, 2, 7])
    dataset = _build(paper_cfg, 'openimages_train', tmp_path)
    # the file's categories, in its order (mmdet's id -> label order)
    assert dataset.metainfo['classes'] == names
    sample = _sample(dataset)
    assert sample.prompts == list(names)
    labels = sample.gt_instances.labels.tolist()
    assert sorted(labels) == [0, 2]  # Tortoise (id 10), Magpie (id 7)


# -- referring expressions ----------------------------------------------------
def _refcoco(root, folder, split_file):
    """mmdet's RefCOCO layout: instances.json + refs(...).p, COCO 2014."""
    name = 'COCO_train2014_000000000001.jpg'
    _image(root / 'train2014' / name)
    anns = [dict(id=k, image_id=1, category_id=1, iscrowd=0, area=600,
                 bbox=[x, 4, 20, 30],
                 segmentation=[[x, 4, x + 20, 4, x + 20, 34, x, 34]])
            for k, x in ((1, 4), (2, 36))]
    _json(root / folder / 'instances.json', dict(
        images=[dict(id=1, file_name=name, width=W, height=H)],
        annotations=anns, categories=[dict(id=1, name='person')]))
    refs = [
        dict(ref_id=0, ann_id=1, image_id=1, split='train', category_id=1,
             file_name=name, sentences=[dict(raw='the man on the left'),
                                        dict(raw='left person')]),
        dict(ref_id=1, ann_id=2, image_id=1, split='val', category_id=1,
             file_name=name, sentences=[dict(raw='Man on the right'),
                                        dict(raw='right guy')]),
    ]
    with open(root / folder / split_file, 'wb') as f:
        pickle.dump(refs, f)


@pytest.mark.parametrize('name, folder, split_file', [
    ('refcoco_train', 'refcoco', 'refs(unc).p'),
    ('refcoco_plus_train', 'refcoco+', 'refs(unc).p'),
    ('refcocog_train', 'refcocog', 'refs(umd).p'),
])
def test_refcoco_family_train(paper_cfg, tmp_path, name, folder, split_file):
    _refcoco(tmp_path, folder, split_file)
    sample = _sample(_build(paper_cfg, name, tmp_path))
    assert sample.task == 'ground'
    assert sample.prompts[0] in ('the man on the left', 'left person')
    # the referred object's box: its mask's box, scaled by 7
    assert sample.gt_instances.bboxes.tensor[0].tolist() == pytest.approx(
        [28, 28, 168, 238])


def test_refcocog_val_grounding_and_referring_segmentation(paper_cfg,
                                                           tmp_path):
    _refcoco(tmp_path, 'refcocog', 'refs(umd).p')
    ground = _sample(_build(paper_cfg, 'refcocog_ground_val', tmp_path))
    assert ground.task == 'ground'
    assert ground.prompts == ['man on the right', 'right guy']
    # test boxes stay in the original image frame
    assert ground.gt_instances.bboxes.tensor[0].tolist() == pytest.approx(
        [36, 4, 56, 34])
    refseg = _sample(_build(paper_cfg, 'refcocog_refseg_val', tmp_path))
    assert refseg.task == 'refseg'


# -- pose ---------------------------------------------------------------------
def test_coco_keypoints_top_down(paper_cfg, tmp_path):
    names = ['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
             'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
             'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
             'left_knee', 'right_knee', 'left_ankle', 'right_ankle']
    for split in ('train2017', 'val2017'):
        name = '000000000001.jpg'
        _image(tmp_path / split / name)
        keypoints = []
        for k in range(17):
            keypoints += [10 + k, 8 + k, 2] if k < 12 else [0, 0, 0]
        _json(tmp_path / f'annotations/person_keypoints_{split}.json', dict(
            images=[dict(id=1, file_name=name, width=W, height=H)],
            annotations=[dict(id=1, image_id=1, category_id=1, iscrowd=0,
                              bbox=[5, 5, 30, 35], area=1050,
                              keypoints=keypoints, num_keypoints=12)],
            categories=[dict(id=1, name='person', keypoints=names,
                             skeleton=[[16, 14]])]))
    sample = _sample(_build(paper_cfg, 'coco_pose_train', tmp_path))
    assert sample.task == 'pose'
    assert len(sample.prompts) == 17 and sample.prompts[5] == 'left shoulder'
    # the 12 labelled keypoints are the targets, as zero-size boxes
    assert sample.gt_instances.labels.tolist() == list(range(12))
    val = _sample(_build(paper_cfg, 'coco_pose_val', tmp_path))
    assert val.metainfo['id'] == 1


def test_ai_challenger_converted_to_coco(paper_cfg, tmp_path):
    from lumen_mm.converters import convert_aic_to_coco
    _image(tmp_path / 'train' / 'abc123.jpg')
    # AIC: v = 1 visible, 2 occluded, 3 not labelled
    points = []
    for k in range(14):
        points += [10 + k, 8 + k, (1, 2, 3)[k % 3]]
    raw = tmp_path / 'keypoint_train_annotations.json'
    _json(raw, [dict(image_id='abc123',
                     human_annotations=dict(human1=[5, 5, 35, 40]),
                     keypoint_annotations=dict(human1=points))])
    out = tmp_path / 'annotations' / 'aic_train.json'
    coco = convert_aic_to_coco(str(raw), str(tmp_path / 'train'), str(out))
    ann = coco['annotations'][0]
    assert ann['bbox'] == [5, 5, 30, 35]
    assert ann['keypoints'][:9] == [10, 8, 2, 11, 9, 1, 0, 0, 0]
    assert coco['images'][0]['width'] == W
    sample = _sample(_build(paper_cfg, 'aic_pose_train', tmp_path))
    assert sample.task == 'pose'
    assert sample.prompts[-2:] == ['head top', 'neck']
    visible = [k for k in range(14) if k % 3 != 2]
    assert sample.gt_instances.labels.tolist() == visible


def test_aic_converter_refuses_other_files(tmp_path):
    from lumen_mm.converters import convert_aic_to_coco
    _json(tmp_path / 'coco.json', dict(images=[]))
    with pytest.raises(ValueError, match='not an AI Challenger'):
        convert_aic_to_coco(str(tmp_path / 'coco.json'), str(tmp_path))


# -- VQA, VOC, counting -------------------------------------------------------
def test_llava_instruct(paper_cfg, tmp_path):
    _image(tmp_path / 'coco/train2017/000000000009.jpg')
    _json(tmp_path / 'llava_instruct/llava_instruct_150k.json', [dict(
        id='000000000009', image='000000000009.jpg',
        conversations=[
            dict(value='<image>\nWhat is on the table?', **{'from': 'human'}),
            dict(value='A bowl of fruit.', **{'from': 'gpt'}),
            dict(value='What colour is it?', **{'from': 'human'}),
            dict(value='Green.', **{'from': 'gpt'}),
        ])])
    sample = _sample(_build(paper_cfg, 'llava_instruct_train', tmp_path))
    assert sample.task == 'vqa'
    assert sample.prompts == ['What is on the table?', 'What colour is it?']
    assert sample.answers == ['A bowl of fruit.', 'Green.']


def test_pascal_voc_2007_val(paper_cfg, tmp_path):
    voc = tmp_path / 'VOC2007'
    _image(voc / 'JPEGImages/000005.jpg')
    (voc / 'ImageSets/Main').mkdir(parents=True)
    (voc / 'ImageSets/Main/val.txt').write_text('000005\n')
    (voc / 'Annotations').mkdir()
    (voc / 'Annotations/000005.xml').write_text(
        f'<annotation><size><width>{W}</width><height>{H}</height>'
        '<depth>3</depth></size><object><name>diningtable</name>'
        '<difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin>'
        '<xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>')
    dataset = _build(paper_cfg, 'voc07_val', tmp_path)
    assert dataset.metainfo['dataset_type'] == 'VOC2007'
    sample = _sample(dataset)
    assert sample.task == 'det' and len(sample.prompts) == 20
    assert sample.prompts[10] == 'dining table'  # plain words, not VOC's
    assert dataset.get_data_info(0)['instances'][0]['bbox_label'] == 10


def test_fsc147(paper_cfg, tmp_path):
    _image(tmp_path / 'images_384_VarV2/7.jpg')
    _image(tmp_path / 'images_384_VarV2/8.jpg')
    points = [[5.0, 6.0], [20.5, 30.0], [40.0, 12.0]]
    _json(tmp_path / 'annotation_FSC147_384.json', {
        name: dict(H=H, W=W, points=pts,
                   box_examples_coordinates=[[[1, 1], [1, 9], [9, 9],
                                              [9, 1]]])
        for name, pts in (('7.jpg', points), ('8.jpg', points[:1]))})
    _json(tmp_path / 'Train_Test_Val_FSC_147.json',
          dict(train=['8.jpg'], val=[], test=['7.jpg']))
    (tmp_path / 'ImageClasses_FSC147.txt').write_text(
        '7.jpg\tsea shells\n8.jpg\tapples\n')
    dataset = _build(paper_cfg, 'fsc147_test', tmp_path)
    assert len(dataset) == 1
    assert dataset.metainfo['classes'] == ('apples', 'sea shells')
    sample = _sample(dataset)
    assert sample.task == 'count'
    assert sample.prompts == ['sea shells']
    assert sample.gt_count == 3
    with pytest.raises(ValueError, match="'train', 'val'"):
        _build(paper_cfg, 'fsc147_test', tmp_path, split='training')
