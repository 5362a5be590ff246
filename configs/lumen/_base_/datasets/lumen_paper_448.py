# The paper's nine datasets (Sec. 4.1.1, 4.4) as Lumen instruction samples at
# 448 x 448, no augmentation (Sec. 4.1.3). Layout under data/
# (docs/datasets.md):
#
#   data/coco/                   COCO 2017 + 2014 train images (RefCOCO)
#     annotations/instances_{train,val}2017.json
#     annotations/person_keypoints_{train,val}2017.json
#     train2017/ val2017/ train2014/
#     refcoco/instances.json refcoco/refs(unc).p        (mmdet's layout)
#     refcoco+/instances.json refcoco+/refs(unc).p
#     refcocog/instances.json refcocog/refs(umd).p
#   data/objects365/annotations/zhiyuan_objv2_train.json, train/patch*/ (v2)
#   data/openimages/annotations/oidv6-train-annotations-bbox.csv,
#     class-descriptions-boxable.csv, bbox_labels_600_hierarchy.json,
#     train-image-metas.pkl (tools/openimages_image_metas.py); train/
#   data/aic/annotations/aic_train.json (tools/convert_aic_to_coco.py),
#     train/ (keypoint_train_images_20170902)
#   data/llava_instruct/llava_instruct_150k.json (images: coco/train2017)
#   data/VOCdevkit/VOC2007/  Annotations/ ImageSets/Main/val.txt JPEGImages/
#   data/fsc147/  annotation_FSC147_384.json Train_Test_Val_FSC_147.json
#     ImageClasses_FSC147.txt images_384_VarV2/
image_size = 448
coco_keypoint_names = (
    'nose', 'left eye', 'right eye', 'left ear', 'right ear',
    'left shoulder', 'right shoulder', 'left elbow', 'right elbow',
    'left wrist', 'right wrist', 'left hip', 'right hip', 'left knee',
    'right knee', 'left ankle', 'right ankle')
aic_keypoint_names = (
    'right shoulder', 'right elbow', 'right wrist', 'left shoulder',
    'left elbow', 'left wrist', 'right hip', 'right knee', 'right ankle',
    'left hip', 'left knee', 'left ankle', 'head top', 'neck')

# -- pipelines ---------------------------------------------------------------
def _box_pipeline(prompts, with_bbox=False, with_mask=False, late_mask=False,
                  test=False, sam_image=False):
    """Load, resize the long side to image_size, pad square, ask prompts.
    Test pipelines load with mmcv's LoadImageFromFile, the step mmdet's
    DetInferencer replaces with its own loader; training keeps
    LumenLoadImageFromFile's errors naming a corrupt file. ``sam_image``
    keeps the original at SAM's 1024-px input for the mask head."""
    load = [dict(type='LoadAnnotations', with_bbox=with_bbox,
                 with_label=with_bbox, with_mask=with_mask)]
    early = load if (with_bbox or with_mask) and not late_mask else []
    late = load if late_mask else []
    loader = 'LoadImageFromFile' if test else 'LumenLoadImageFromFile'
    sam = [dict(type='LumenSamImage', size=1024)] if sam_image else []
    return ([dict(type=loader)] + sam + early + [
        dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
        dict(type='Pad', size=(image_size, image_size)),
    ] + late + [prompts, dict(type='PackLumenInputs')])


def _pose_pipeline(names, max_prompts=None):
    """Top-down: crop each person box (x1.25), one prompt per keypoint."""
    return [
        dict(type='LumenLoadImageFromFile'),
        dict(type='mmpose.GetBBoxCenterScale', padding=1.25),
        dict(type='mmpose.TopdownAffine', input_size=(image_size, image_size)),
        dict(type='LumenPosePrompts', keypoint_names=names,
             max_prompts=max_prompts),
        dict(type='PackLumenInputs'),
    ]


# Prompts per training image (the paper does not say; its template asks one
# description per conversation). Every task asks at most this many, so each
# task's share of location prompts stays near its sampling rate and a batch
# of 20 holds at most 160 (all 80 COCO classes, ~7 RefCOCO sentences and 17
# keypoints gave ~1600, grounding ~5%): 8 is above most images' present
# classes (COCO: 2.9 on average), so absent ones still fill (empty heatmaps),
# and about a RefCOCO image's sentences (7.1). docs/train_test.md,
# tools/analysis/prompt_budget.py. Test pipelines ask everything.
prompts_per_image = 8
# Detection: the classes an image holds first, then absent ones to fill.
det_train_pipeline = _box_pipeline(
    dict(type='LumenDetPrompts', max_prompts=prompts_per_image),
    with_bbox=True)
