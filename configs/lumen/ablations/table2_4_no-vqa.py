# Table 2 #4: no VQA data (detection, grounding, pose).
# Paper: RefCOCOg val Acc@0.5 73.6, COCO AP50 43.3 (Table 2's COCO column is
# the AP50 of Table 3, 43.4 for the default).
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
train_dataloader = dict(dataset=dict(sample_rates=dict(vqa=0)))
