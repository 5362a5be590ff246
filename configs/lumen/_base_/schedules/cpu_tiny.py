# A short CPU schedule: AdamW (the paper's optimiser, weight decay 0), linear
# warm-up, cosine decay. The paper's learning rate was lost from its text; a
# tiny model trained from scratch wants a larger one than LoRA on a 7B LMM.
max_iters = 1200
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0),
    clip_grad=dict(max_norm=1.0))
# The cosine's end is explicit, so a config that trains longer restates the
# schedule. mmengine's Runner would end it at the train loop's max_iters if
# it had none, but a short run (train_cfg.max_iters=3 in the tests) then
# fails with end < begin.
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
