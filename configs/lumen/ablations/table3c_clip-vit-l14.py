# Table 3c: the aligner reads CLIP ViT-L/14 features (the LMM's own vision
# tower at 448 px), the default.
# Paper: COCO det AP 27.4 / AP50 43.4 / AP75 27.1.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
