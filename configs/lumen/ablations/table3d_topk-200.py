# Table 3d: K = 200 peaks per class for detection (a test-time setting; the
# model is the 10k default).
# Paper: COCO det AP 26.6 / AP50 42.6 / AP75 26.1.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(test_cfg=dict(det=dict(topk=200)))
