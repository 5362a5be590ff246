# Table 3d: K = 100 peaks per class for detection (a test-time setting; the
# model is the 10k default).
# Paper: COCO det AP 27.4 / AP50 43.4 / AP75 27.1.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(test_cfg=dict(det=dict(topk=100)))
