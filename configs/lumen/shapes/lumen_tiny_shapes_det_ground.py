# Lumen-Shapes, detection + visual grounding, tiny model on a CPU (issue 3):
# the tiny Lumen (conv aligner), det/ground mixed 0.4/0.6, 1200 iterations.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/lumen_tiny.py',
    '../_base_/datasets/lumen_shapes.py', '../_base_/schedules/cpu_tiny.py'
]
