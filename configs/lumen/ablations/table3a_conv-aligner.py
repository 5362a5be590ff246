# Table 3a, "Conv.": the [LOC] state fused with every patch feature by two
# convolutional layers instead of the transformer aligner (lumen_mm's conv
# aligner modulates each patch by the projected [LOC] state).
# Paper: COCO det AP 15.3 / AP50 26.9 / AP75 14.0.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(
    neck=dict(
        _delete_=True, type='ConvDenseAligner', embed_dim=256, num_convs=2))
