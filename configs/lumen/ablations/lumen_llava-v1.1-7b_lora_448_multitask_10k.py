# The ablation default (Sec. 4.3): the paper model trained 10k iterations
# instead of 50k. Every config of this folder changes one thing of it.
# Paper: COCO det AP 27.4 / AP50 43.4 / AP75 27.1 (Table 3a-d);
# RefCOCOg val Acc@0.5 73.8 and COCO AP50 43.4 (Table 2, #5).
_base_ = '../lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
max_iters = 10000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=500, end=max_iters,
         eta_min=0.0),
]