# Instance segmentation trains on the detection boxes: "we first transform
# their masks into bounding boxes ... we actually do not use segmentation
# annotations throughout the entire training process" (Sec. 4.1.1).
seg_train_pipeline = _box_pipeline(
    dict(type='LumenDetPrompts', task='seg', max_prompts=prompts_per_image),
    with_bbox=True)
det_test_pipeline = _box_pipeline(
    dict(type='LumenDetPrompts', test_mode=True), test=True)
# Masks: SAM reads the original at its own 1024 px, not the 448 letterbox.
seg_test_pipeline = _box_pipeline(
    dict(type='LumenDetPrompts', task='seg', test_mode=True), test=True,
    sam_image=True)
# Referring expressions: the referred object's box is its mask's box.
ground_train_pipeline = _box_pipeline(
    dict(type='LumenGroundPrompts', max_prompts=prompts_per_image),
    with_mask=True)
refseg_train_pipeline = _box_pipeline(
    dict(type='LumenGroundPrompts', task='refseg',
         max_prompts=prompts_per_image),
    with_mask=True)
# test: annotations loaded after resizing stay in the original frame
ground_test_pipeline = _box_pipeline(
    dict(type='LumenGroundPrompts'), with_mask=True, late_mask=True,
    test=True)
refseg_test_pipeline = _box_pipeline(
    dict(type='LumenGroundPrompts', task='refseg'), with_mask=True,
    late_mask=True, test=True, sam_image=True)
coco_pose_pipeline = _pose_pipeline(coco_keypoint_names, prompts_per_image)
aic_pose_pipeline = _pose_pipeline(aic_keypoint_names, prompts_per_image)
coco_pose_test_pipeline = _pose_pipeline(coco_keypoint_names)
vqa_pipeline = _box_pipeline(dict(type='LumenVQAPrompts'))
# VOCMetric reads the boxes from the samples (COCO's metric, from its file):
# loaded after resizing, in the original frame
voc_test_pipeline = _box_pipeline(
    dict(type='LumenDetPrompts', test_mode=True), with_bbox=True,
    late_mask=True, test=True)
count_test_pipeline = _box_pipeline(
    dict(type='LumenCountPrompts'), test=True)

# -- detection: COCO 2017, Objects365 v2, OpenImages v6 ----------------------
coco_det_train = dict(
    type='CocoDataset',
    data_root='data/coco/',
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    filter_cfg=dict(filter_empty_gt=False),
    return_classes=True,
    pipeline=det_train_pipeline)
objects365_train = dict(
    type='Objects365V2Dataset',
    data_root='data/objects365/',
    ann_file='annotations/zhiyuan_objv2_train.json',
    data_prefix=dict(img='train/'),
    filter_cfg=dict(filter_empty_gt=True),
    return_classes=True,
    pipeline=det_train_pipeline)
openimages_train = dict(
    type='LumenOpenImagesDataset',  # mmdet's, from the released CSVs
    data_root='data/openimages/',
    ann_file='annotations/oidv6-train-annotations-bbox.csv',
    label_file='annotations/class-descriptions-boxable.csv',  # 601 classes
    hierarchy_file='annotations/bbox_labels_600_hierarchy.json',
    # image sizes: tools/openimages_image_metas.py (docs/datasets.md)
    meta_file='annotations/train-image-metas.pkl',
    data_prefix=dict(img='train/'),
    return_classes=True,
    pipeline=det_train_pipeline)
# the same images asked for masks, trained on their boxes (see above)
coco_seg_train = dict(coco_det_train, pipeline=seg_train_pipeline)
objects365_seg_train = dict(objects365_train, pipeline=seg_train_pipeline)
openimages_seg_train = dict(openimages_train, pipeline=seg_train_pipeline)
coco_det_val = dict(
    type='CocoDataset',
    data_root='data/coco/',
    ann_file='annotations/instances_val2017.json',
    data_prefix=dict(img='val2017/'),
    test_mode=True,
    return_classes=True,
    pipeline=det_test_pipeline)
