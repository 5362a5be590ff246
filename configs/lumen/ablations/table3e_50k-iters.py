# Table 3e: 50k training iterations, the main config's schedule; like the
# other four, a run of its own (see table3e_10k-iters.py).
# Paper: COCO det AP 33.9 / AP50 51.2 / AP75 34.2.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
max_iters = 50000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the paper's warm-up and cosine, ending at this config's last iteration
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
