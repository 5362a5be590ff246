# The main job (`make shapes`): the all-task config with
# - an additional high-resolution encoder for the aligner (mmdet's ResNet
#   stem and first stage, stride 4), whose [LOC]-modulated features correct
#   the heatmap and wh maps: counting's 6-14 px shapes need more than 8 px
#   patches (docs/studies/high_res_encoder.md);
# - counting sampled 0.45 for 3000 iterations: a counting image asks one
#   prompt where a detection image asks six (docs/studies/counting_samples.md);
# - training steps under bfloat16 autocast, to fit the 40-minute budget,
#   with the LLM and the [LOC] projection in float32
#   (docs/studies/bf16_cpu.md).
# Measured numbers (data seeds 0-3, training seeds 0-2):
# configs/lumen/README.md.
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
    # corrections that start away from zero let the gradient reach the
    # encoder from the first step
    neck=dict(high_res_embed_dim=64, high_res_zero_init=False),
    # the best count threshold on the first 300 training counting images
    test_cfg=dict(count=dict(score_thr=0.5)))
# the schedule base's warm-up and cosine, ending at this config's last
# iteration
max_iters = 3000
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the training step under bfloat16 autocast (weights, gradients, AdamW and
# evaluation stay float32), but for the LLM and the [LOC] projection: a
# relation's small share of the [LOC] state is lost to bfloat16 rounding
# (docs/studies/bf16_cpu.md)
optim_wrapper = dict(
    type='CpuAmpOptimWrapper',
    float32_modules=['backbone.llava.model.language_model', 'neck.text_proj'])
train_dataloader = dict(
    dataset=dict(
        sample_rates=dict(det=0.12, seg=0.06, count=0.45, pose=0.12)))
