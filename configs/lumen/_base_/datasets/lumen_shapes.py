# Lumen-Shapes (python tools/make_shapes.py --out data/lumen_shapes):
# detection on COCO-format instances, grounding on refer-API expressions.
data_root = 'data/lumen_shapes/'
image_size = 128
classes = ('circle', 'square', 'triangle', 'star', 'hexagon', 'cross')
metainfo = dict(classes=classes)

det_train_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='Pad', size=(image_size, image_size)),
    dict(type='LumenDetPrompts', num_absent=None),
    dict(type='PackLumenInputs'),
]
# Test pipelines load with mmcv's LoadImageFromFile, the step mmdet's
# DetInferencer looks for to read images it is given; training keeps
# LumenLoadImageFromFile's errors naming a corrupt file and the fix.
det_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='Pad', size=(image_size, image_size)),
    dict(type='LumenDetPrompts', test_mode=True),
    dict(type='PackLumenInputs'),
]
ground_train_pipeline = [
    dict(type='LumenLoadImageFromFile'),
    dict(
        type='LoadAnnotations', with_bbox=False, with_label=False,
        with_mask=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='Pad', size=(image_size, image_size)),
    dict(type='LumenGroundPrompts'),
    dict(type='PackLumenInputs'),
]
ground_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='Pad', size=(image_size, image_size)),
    # after resizing: ground-truth boxes stay in the original frame
    dict(
        type='LoadAnnotations', with_bbox=False, with_label=False,
        with_mask=True),
    dict(type='LumenGroundPrompts'),
    dict(type='PackLumenInputs'),
]

det_train = dict(
    type='CocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/'),
    metainfo=metainfo,
    filter_cfg=dict(filter_empty_gt=False),
    return_classes=True,
    pipeline=det_train_pipeline)
ground_train = dict(
    type='LumenRefCocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_refs.json',
    split_file='annotations/refs_shapes.p',
    split='train',
    data_prefix=dict(img_path=''),
    # Every sentence of every referred object of an image, in one sample:
    # mmdet's 'random' draws one per object once, when the dataset loads,
    # and a third of the training sentences are never seen.
    text_mode='original',
    pipeline=ground_train_pipeline)
# Validation reads the val split of the same files, without augmentation.
det_val = dict(
    det_train,
    ann_file='annotations/instances_val.json',
    data_prefix=dict(img='val/'),
    filter_cfg=None,
    test_mode=True,
    pipeline=det_test_pipeline)
ground_val = dict(
    ground_train,
    split='val',
    text_mode='original',
    test_mode=True,
    pipeline=ground_test_pipeline)

train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    # tasks at their rates, every item of a dataset once before any twice
    sampler=dict(type='LumenMultiTaskSampler'),
    dataset=dict(
        type='LumenMultiTaskDataset',
        datasets=dict(det=det_train, ground=ground_train),
        # an image asks all 6 classes for detection and 3.7 sentences on
        # average for grounding: equal rates keep detection from being
        # crowded out (docs/studies/det_ground.md)
        sample_rates=dict(det=0.5, ground=0.5),
        num_samples=4000))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    # LumenConcatDataset, not mmdet's ConcatDataset: one metainfo (a dict, as
    # visualizers read it), and `pipeline`, what DetInferencer and
    # inference_detector run on an image of their own: detection, with the
    # names they are given (texts='circle . square')
    dataset=dict(
        type='LumenConcatDataset',
        datasets=[det_val, ground_val],
        pipeline=det_test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    # mmdet's MultiDatasetsEvaluator, which also runs the metric that mmdet's
    # tools/test.py --out appends (the dump of the predictions)
    type='LumenMultiDatasetsEvaluator',
    metrics=[
        dict(
            type='CocoMetric',
            ann_file=data_root + 'annotations/instances_val.json',
            metric='bbox'),
        dict(type='GroundingMetric'),
    ],
    dataset_prefixes=['shapes_det', 'shapes_ground'])
test_evaluator = val_evaluator
