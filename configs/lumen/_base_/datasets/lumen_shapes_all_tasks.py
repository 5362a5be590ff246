# Lumen-Shapes, every task of the paper: detection and instance
# segmentation on the shapes images, visual grounding and referring
# segmentation on their expressions, top-down pose on stick figures,
# counting images, and VQA in the LLaVA-Instruct layout.
_base_ = './lumen_shapes.py'
data_root = 'data/lumen_shapes/'

pose_info = '{{ fileDirname }}/lumen_shapes_pose_info.py'
keypoint_names = ('head', 'neck', 'left_hand', 'right_hand', 'hip',
                  'left_foot', 'right_foot')

# Horizontal flips double the training images, against learning them by
# heart: every shape is mirror-symmetric, and a flipped referring sentence
# swaps "left" and "right" (RandomFlipReferring; docs/studies/flips.md). VQA
# asks about positions and is not flipped; pose (a crop per person) is not
# either.
flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
# mask pipelines keep the original at the tiny SAM's input size (its img_size)
sam_image = dict(type='LumenSamImage', size=128)

det_train_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    flip,
    dict(type='LumenDetPrompts', num_absent=None),
    dict(type='PackLumenInputs'),
]
# grounding and referring segmentation load their samples alike
referring_train_loading = [
    dict(type='LumenLoadImageFromFile'),
    sam_image,
    dict(
        type='LoadAnnotations', with_bbox=False, with_label=False,
        with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    dict(type='RandomFlipReferring', prob=0.5),
]
ground_train_pipeline = referring_train_loading + [
    dict(type='LumenGroundPrompts'),
    dict(type='PackLumenInputs'),
]
seg_train_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    sam_image,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    flip,
    dict(type='LumenDetPrompts', task='seg', num_absent=None),
    dict(type='PackLumenInputs'),
]
seg_test_pipeline = [
    dict(type='LoadImageFromFile'),
    sam_image,
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    dict(type='LumenDetPrompts', task='seg', test_mode=True),
    dict(type='PackLumenInputs'),
]
refseg_train_pipeline = referring_train_loading + [
    dict(type='LumenGroundPrompts', task='refseg'),
    dict(type='PackLumenInputs'),
]
refseg_test_pipeline = [
    dict(type='LoadImageFromFile'),
    sam_image,
    sam_image,
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    # after resizing: ground-truth boxes and masks stay in the original frame
    dict(
        type='LoadAnnotations', with_bbox=False, with_label=False,
        with_mask=True),
    dict(type='LumenGroundPrompts', task='refseg'),
    dict(type='PackLumenInputs'),
]
# Top-down pose (Sec. 4.1.2): crop each person box (x1.25), one prompt per
# keypoint, with mmpose's own transforms.
pose_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    dict(type='mmpose.GetBBoxCenterScale', padding=1.25),
    dict(type='mmpose.TopdownAffine', input_size=(128, 128)),
    dict(type='LumenPosePrompts', keypoint_names=keypoint_names),
    dict(type='PackLumenInputs'),
]
count_train_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    flip,
    dict(type='LumenCountPrompts'),
    dict(type='PackLumenInputs'),
]
count_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    dict(type='LumenCountPrompts'),
    dict(type='PackLumenInputs'),
]
vqa_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='Pad', size=(128, 128)),
    dict(type='LumenVQAPrompts'),
    dict(type='PackLumenInputs'),
]

seg_train = dict(
    type='CocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/'),
    metainfo=dict(classes={{_base_.classes}}),
    filter_cfg=dict(filter_empty_gt=False),
    return_classes=True,
    pipeline=seg_train_pipeline)
refseg_train = dict(
    type='LumenRefCocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_refs.json',
    split_file='annotations/refs_shapes.p',
    split='train',
    data_prefix=dict(img_path=''),
    # every sentence, as for grounding (see the base)
    text_mode='original',
    pipeline=refseg_train_pipeline)
