"""Each of the paper's datasets, as configured in
configs/lumen/_base_/datasets/lumen_paper_448.py, reads a tiny fixture in
that dataset's released format (tests/fixtures_datasets.py) and yields
Lumen samples."""
import copy

import pytest
from mmengine.config import Config

from conftest import REPO
from fixtures_datasets import (FSC_POINTS, OI_CLASSES, H, W, _aic,
                               _coco_instances, _coco_keypoints, _fsc147,
                               _json, _llava_instruct, _objects365,
                               _openimages, _refcoco, _turn, _voc2007)

DATASETS_CONFIG = REPO / 'configs/lumen/_base_/datasets/lumen_paper_448.py'


@pytest.fixture(scope='module')
def paper_cfg():
    return Config.fromfile(str(DATASETS_CONFIG))


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


# -- detection ----------------------------------------------------------------
def test_coco_detection_and_instances(paper_cfg, tmp_path):
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    for split in ('train2017', 'val2017'):
        _coco_instances(tmp_path, f'annotations/instances_{split}.json',
                        split, classes)
    train = _sample(_build(paper_cfg, 'coco_det_train', tmp_path))
    assert train.task == 'det'
    # at most prompts_per_image classes, the two present ones first
    assert len(train.prompts) == paper_cfg.prompts_per_image == 8
    assert {'person', 'toothbrush'} <= set(train.prompts)
    seg_train = _sample(_build(paper_cfg, 'coco_seg_train', tmp_path))
    assert seg_train.task == 'seg' and len(seg_train.prompts) == 8
    assert sorted(train.gt_instances.labels.tolist()) == [0, 79]
    # long side 64 -> 448: boxes scaled by 7
    box = train.gt_instances.bboxes.tensor[0].tolist()
    assert box == pytest.approx([28, 28, 168, 238])
    val = _sample(_build(paper_cfg, 'coco_det_val', tmp_path))
    assert val.task == 'det' and val.prompts == list(classes)  # all 80
    seg = _sample(_build(paper_cfg, 'coco_seg_val', tmp_path))
    assert seg.task == 'seg' and len(seg.prompts) == 80


def test_objects365_v2_release_paths(paper_cfg, tmp_path):
    """zhiyuan_objv2_train.json names images images/v{1,2}/patchN/...; the
    patchN.tar.gz archives unpack to train/patchN/ (mmdet's layout)."""
    from mmdet.datasets import Objects365V2Dataset
    classes = Objects365V2Dataset.METAINFO['classes']
    _objects365(tmp_path)
    dataset = _build(paper_cfg, 'objects365_train', tmp_path)
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    assert sorted(paths) == [
        f'{tmp_path}/train/patch0/objects365_v1_00000001.jpg',
        f'{tmp_path}/train/patch16/objects365_v2_00908730.jpg']
    sample = _sample(dataset)
    # the 2 classes present + 6 absent ones of 365 (prompts_per_image)
    assert len(sample.prompts) == 8
    # names are prompted stripped ('Table Tennis ' in mmdet's list)
    assert {'Person', classes[-1].strip()} <= set(sample.prompts)
    assert sample.prompt_labels == sorted(sample.prompt_labels)
    box = sample.gt_instances.bboxes.tensor[0].tolist()
    assert box == pytest.approx([31.5, 29.75, 171.5, 239.75])  # x 7


def test_openimages_v6_from_released_csvs(paper_cfg, tmp_path):
    from lumen_mm.converters.openimages import write_openimages_image_metas
    _openimages(tmp_path)
    ann = tmp_path / 'annotations'
    with pytest.raises(FileNotFoundError, match='openimages_image_metas'):
        _build(paper_cfg, 'openimages_train', tmp_path)
    metas = write_openimages_image_metas(
        str(ann / 'oidv6-train-annotations-bbox.csv'), str(tmp_path / 'train'),
        str(ann / 'train-image-metas.pkl'))
    assert [m['ori_shape'] for m in metas] == [(H, W, 3)] * 2
    dataset = _build(paper_cfg, 'openimages_train', tmp_path)
    names = [name for _, name in OI_CLASSES]
    assert list(dataset.metainfo['classes']) == names
    assert len(dataset) == 2
    info = dataset.get_data_info(0)
    assert info['img_id'] == '000002b66c9c498e'
    assert list(info['text']) == names
    # Tortoise's parents (mmdet's hierarchy matrix): Turtle
    relation = dataset.metainfo['RELATION_MATRIX']
    assert relation[0].nonzero()[0].tolist() == [0, 4]
    sample = _sample(dataset)
    assert {'Tortoise', 'Magpie'} <= set(sample.prompts)
    assert sorted(sample.gt_instances.labels.tolist()) == [0, 2]
    # 0-1 boxes -> pixels of the 64 x 48 image -> x 7 at 448
    boxes = sorted(sample.gt_instances.bboxes.tensor.tolist())
    assert boxes[0] == pytest.approx([28, 42, 168, 252])
    assert boxes[1] == pytest.approx([224, 84, 392, 168])


