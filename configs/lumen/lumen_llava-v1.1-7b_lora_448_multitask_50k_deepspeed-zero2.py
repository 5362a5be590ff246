# The paper model (./lumen_llava-v1.1-7b_lora_448_multitask_50k.py)
# trained with DeepSpeed ZeRO-2 instead of DDP. Paper: the same Table 1
# numbers (COCO det AP 33.9, RefCOCOg val grounding Acc@0.5 83.5, ...).
_base_ = [
    './lumen_llava-v1.1-7b_lora_448_multitask_50k.py',
    './_base_/strategies/deepspeed_zero2.py'
]
runner_type = 'FlexibleRunner'  # the strategy's runner
optim_wrapper = dict(
    _delete_=True,
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.0))
