# The paper model (./lumen_llava-v1.1-7b_lora_448_multitask_50k.py)
# trained with PyTorch FSDP instead of DDP; bf16 comes from the strategy's
# mixed precision. Paper: the same Table 1 numbers (COCO det AP 33.9,
# RefCOCOg val grounding Acc@0.5 83.5, ...).
_base_ = [
    './lumen_llava-v1.1-7b_lora_448_multitask_50k.py',
    './_base_/strategies/fsdp.py'
]
runner_type = 'FlexibleRunner'  # the strategy's runner
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.0),
    clip_grad=dict(max_norm=1.0))
