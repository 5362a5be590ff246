# The paper's schedule (Sec. 4.1): AdamW with weight decay 0, bf16, 50k
# iterations. The paper's learning rate was lost from its text; 2e-4 is
# LLaVA's LoRA rate. Linear warm-up, then cosine decay to 0 at the last
# iteration. A config that trains longer or shorter moves only the cosine's
# end (mmengine evaluates `end=max_iters` here, with this file's max_iters):
#   max_iters = 10000
#   train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
#   param_scheduler = [_base_.param_scheduler[0],
#                      dict(_base_.param_scheduler[1], end=max_iters)]
max_iters = 50000
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.0),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=500, end=max_iters,
         eta_min=0.0),
]
# validation every 10k iterations (Table 3e's 10k-50k are separate runs)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# the paper's batch: 20 images per GPU on 8 GPUs
auto_scale_lr = dict(enable=False, base_batch_size=160)
