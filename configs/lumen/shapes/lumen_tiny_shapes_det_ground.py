# Lumen-Shapes, detection + visual grounding, tiny model on a CPU (issue 3):
# the tiny Lumen (conv aligner), det/ground mixed 0.5/0.5, 1200 iterations:
# bbox AP50 0.684 / 0.662, grounding Acc@0.5 0.646 / 0.557 (seeds 0 / 1).
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/lumen_tiny.py',
    '../_base_/datasets/lumen_shapes.py', '../_base_/schedules/cpu_tiny.py'
]
# What lies to each side of every patch, and anywhere in the image, after
# the aligner's first convolution ("the left-most square", "the star to the
# right of the yellow cross", "the bigger star"): grounding Acc@0.5
# 0.505 / 0.470 vs 0.455 / 0.399, bbox AP50 0.687 / 0.698 vs 0.666 / 0.636
# (seeds 0 / 1, 1200 iterations, CPU; one sentence per object, det / ground
# 0.4 / 0.6).
model = dict(neck=dict(spatial_context=(1, )))
