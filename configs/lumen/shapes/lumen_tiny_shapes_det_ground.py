# Lumen-Shapes, detection + visual grounding, tiny model on a CPU (issue 3).
#
# The aligner is the convolutional one of the paper's Table 3a. With a
# randomly initialised LMM the [LOC] states of different prompts start almost
# equal (relative spread 0.5% after 300 iterations), and the conv aligner,
# which multiplies every patch feature by the [LOC] embedding, breaks that
# symmetry much sooner: bbox AP50 0.343 vs 0.165 (transformer + 2 convs) and
# 0.089 (transformer alone) after 600 iterations, measured on one H200 with
# the configs beside this one. The paper's finding (transformer > conv) was
# made with pretrained CLIP and Vicuna.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/lumen_tiny.py',
    '../_base_/datasets/lumen_shapes.py', '../_base_/schedules/cpu_tiny.py'
]
# Dilations (1, 2, 4) let the three convolutions see 15 x 15 patches, which
# relations ("left of the yellow cross") need: grounding Acc@0.5 0.455 vs
# 0.410 with plain 3x3 convolutions, bbox AP50 0.598 vs 0.646 (1200
# iterations each, this CPU).
model = dict(
    neck=dict(
        _delete_=True,
        type='ConvDenseAligner',
        embed_dim=128,
        num_convs=3,
        dilations=(1, 2, 4)))
