# Table 3c: the aligner reads SAM ViT-H/16 image embeddings (the mask head's
# frozen encoder, 64 x 64 cells of 7 px at 448) instead of CLIP ViT-L/14.
# The LMM still sees CLIP's tokens.
# Paper: COCO det AP 12.3 / AP50 20.0 / AP75 12.6.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(aligner_features='sam')
