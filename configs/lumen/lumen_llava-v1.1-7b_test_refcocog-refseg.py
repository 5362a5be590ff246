# Table 1, referring segmentation on RefCOCOg (umd) val: the grounding box
# and its centre prompt SAM ViT-H (frozen).
# Paper (Lumen-7B): cIoU 64.0.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.refcocog_refseg_val))
test_evaluator = dict(_delete_=True, type='LumenRefSegMetric')
