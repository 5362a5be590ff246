# Counting on FSC-147 test (Sec. 4.4.2), a task Lumen never trains on: 100
# peaks for the asked class, those above the score threshold counted.
# Paper: qualitative only (Fig. 4), no number to reproduce; reports MAE and
# RMSE.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.fsc147_test))
test_evaluator = dict(_delete_=True, type='CountingMetric')