coco_seg_val = dict(coco_det_val, pipeline=seg_test_pipeline)

# -- grounding: RefCOCO, RefCOCO+ (unc splits), RefCOCOg (umd splits) --------
refcoco_train = dict(
    type='LumenRefCocoDataset',
    data_root='data/coco/',
    ann_file='refcoco/instances.json',
    split_file='refcoco/refs(unc).p',
    split='train',
    data_prefix=dict(img_path='train2014/'),
    # every sentence: 'random' would draw one per object once, at load
    # time, for the whole run (see lumen_shapes.py; measured on Shapes)
    text_mode='original',
    pipeline=ground_train_pipeline)
refcoco_plus_train = dict(
    refcoco_train,
    ann_file='refcoco+/instances.json',
    split_file='refcoco+/refs(unc).p')
refcocog_train = dict(
    refcoco_train,
    ann_file='refcocog/instances.json',
    split_file='refcocog/refs(umd).p')
refcoco_refseg_train = dict(refcoco_train, pipeline=refseg_train_pipeline)
refcoco_plus_refseg_train = dict(
    refcoco_plus_train, pipeline=refseg_train_pipeline)
refcocog_refseg_train = dict(refcocog_train, pipeline=refseg_train_pipeline)
refcocog_ground_val = dict(
    refcocog_train,
    split='val',
    text_mode='original',
    test_mode=True,
    pipeline=ground_test_pipeline)
refcocog_refseg_val = dict(refcocog_ground_val, pipeline=refseg_test_pipeline)

# -- pose: COCO keypoints, AI Challenger (converted to the COCO layout) ------
coco_pose_train = dict(
    type='mmpose.CocoDataset',
    data_root='data/coco/',
    ann_file='annotations/person_keypoints_train2017.json',
    data_prefix=dict(img='train2017/'),
    data_mode='topdown',
    pipeline=coco_pose_pipeline)
aic_pose_train = dict(
    type='mmpose.AicDataset',  # mmpose's CocoDataset with AIC's 14 keypoints
    data_root='data/aic/',
    ann_file='annotations/aic_train.json',
    data_prefix=dict(img='train/'),
    data_mode='topdown',
    pipeline=aic_pose_pipeline)
# ground-truth person boxes; set bbox_file to a detector's boxes for the
# usual detected-box protocol
coco_pose_val = dict(
    coco_pose_train,
    ann_file='annotations/person_keypoints_val2017.json',
    data_prefix=dict(img='val2017/'),
    test_mode=True,
    pipeline=coco_pose_test_pipeline)

# -- VQA: LLaVA-Instruct-150k (heatmap loss off, LM loss only) ---------------
llava_instruct_train = dict(
    type='LumenVQADataset',
    data_root='data/',
    ann_file='llava_instruct/llava_instruct_150k.json',
    data_prefix=dict(img='coco/train2017/'),
    pipeline=vqa_pipeline)

# -- zero-shot detection: PASCAL VOC 2007 val (Table 4) ----------------------
voc07_val = dict(
    type='LumenVOCDataset',
    data_root='data/VOCdevkit/',
    ann_file='VOC2007/ImageSets/Main/val.txt',
    data_prefix=dict(sub_data_root='VOC2007/'),
    # VOC's names in plain words: what the LLM is asked
    class_prompts=('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
                   'car', 'cat', 'chair', 'cow', 'dining table', 'dog',
                   'horse', 'motorbike', 'person', 'potted plant', 'sheep',
                   'sofa', 'train', 'tv monitor'),
    test_mode=True,
    pipeline=voc_test_pipeline)

# -- counting: FSC-147 (Sec. 4.4.2, never trained) ---------------------------
fsc147_test = dict(
    type='FSC147Dataset',
    data_root='data/fsc147/',
    ann_file='annotation_FSC147_384.json',
    split_file='Train_Test_Val_FSC_147.json',
    class_file='ImageClasses_FSC147.txt',
    split='test',
    data_prefix=dict(img='images_384_VarV2/'),
    test_mode=True,
    pipeline=count_test_pipeline)
