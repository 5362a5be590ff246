# Table 3e: 30k training iterations.
# Paper: COCO det AP 31.8 / AP50 48.3 / AP75 31.9.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 30000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=500, end=max_iters,
         eta_min=0.0),
]