pose_train = dict(
    type='mmpose.CocoDataset',
    data_root=data_root,
    ann_file='annotations/person_keypoints_train.json',
    data_prefix=dict(img='pose_train/'),
    metainfo=dict(from_file=pose_info),
    data_mode='topdown',
    pipeline=pose_pipeline)
count_train = dict(
    type='LumenCountingDataset',
    data_root=data_root,
    ann_file='annotations/count_train.json',
    data_prefix=dict(img='count_train/'),
    metainfo=dict(classes={{_base_.classes}}),
    filter_cfg=dict(filter_empty_gt=False),
    return_classes=True,
    pipeline=count_train_pipeline)
vqa_train = dict(
    type='LumenVQADataset',
    data_root=data_root,
    ann_file='annotations/qa_train.json',
    pipeline=vqa_pipeline)

seg_val = dict(
    seg_train,
    ann_file='annotations/instances_val.json',
    data_prefix=dict(img='val/'),
    filter_cfg=None,
    test_mode=True,
    pipeline=seg_test_pipeline)
refseg_val = dict(
    refseg_train,
    split='val',
    text_mode='original',
    test_mode=True,
    pipeline=refseg_test_pipeline)
pose_val = dict(
    pose_train,
    ann_file='annotations/person_keypoints_val.json',
    data_prefix=dict(img='pose_val/'),
    test_mode=True)
count_val = dict(
    count_train,
    ann_file='annotations/count_val.json',
    data_prefix=dict(img='count_val/'),
    filter_cfg=None,
    test_mode=True,
    pipeline=count_test_pipeline)
vqa_val = dict(
    vqa_train, ann_file='annotations/qa_val.json', test_mode=True)

# The paper's rates (det 0.56, grounding 0.19, pose 0.19, VQA 0.06), with
# detection shared with instance segmentation and counting, and grounding
# with referring segmentation (the same heatmaps, Sec. 3.1.2).
train_dataloader = dict(
    dataset=dict(
        datasets=dict(
            # det and ground are the base's, with the flips
            det=dict(pipeline=det_train_pipeline),
            seg=seg_train,
            count=count_train,
            ground=dict(pipeline=ground_train_pipeline),
            refseg=refseg_train,
            pose=pose_train,
            vqa=vqa_train),
        sample_rates=dict(
            det=0.30, seg=0.16, count=0.10, ground=0.12, refseg=0.07,
            pose=0.19, vqa=0.06)))
val_dataloader = dict(
    dataset=dict(
        type='LumenConcatDataset',
        datasets=[
            {{_base_.det_val}}, seg_val, {{_base_.ground_val}}, refseg_val,
            pose_val, count_val, vqa_val
        ]))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='LumenMultiDatasetsEvaluator',
    metrics=[
        dict(
            type='LumenTaskMetric',
            task='det',
            metric=dict(
                type='CocoMetric',
                ann_file=data_root + 'annotations/instances_val.json',
                metric='bbox')),
        dict(
            type='LumenTaskMetric',
            task='seg',
            metric=dict(
                type='CocoMetric',
                ann_file=data_root + 'annotations/instances_val.json',
                metric='segm')),
        dict(type='LumenTaskMetric', task='ground',
             metric=dict(type='GroundingMetric')),
        dict(type='LumenTaskMetric', task='refseg',
             metric=dict(type='LumenRefSegMetric')),
        dict(
            type='LumenTaskMetric',
            task='pose',
            metric=dict(
                type='LumenPoseMetric',
                ann_file=data_root + 'annotations/person_keypoints_val.json',
                metainfo=pose_info,
                # one prediction per ground-truth person box: nothing to
                # suppress (mmpose 1.3's OKS NMS also fails under numpy 2)
                nms_mode='none')),
        dict(type='LumenTaskMetric', task='count',
             metric=dict(type='CountingMetric')),
        dict(type='LumenTaskMetric', task='vqa',
             metric=dict(type='VQAMetric')),
    ],
    dataset_prefixes=[
        'shapes_det', 'shapes_seg', 'shapes_ground', 'shapes_refseg',
        'shapes_pose', 'shapes_count', 'shapes_vqa'
    ])
test_evaluator = val_evaluator
