# Table 3e: 40k training iterations.
# Paper: COCO det AP 33.0 / AP50 50.4 / AP75 33.0.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 40000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=500, end=max_iters,
         eta_min=0.0),
]
