# Table 3d: K = 20 peaks per class for detection (a test-time setting; the
# model is the 10k default).
# Paper: COCO det AP 25.7 / AP50 40.5 / AP75 25.4.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(test_cfg=dict(det=dict(topk=20)))
