# Lumen-Shapes, every task trained together: detection, instance
# segmentation, counting, grounding, referring segmentation, pose and VQA at
# the paper's sampling rates (see the dataset base). Measured numbers:
# configs/lumen/README.md; how they were reached: docs/studies/all_tasks.md.
#
# No pretrained SAM is loaded here, so a tiny SAM learns its mask decoder
# (and encoders) from the ground-truth boxes: the paper's "trained mask
# decoder" ablation. With an official checkpoint, set
# mask_head=dict(sam_type='vit_h', checkpoint=..., train_decoder=False).
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/lumen_tiny.py',
    '../_base_/datasets/lumen_shapes_all_tasks.py',
    '../_base_/schedules/cpu_tiny.py'
]
model = dict(
    # Counting's small shapes often have their centres in neighbouring
    # patches, where 3x3 peak selection keeps one peak of two: reading each
    # patch out as 2 x 2 cells (stride 4) separates them.
    neck=dict(upsample=2),
    # Each image's heatmap loss over its own peaks, then the mean over
    # images, so that each task weighs by its sampling rate rather than by
    # its number of peaks (a counting image holds ~22 of them).
    bbox_head=dict(loss_norm='image'),
    # An LLM trained from scratch carries only the class word of a sentence
    # into [LOC]; asking the [LOC] state to name its description's words
    # keeps colours, sides and anchors (docs/studies/loc_words.md).
    loc_words_loss=dict(type='LocWordsLoss'),
    mask_head=dict(
        type='SamMaskHead',
        sam_type='tiny',
        tiny=dict(img_size=128),
        train_decoder=True,
        train_encoder=True),
    # peaks counted above this score, chosen on the first 300 training
    # counting images (for an earlier model; docs/studies/all_tasks.md)
    test_cfg=dict(count=dict(score_thr=0.35)))
# as many iterations as fit the 40-minute budget on a 2-core CPU; the
# schedule base's warm-up and cosine, ending at this config's last iteration
max_iters = 2400
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# One sentence per referred object, drawn anew each time an image is
# fetched ('resample'; mmdet's 'random' draws once, when the dataset loads):
# every training sentence is seen, at one prompt per object
# (docs/studies/sentence_sampling.md).
train_dataloader = dict(
    dataset=dict(
        datasets=dict(
            ground=dict(type='LumenRefCocoDataset', text_mode='resample'),
            refseg=dict(type='LumenRefCocoDataset', text_mode='resample'))))
