# Table 2 #2: no grounding data (detection, pose, VQA): the grounding images
# also make the referring-segmentation conversations (Sec. 4.1.1), so both go.
# Paper: RefCOCOg val Acc@0.5 24.0, COCO AP50 39.8 (Table 2's COCO column is
# the AP50 of Table 3, 43.4 for the default).
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
train_dataloader = dict(dataset=dict(sample_rates=dict(ground=0, refseg=0)))
