# Table 3a, "Conv.": the [LOC] state concatenated with every patch feature
# and fused by two convolutional layers, instead of the transformer aligner.
# Paper: COCO det AP 15.3 / AP50 26.9 / AP75 14.0.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(
    neck=dict(
        _delete_=True, type='ConvDenseAligner', embed_dim=256, num_convs=2,
        fusion='concat'))
