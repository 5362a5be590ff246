# Table 1, visual grounding on RefCOCOg (umd) val: one box per sentence.
# Paper (Lumen-7B): Acc@0.5 83.5.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(
    dataset=dict(_delete_=True, **_base_.refcocog_ground_val))
test_evaluator = dict(_delete_=True, type='GroundingMetric')
