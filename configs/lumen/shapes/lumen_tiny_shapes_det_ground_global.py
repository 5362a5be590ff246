# Lumen-Shapes det + ground with one global self-attention layer after the
# conv aligner's convolutions, so that every patch sees the whole image
# (extremes such as "the left-most square" compare all objects). The layer
# costs time: 1000 iterations keep generation, training and testing within
# the 30-minute CPU budget of issue 3.
_base_ = './lumen_tiny_shapes_det_ground.py'
model = dict(neck=dict(global_layers=1))
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         eta_min_ratio=0.02),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