def test_openimages_metas_follow_the_decoder_and_refuse_other_files(
        tmp_path):
    import mmcv

    from lumen_mm.converters.openimages import (openimages_image_ids,
                                                write_openimages_image_metas)
    _openimages(tmp_path, exif_orientation=6)
    csv_file = str(tmp_path / 'annotations/oidv6-train-annotations-bbox.csv')
    metas = write_openimages_image_metas(csv_file, str(tmp_path / 'train'),
                                         nproc=2)
    for meta in metas:
        assert meta['ori_shape'] == mmcv.imread(meta['filename']).shape
    assert metas[1]['ori_shape'] == (W, H, 3)  # turned by its EXIF tag
    # validation-annotations-bbox.csv has no XClick columns
    rows = open(csv_file).read().splitlines()
    short = tmp_path / 'validation-annotations-bbox.csv'
    short.write_text(''.join(','.join(r.split(',')[:13]) + '\n'
                             for r in rows))
    assert openimages_image_ids(str(short)) == [
        '000002b66c9c498e', '000002b97e5471a0']
    with pytest.raises(ValueError, match='not an OpenImages box CSV'):
        write_openimages_image_metas(
            str(tmp_path / 'annotations/class-descriptions-boxable.csv'),
            str(tmp_path / 'train'))
    with pytest.raises(FileNotFoundError, match='<ImageID>.jpg'):
        write_openimages_image_metas(csv_file, str(tmp_path))


def test_coco_format_dataset_reads_classes_from_the_file(tmp_path):
    names = ('Tortoise', 'Container', 'Magpie')
    _coco_instances(tmp_path, 'annotations/converted.json', 'train', names,
                    cat_ids=[10, 2, 7])
    from mmdet.registry import DATASETS

    import lumen_mm  # noqa: F401
    dataset = DATASETS.build(dict(
        type='CocoFormatDataset', data_root=str(tmp_path) + '/',
        ann_file='annotations/converted.json',
        data_prefix=dict(img='train/'), return_classes=True, pipeline=[]))
    # the file's categories, in its order (mmdet's id -> label order)
    assert dataset.metainfo['classes'] == names
    labels = [i['bbox_label'] for i in dataset.get_data_info(0)['instances']]
    assert sorted(labels) == [0, 2]  # Tortoise (id 10), Magpie (id 7)


# -- referring expressions ----------------------------------------------------
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
    for split in ('train2017', 'val2017'):
        _coco_keypoints(tmp_path, split)
    sample = _sample(_build(paper_cfg, 'coco_pose_train', tmp_path))
    assert sample.task == 'pose'
    # training asks 8 (prompts_per_image) of the 12 labelled keypoints
    assert len(sample.prompts) == 8 and max(sample.prompt_labels) < 12
    # the 12 labelled keypoints are the targets, as zero-size boxes
    assert sample.gt_instances.labels.tolist() == list(range(12))
    val = _sample(_build(paper_cfg, 'coco_pose_val', tmp_path))
    assert val.metainfo['id'] == 1
    assert len(val.prompts) == 17 and val.prompts[5] == 'left shoulder'


def test_ai_challenger_converted_to_coco(paper_cfg, tmp_path):
    from lumen_mm.converters import convert_aic_to_coco
    raw = _aic(tmp_path)
    out = tmp_path / 'annotations' / 'aic_train.json'
    coco = convert_aic_to_coco(str(raw), str(tmp_path / 'train'), str(out))
    ann = coco['annotations'][0]
    assert ann['bbox'] == [5, 5, 30, 35]
    assert ann['keypoints'][:9] == [10, 8, 2, 11, 9, 1, 0, 0, 0]
    assert coco['images'][0]['width'] == W
    sample = _sample(_build(paper_cfg, 'aic_pose_train', tmp_path))
    assert sample.task == 'pose'
    # 8 (prompts_per_image) of the 10 labelled keypoints, in index order
    assert sample.prompt_labels == sorted(sample.prompt_labels)
    assert len(sample.prompts) == 8 and set(sample.prompt_labels) <= set(
        k for k in range(14) if k % 3 != 2)
    names = paper_cfg.aic_keypoint_names  # 'head top', 'neck' last
    assert sample.prompts == [names[k] for k in sample.prompt_labels]
    visible = [k for k in range(14) if k % 3 != 2]
    assert sample.gt_instances.labels.tolist() == visible


