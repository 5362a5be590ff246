# The all-task config with grounding sampled 0.32 instead of the paper's
# 0.19, and what lifts grounding in the det + ground config: every sentence
# of an image in one sample and the aligner's spatial context (README, "More
# grounding"). Grounding Acc@0.5 0.501 and cIoU 0.362, against 0.428 / 0.285
# at the paper's rates; the rates alone gave 0.420 / 0.280 and every sentence
# with the context alone 0.454 / 0.303 (seed 0). Seed 1 gave 0.479 / 0.332.
# Training took 44 min 12 s (seed 0), over issue 4's 40-minute budget, and
# 19 min 9 s on a faster day (seed 1). Those runs had the tokenizer before
# its fix and no flips; with both, seed 0 gave 0.457 / 0.311 (README,
# "Flips"). None had the word loss, which this config now inherits and the
# base config needs no extra grounding with (Acc@0.5 0.601).
_base_ = './lumen_tiny_shapes_all_tasks.py'
model = dict(neck=dict(spatial_context=(1, )))
# the every-sentence-and-context run at the paper's rates ended with pose AP
# 0.369 with the default betas and 0.880 with these (one pair of runs)
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.95)))
# measured at 1300 iterations, the main config's number then (the schedule
# is restated: the base's was evaluated with its own max_iters)
max_iters = 1300
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         eta_min_ratio=0.02),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
train_dataloader = dict(
    dataset=dict(
        datasets=dict(
            ground=dict(text_mode='original'),
            refseg=dict(text_mode='original')),
        # pose at 0.08 fell to AP 0.355 (the rates-alone run)
        sample_rates=dict(
            det=0.28, seg=0.14, count=0.10, ground=0.20, refseg=0.12,
            pose=0.12, vqa=0.04)))
