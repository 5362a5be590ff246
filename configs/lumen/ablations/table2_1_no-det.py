# Table 2 #1: no detection data (grounding, pose, VQA): the detection images
# also make the instance-segmentation conversations (Sec. 4.1.1), so both go.
# Paper: RefCOCOg val Acc@0.5 72.1, COCO AP50 25.0 (Table 2's COCO column is
# the AP50 of Table 3, 43.4 for the default).
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
train_dataloader = dict(dataset=dict(sample_rates=dict(det=0, seg=0)))
