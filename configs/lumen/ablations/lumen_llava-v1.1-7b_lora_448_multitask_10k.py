# The ablation default (Sec. 4.3): the paper model trained 10k iterations
# instead of 50k. Every config of this folder changes one thing of it.
# Paper: COCO det AP 27.4 / AP50 43.4 / AP75 27.1 (Table 3a-d);
# RefCOCOg val Acc@0.5 73.8 and COCO AP50 43.4 (Table 2, #5).
_base_ = '../lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
max_iters = 10000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the paper's warm-up and cosine, ending at this config's last iteration
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
