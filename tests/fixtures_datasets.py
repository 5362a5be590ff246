"""Tiny fixtures of the paper's nine datasets in their released formats, and
all nine under one data root in the layout the paper config reads
(configs/lumen/_base_/datasets/lumen_paper_448.py)."""
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 64, 48  # fixture images; the pipelines bring them to 448 x 448


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def _json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _turn(who, text):
    return {'from': who, 'value': text}


# -- detection ----------------------------------------------------------------
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


def _objects365(root):
    """zhiyuan_objv2_train.json names images images/v{1,2}/patchN/...; the
    patchN.tar.gz archives unpack to train/patchN/ (mmdet's layout). Two of
    the four images are missing from the archives."""
    from mmdet.datasets import Objects365V2Dataset
    classes = Objects365V2Dataset.METAINFO['classes']
    images, anns = [], []
    for image_id, name, on_disk in (
            (1, 'images/v1/patch0/objects365_v1_00000001.jpg', True),
            (908730, 'images/v2/patch16/objects365_v2_00908730.jpg', True),
            (908726, 'images/v2/patch16/objects365_v2_00908726.jpg', False),
            (320532, 'images/v1/patch6/objects365_v1_00320532.jpg', False)):
        if on_disk:
            _image(root / 'train' / name.split('/', 2)[2], image_id)
        images.append(dict(height=H, id=image_id, license=5, width=W,
                           file_name=name, url=''))
        for cat, box in ((1, [4.5, 4.25, 20.0, 30.0]),
                         (365, [30.0, 10.0, 24.0, 20.0])):
            anns.append(dict(id=len(anns) + 1, iscrowd=0, isfake=0,
                             area=box[2] * box[3], isreflected=0, bbox=box,
                             image_id=image_id, category_id=cat))
    _json(root / 'annotations/zhiyuan_objv2_train.json', dict(
        images=images, annotations=anns,
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(classes)]))


# OpenImages v6 as released: classes of class-descriptions-boxable.csv (no
# header) and the columns of oidv6-train-annotations-bbox.csv
OI_CLASSES = (('/m/011k07', 'Tortoise'), ('/m/011q46kg', 'Container'),
              ('/m/012074', 'Magpie'), ('/m/0120dh', 'Sea turtle'),
              ('/m/09dzg', 'Turtle'))
OI_HEADER = ('ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,'
             'IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside')
OI_XCLICK = ',XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,' \
    'XClick3Y,XClick4Y'


def _openimages(root, exif_orientation=None):
    """The released files under ``root/annotations`` and two images under
    ``root/train``; the first image has two boxes, the second one (with no
    XClick points, as an activemil box has)."""
    ann = root / 'annotations'
    ann.mkdir(parents=True)
    (ann / 'class-descriptions-boxable.csv').write_text(
        ''.join(f'{mid},{name}\n' for mid, name in OI_CLASSES))
    _json(ann / 'bbox_labels_600_hierarchy.json', dict(
        LabelName='/m/0bl9f', Subcategory=[
            dict(LabelName='/m/09dzg', Subcategory=[
                dict(LabelName='/m/011k07'), dict(LabelName='/m/0120dh')]),
            dict(LabelName='/m/011q46kg'), dict(LabelName='/m/012074')]))
    rows = [
        '000002b66c9c498e,xclick,/m/011k07,1,0.062500,0.375000,0.125000,'
        '0.750000,0,1,0,0,0,0.062500,0.200000,0.375000,0.300000,0.400000,'
        '0.125000,0.600000,0.750000',
        '000002b66c9c498e,xclick,/m/012074,1,0.500000,0.875000,0.250000,'
        '0.500000,1,0,1,0,0,0.500000,0.600000,0.875000,0.700000,0.300000,'
        '0.250000,0.400000,0.500000',
        '000002b97e5471a0,activemil,/m/011q46kg,1,0.000000,0.500000,'
        '0.000000,1.000000,0,0,0,1,0,-1,-1,-1,-1,-1,-1,-1,-1',
    ]
    (ann / 'oidv6-train-annotations-bbox.csv').write_text(
        OI_HEADER + OI_XCLICK + '\n' + '\n'.join(rows) + '\n')
    _image(root / 'train/000002b66c9c498e.jpg', 1)
    path = root / 'train/000002b97e5471a0.jpg'
    _image(path, 2)
    if exif_orientation:  # stored landscape, shown portrait
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        Image.open(path).save(path, exif=exif)


# -- referring expressions ----------------------------------------------------
def _refcoco(root, folder, split_file):
    """mmdet's RefCOCO layout: instances.json + refs(...).p, COCO 2014; one
    referred object in train, one in val, two sentences each."""
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


# -- pose ---------------------------------------------------------------------
COCO_KEYPOINTS = [
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
    'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
    'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee',
    'right_knee', 'left_ankle', 'right_ankle']


def _coco_keypoints(root, split):
    """person_keypoints_<split>.json: one person, 12 of 17 keypoints
    labelled, on image 000000000001.jpg of ``split``."""
    name = '000000000001.jpg'
    _image(root / split / name)
    keypoints = []
    for k in range(17):
        keypoints += [10 + k, 8 + k, 2] if k < 12 else [0, 0, 0]
    _json(root / f'annotations/person_keypoints_{split}.json', dict(
        images=[dict(id=1, file_name=name, width=W, height=H)],
        annotations=[dict(id=1, image_id=1, category_id=1, iscrowd=0,
                          bbox=[5, 5, 30, 35], area=1050,
                          keypoints=keypoints, num_keypoints=12)],
        categories=[dict(id=1, name='person', keypoints=COCO_KEYPOINTS,
                         skeleton=[[16, 14]])]))


