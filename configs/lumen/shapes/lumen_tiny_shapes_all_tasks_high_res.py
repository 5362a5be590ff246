# The all-task config with an additional high-resolution encoder for the
# aligner (the paper's Table 3c tries SAM's ViT as one): mmdet's ResNet stem
# and first stage (stride 4, 32 channels), whose features, modulated by the
# [LOC] embedding, correct the heatmap and wh maps at the heatmap's grid
# (README, "A high-resolution encoder").
#
# It also leaves the paper's sampling rates for counting's sake (README,
# "Counting samples for the time"): counting is sampled 0.45 and detection,
# instance segmentation and pose 0.12 / 0.06 / 0.12 (main config: 0.10 and
# 0.30 / 0.16 / 0.19). A counting image asks one prompt, a detection or pose
# image six or seven: an iteration costs 8-12% less than with the previous
# mix (counting 0.32; detection, instance segmentation and pose 0.16 / 0.08
# / 0.19), and 3000 of them give counting 21600 samples, more than the
# 20800 with which counting alone reached MAE 0.88.
#
# Its training steps run under bfloat16 autocast (CpuAmpOptimWrapper), with
# eager attention: 0.71-0.75 s per iteration against 0.89 s in float32
# (README, "bfloat16 on the CPU"). `make shapes` trains this config.
#
# Seeds 0 / 1 / 2 (README): count MAE 1.31 / 1.34 / 1.33, bbox AP50 0.780
# / 0.753 / 0.775, segm AP50 0.759 / 0.728 / 0.741, Acc@0.5 0.618 / 0.627 /
# 0.603, cIoU 0.460 / 0.472 / 0.424, pose AP 0.966 / 0.969 / 0.960, VQA
# 0.414 / 0.398 / 0.398; trained in 36 min 44 s / 39 min 0 s / 37 min 8 s
# on the 2-core CPU. In float32, seeds 1 / 2: count MAE 1.30 / 1.46 (with
# counting 0.32 for 2400 iterations: 1.62 / 1.77), Acc@0.5 0.724 / 0.712,
# cIoU 0.544 / 0.527, in 46 minutes: the autocast seems to cost grounding
# and referring segmentation about 0.1 (README).
_base_ = './lumen_tiny_shapes_all_tasks.py'
model = dict(
    # eager attention: faster than SDPA under bfloat16 autocast on the CPU
    backbone=dict(attn_implementation='eager'),
    high_res_encoder=dict(
        type='ResNet',
        depth=18,
        num_stages=1,
        strides=(1, ),
        dilations=(1, ),
        out_indices=(0, ),
        base_channels=32,
        stem_channels=32,
        # trained from scratch: batch statistics, not frozen ones
        norm_eval=False),
    # Corrections that start away from zero let the gradient reach the
    # encoder from the first step (counting alone with a 16-channel encoder
    # and a 32-wide correction: count MAE 1.81 vs 2.24; README).
    neck=dict(high_res_embed_dim=64, high_res_zero_init=False),
    # chosen on the first 300 training counting images (bfloat16, seeds
    # 0 / 1 / 2: MAE 0.92 / 1.05 / 1.10 there; 1.12 / 1.16 / 1.27 at 0.45,
    # 0.97 / 1.05 / 1.14 at 0.55; float32, seeds 1 / 2: 1.06 / 0.93)
    test_cfg=dict(count=dict(score_thr=0.5)))
# the schedule is restated: the base's was evaluated with its own max_iters
max_iters = 3000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         eta_min_ratio=0.02),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# The training step under bfloat16 autocast (weights, gradients and AdamW
# in float32; evaluation in float32)
optim_wrapper = dict(type='CpuAmpOptimWrapper')
train_dataloader = dict(
    dataset=dict(
        sample_rates=dict(det=0.12, seg=0.06, count=0.45, pose=0.12)))
