# Table 3e: 30k training iterations, a run of its own (not the 30k checkpoint
# of a longer run; see table3e_10k-iters.py).
# Paper: COCO det AP 31.8 / AP50 48.3 / AP75 31.9.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 30000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the paper's warm-up and cosine, ending at this config's last iteration
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