def test_aic_converter_refuses_other_files(tmp_path):
    from lumen_mm.converters import convert_aic_to_coco
    _json(tmp_path / 'coco.json', dict(images=[]))
    with pytest.raises(ValueError, match='not an AI Challenger'):
        convert_aic_to_coco(str(tmp_path / 'coco.json'), str(tmp_path))


# -- VQA, VOC, counting -------------------------------------------------------
def test_llava_instruct(paper_cfg, tmp_path, monkeypatch):
    import lumen_mm.datasets.vqa as vqa
    logged = []
    monkeypatch.setattr(vqa, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    _llava_instruct(tmp_path)
    dataset = _build(paper_cfg, 'llava_instruct_train', tmp_path)
    assert len(dataset) == 3
    sample = _sample(dataset)
    assert sample.task == 'vqa'
    assert sample.prompts == ['What is on the table?', 'What colour is it?']
    assert sample.answers == ['A bowl of fruit.', 'Green.']
    assert dataset.get_data_info(1)['conversation'] == [
        ('How many bowls?', 'One.')]
    assert dataset.get_data_info(2)['conversation'] == [('Is it day?', 'Yes.')]
    assert len(logged) == 1
    assert ('leading non-human turn of 2 and the unanswered last question '
            'of 1 of 4 conversations') in logged[0]
    assert '1 were left empty' in logged[0]


def test_llava_instruct_refuses_broken_turns(paper_cfg, tmp_path):
    _json(tmp_path / 'llava_instruct/llava_instruct_150k.json', [
        dict(id='7', image='7.jpg', conversations=[
            _turn('human', 'Q'), _turn('human', 'Q again'),
            _turn('gpt', 'A'), _turn('gpt', 'A again')])])
    with pytest.raises(ValueError, match="'7'.*alternating human/gpt"):
        _build(paper_cfg, 'llava_instruct_train', tmp_path)


def test_pascal_voc_2007_val(paper_cfg, tmp_path):
    _voc2007(tmp_path)
    dataset = _build(paper_cfg, 'voc07_val', tmp_path)
    assert dataset.metainfo['dataset_type'] == 'VOC2007'
    sample = _sample(dataset)
    assert sample.task == 'det' and len(sample.prompts) == 20
    assert sample.prompts[10] == 'dining table'  # plain words, not VOC's
    assert dataset.get_data_info(0)['instances'][0]['bbox_label'] == 10
    # VOCMetric reads the ground truth from the sample, in the original
    # frame (mmdet's VOC reader takes 1 from every coordinate)
    assert sample.gt_instances.labels.tolist() == [10]
    assert sample.gt_instances.bboxes.tensor.tolist() == [[4, 5, 39, 29]]


def test_fsc147(paper_cfg, tmp_path):
    """The release: H/W are the original photo's size; the stored images
    (here 64 x 48 for a 640 x 480 photo) and the points are smaller."""
    _fsc147(tmp_path)
    dataset = _build(paper_cfg, 'fsc147_test', tmp_path)
    assert len(dataset) == 2
    assert dataset.metainfo['classes'] == ('apples', 'cars', 'sea shells')
    info = dataset.get_data_info(0)
    assert (info['width'], info['height']) == (W, H)  # not 640 x 480
    assert [i['bbox'][:2] for i in info['instances']] == FSC_POINTS
    sample = _sample(dataset)
    assert sample.task == 'count'
    assert sample.prompts == ['sea shells']
    assert sample.gt_count == 3
    coco = _build(paper_cfg, 'fsc147_test', tmp_path, split='test_coco')
    assert [coco.get_data_info(0)[k] for k in ('img_id', 'gt_count')] == [
        '9.jpg', 2]
    val_coco = _build(paper_cfg, 'fsc147_test', tmp_path, split='val_coco')
    assert val_coco.get_data_info(0)['text'][val_coco.get_data_info(0)[
        'count_label']] == 'apples'
    with pytest.raises(ValueError, match="'train', 'val', 'test', 'val_coco'"):
        _build(paper_cfg, 'fsc147_test', tmp_path, split='training')
