# A short CPU schedule: AdamW (the paper's optimiser, weight decay 0), linear
# warm-up, cosine decay. The paper's learning rate was lost from its text; a
# tiny model trained from scratch wants a larger one than LoRA on a 7B LMM.
max_iters = 1200
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0),
    clip_grad=dict(max_norm=1.0))
# The cosine's end is explicit (without one mmengine ends it at the loop's
# max_iters, and a 3-iteration test run fails with end < begin). It is
# evaluated here, with this file's max_iters, so a config that trains longer
# moves only the end:
#   param_scheduler = [_base_.param_scheduler[0],
#                      dict(_base_.param_scheduler[1], end=max_iters)]
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         eta_min_ratio=0.02),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
