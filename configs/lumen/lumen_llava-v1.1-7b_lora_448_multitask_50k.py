# Lumen-7B as trained in the paper (Sec. 4.1): LLaVA-1.1-7B + LoRA, 448-px
# aligner features; detection (COCO, Objects365, OpenImages), grounding
# (RefCOCO/+/g), pose (COCO keypoints, AI Challenger) and VQA
# (LLaVA-Instruct-150k) sampled 0.56 / 0.19 / 0.19 / 0.06, detection's images
# also asked for instance masks and grounding's for referring masks (trained
# on their boxes, as the paper: Sec. 4.1.1); AdamW with weight
# decay 0, batch 20 per GPU on 8 GPUs, 50k iterations, bf16, gradient
# checkpointing (schedule: _base_/schedules/lora_50k.py); checkpoints hold
# only what trains (LoRA, new token rows, aligner, heads).
#
#   tools/dist_train.sh \
#       configs/lumen/lumen_llava-v1.1-7b_lora_448_multitask_50k.py 8
#
# Should reproduce Table 1 (Lumen-7B) with the test configs beside this one:
# COCO det AP 33.9 / AP50 51.2 / AP75 34.2, COCO instance seg 29.1 / 47.5 /
# 29.6, COCO pose 65.4 / 90.4 / 72.2, RefCOCOg val grounding Acc@0.5 83.5,
# RefCOCOg val referring seg cIoU 64.0.
_base_ = [
    './_base_/default_runtime.py', './_base_/models/lumen_llava-v1.1-7b.py',
    './_base_/datasets/lumen_paper_448.py', './_base_/schedules/lora_50k.py'
]

# -- data --------------------------------------------------------------------
# "batch size 20" on 8 GPUs: read as 20 images per GPU (20 does not split
# over 8 GPUs), 160 in all.
train_dataloader = dict(
    batch_size=20,
    num_workers=8,
    persistent_workers=True,
    # tasks at their rates, every item of a dataset once before any twice
    sampler=dict(type='LumenMultiTaskSampler'),
    dataset=dict(
        type='LumenMultiTaskDataset',
        datasets=dict(
            det=dict(
                type='LumenConcatDataset',
                datasets=[
                    {{_base_.coco_det_train}}, {{_base_.objects365_train}},
                    {{_base_.openimages_train}}
                ]),
            # "Respond with masks" on the detection images: a mask task's
            # heatmaps are detection's, built from boxes (Sec. 4.1.1)
            seg=dict(
                type='LumenConcatDataset',
                datasets=[
                    {{_base_.coco_seg_train}},
                    {{_base_.objects365_seg_train}},
                    {{_base_.openimages_seg_train}}
                ]),
            ground=dict(
                type='LumenConcatDataset',
                datasets=[
                    {{_base_.refcoco_train}}, {{_base_.refcoco_plus_train}},
                    {{_base_.refcocog_train}}
                ]),
            refseg=dict(
                type='LumenConcatDataset',
                datasets=[
                    {{_base_.refcoco_refseg_train}},
                    {{_base_.refcoco_plus_refseg_train}},
                    {{_base_.refcocog_refseg_train}}
                ]),
            pose=dict(
                type='LumenConcatDataset',
                datasets=[
                    {{_base_.coco_pose_train}}, {{_base_.aic_pose_train}}
                ]),
            vqa={{_base_.llava_instruct_train}}),
        # Sec. 4.1.3 (VQA: LM loss only); seg halves det's 0.56, refseg
        # ground's 0.19: the paper lists them with those tasks (Sec. 4.1.1)
        sample_rates=dict(det=0.28, seg=0.28, ground=0.095, refseg=0.095,
                          pose=0.19, vqa=0.06),
        # Within a task each dataset is drawn by its size (the paper lists
        # each task's datasets, not their shares); source_weights=dict(
        # det=[...]) sets them. 8 epochs of 1M draws make the 50k x 160.
        num_samples=1000000))
# Validation every 10k iterations (Table 3e's 10k-50k are separate runs): COCO
# detection and RefCOCOg val grounding, the two numbers of the ablations.
val_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='LumenConcatDataset',
        datasets=[{{_base_.coco_det_val}}, {{_base_.refcocog_ground_val}}],
        # what mmdet's DetInferencer and inference_detector run on an image
        pipeline={{_base_.det_test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(
    # also runs the dump mmdet's tools/test.py --out appends
    type='LumenMultiDatasetsEvaluator',
    metrics=[
        dict(
            type='LumenTaskMetric',
            task='det',
            metric=dict(
                type='CocoMetric',
                ann_file='data/coco/annotations/instances_val2017.json',
                metric='bbox')),
        dict(type='LumenTaskMetric', task='ground',
             metric=dict(type='GroundingMetric')),
    ],
    dataset_prefixes=['coco', 'refcocog'])
test_evaluator = val_evaluator

# -- runtime -----------------------------------------------------------------
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000,
                    max_keep_ckpts=5))
# each log line averages the iterations since the previous one
log_processor = dict(window_size=50)
custom_hooks = [
    dict(type='FlushDenormalHook'),
    dict(type='TrainableCheckpointHook')
]
# VQA-only or pose-only batches leave the box-size maps (or the aligner)
# without gradient on some ranks
find_unused_parameters = True
