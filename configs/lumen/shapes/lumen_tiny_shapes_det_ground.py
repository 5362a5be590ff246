# Lumen-Shapes, detection + visual grounding only: the tiny Lumen (conv
# aligner), det / ground mixed 0.5 / 0.5, 1200 iterations. Measured numbers:
# configs/lumen/README.md; docs/studies/det_ground.md.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/lumen_tiny.py',
    '../_base_/datasets/lumen_shapes.py', '../_base_/schedules/cpu_tiny.py'
]
# Spatial context: after the aligner's first convolution every patch also
# sees what lies to each side of it and anywhere in the image, which
# relations and extremes need ("the left-most square", "the bigger star").
model = dict(neck=dict(spatial_context=(1, )))
