# Table 3a, "Trans.": the light transformer aligner, the default.
# Paper: COCO det AP 27.4 / AP50 43.4 / AP75 27.1.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
