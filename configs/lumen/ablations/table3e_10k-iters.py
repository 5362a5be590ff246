# Table 3e: 10k training iterations.
# Paper: COCO det AP 27.7 / AP50 43.4 / AP75 27.1 (Tables 3a-d give 27.4
# for the same 10k model). The five are also the 10k-50k checkpoints of one
# 50k run: tools/test.py on its iter_<N>.pth.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 10000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=500, end=max_iters,
         eta_min=0.0),
]
