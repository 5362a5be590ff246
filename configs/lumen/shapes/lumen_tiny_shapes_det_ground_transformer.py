# Table 3a on Lumen-Shapes: the paper's transformer aligner instead of the
# conv one, with two 3x3 convolutions on the patch tokens before the
# read-out (docs/studies/det_ground.md).
_base_ = './lumen_tiny_shapes_det_ground.py'
model = dict(
    neck=dict(
        _delete_=True,
        type='TransformerDenseAligner',
        embed_dim=128,
        depth=2,
        num_heads=4,
        mlp_dim=512,
        num_convs=2,
        text_norm_cfg=dict(type='BN1d')))