def _aic(root):
    """AI Challenger's keypoint_train_annotations.json (v = 1 visible, 2
    occluded, 3 not labelled) and its image under ``root/train``; returns
    the annotation file."""
    _image(root / 'train' / 'abc123.jpg')
    points = []
    for k in range(14):
        points += [10 + k, 8 + k, (1, 2, 3)[k % 3]]
    raw = root / 'keypoint_train_annotations.json'
    _json(raw, [dict(image_id='abc123',
                     human_annotations=dict(human1=[5, 5, 35, 40]),
                     keypoint_annotations=dict(human1=points))])
    return raw


# -- VQA, VOC, counting -------------------------------------------------------
def _llava_instruct(root):
    """llava_instruct_150k.json under ``root/llava_instruct`` (images in
    ``root/coco/train2017``): four conversations, one left empty once
    LLaVA's rules drop its turns."""
    _image(root / 'coco/train2017/000000000009.jpg')
    _json(root / 'llava_instruct/llava_instruct_150k.json', [
        dict(id='000000000009', image='000000000009.jpg', conversations=[
            _turn('human', '<image>\nWhat is on the table?'),
            _turn('gpt', 'A bowl of fruit.'),
            _turn('human', 'What colour is it?'),
            _turn('gpt', 'Green.')]),
        # opens with the assistant: LLaVA's training drops that turn
        dict(id='000000000025', image='000000000009.jpg', conversations=[
            _turn('gpt', 'Hello, ask me about the image.'),
            _turn('human', 'How many bowls?\n<image>'),
            _turn('gpt', 'One.')]),
        # a last question without its answer trains nothing
        dict(id='000000000030', image='000000000009.jpg', conversations=[
            _turn('human', '<image>\nIs it day?'), _turn('gpt', 'Yes.'),
            _turn('human', 'Why?')]),
        # nothing left after the leading answer goes
        dict(id='000000000034', image='000000000009.jpg', conversations=[
            _turn('gpt', 'A lone answer.')]),
    ])


def _voc2007(root):
    """VOCdevkit/VOC2007 at ``root``: val.txt with one image, a dining
    table."""
    voc = root / 'VOC2007'
    _image(voc / 'JPEGImages/000005.jpg')
    (voc / 'ImageSets/Main').mkdir(parents=True)
    (voc / 'ImageSets/Main/val.txt').write_text('000005\n')
    (voc / 'Annotations').mkdir()
    (voc / 'Annotations/000005.xml').write_text(
        f'<annotation><size><width>{W}</width><height>{H}</height>'
        '<depth>3</depth></size><object><name>diningtable</name>'
        '<difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin>'
        '<xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>')


FSC_POINTS = [[5.0, 6.0], [20.5, 30.0], [40.0, 12.0]]


def _fsc147(root):
    """The release: H/W are the original photo's size; the stored images
    (here 64 x 48 for a 640 x 480 photo) and the points are smaller. Test
    7.jpg (3 sea shells) and 9.jpg (2 cars, also test_coco), val 8.jpg."""
    for name in ('7.jpg', '8.jpg', '9.jpg'):
        _image(root / 'images_384_VarV2' / name)
    points = FSC_POINTS
    _json(root / 'annotation_FSC147_384.json', {
        name: dict(H=480, W=640, points=pts, ratio_h=0.1, ratio_w=0.1,
                   r=[4, 4],
                   box_examples_coordinates=[[[1, 1], [1, 9], [9, 9],
                                              [9, 1]]],
                   box_examples_path=[f'/nfs/box_examples/{name[:-4]}_0.jpg'],
                   density_path=f'/nfs/gt_density_map_adaptive_384_VarV2/'
                   f'{name[:-4]}.npy',
                   img_path=f'/nfs/images_384_VarV2/{name}')
        for name, pts in (('7.jpg', points), ('8.jpg', points[:1]),
                          ('9.jpg', points[1:]))})
    _json(root / 'Train_Test_Val_FSC_147.json',
          dict(test=['7.jpg', '9.jpg'], test_coco=['9.jpg'], train=[],
               val=['8.jpg'], val_coco=['8.jpg']))
    (root / 'ImageClasses_FSC147.txt').write_text(
        '7.jpg\tsea shells\n8.jpg\tapples\n9.jpg\tcars\n')


# -- all nine ----------------------------------------------------------------
def write_paper_datasets(root: Path) -> Path:
    """The nine datasets under ``root`` as the paper config reads them
    under data/ (the layout in lumen_paper_448.py's header), with the files
    tools/ derive (OpenImages' image metas, AIC in COCO format)."""
    from mmdet.datasets import CocoDataset

    from lumen_mm.converters import convert_aic_to_coco
    from lumen_mm.converters.openimages import write_openimages_image_metas
    coco = root / 'coco'
    for split in ('train2017', 'val2017'):
        _coco_instances(coco, f'annotations/instances_{split}.json', split,
                        CocoDataset.METAINFO['classes'])
        _coco_keypoints(coco, split)
    for folder, split_file in (('refcoco', 'refs(unc).p'),
                               ('refcoco+', 'refs(unc).p'),
                               ('refcocog', 'refs(umd).p')):
        _refcoco(coco, folder, split_file)
    _objects365(root / 'objects365')
    openimages = root / 'openimages'
    _openimages(openimages)
    write_openimages_image_metas(
        str(openimages / 'annotations/oidv6-train-annotations-bbox.csv'),
        str(openimages / 'train'),
        str(openimages / 'annotations/train-image-metas.pkl'))
    aic = root / 'aic'
    convert_aic_to_coco(str(_aic(aic)), str(aic / 'train'),
                        str(aic / 'annotations/aic_train.json'))
    _llava_instruct(root)
    _voc2007(root / 'VOCdevkit')
    _fsc147(root / 'fsc147')
    return root
