# Table 3e: 50k training iterations.
# Paper: COCO det AP 33.9 / AP50 51.2 / AP75 34.2.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 50000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=500, end=max_iters,
         eta_min=0.0),
]
