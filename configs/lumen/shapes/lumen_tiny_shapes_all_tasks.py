# Lumen-Shapes, every task trained together (issue 4): detection, instance
# segmentation, counting, grounding, referring segmentation, pose and VQA
# with the paper's sampling rates (see the dataset base).
#
# No pretrained SAM can be loaded here, so a tiny SAM learns its mask
# decoder (and encoders) from the ground-truth boxes: the paper's "trained
# mask decoder" ablation. With an official checkpoint, set
# mask_head=dict(sam_type='vit_h', checkpoint=..., train_decoder=False).
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/lumen_tiny.py',
    '../_base_/datasets/lumen_shapes_all_tasks.py',
    '../_base_/schedules/cpu_tiny.py'
]
model = dict(
    mask_head=dict(
        type='SamMaskHead',
        sam_type='tiny',
        tiny=dict(img_size=128),
        train_decoder=True,
        train_encoder=True))
# Seven tasks cost more per iteration than detection and grounding (more
# prompts per image, SAM): 1400 iterations fit the 40-minute CPU budget.
max_iters = 1400
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         eta_min_ratio=0.02),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
