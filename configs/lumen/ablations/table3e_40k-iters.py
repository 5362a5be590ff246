# Table 3e: 40k training iterations, a run of its own (not the 40k checkpoint
# of a longer run; see table3e_10k-iters.py).
# Paper: COCO det AP 33.0 / AP50 50.4 / AP75 33.0.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 40000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the paper's warm-up and cosine, ending at this config's last iteration
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
