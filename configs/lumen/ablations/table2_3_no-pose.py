# Table 2 #3: no pose data (detection, grounding, VQA).
# Paper: RefCOCOg val Acc@0.5 75.0, COCO AP50 44.0 (Table 2's COCO column is
# the AP50 of Table 3, 43.4 for the default).
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
train_dataloader = dict(dataset=dict(sample_rates=dict(pose=0)))
