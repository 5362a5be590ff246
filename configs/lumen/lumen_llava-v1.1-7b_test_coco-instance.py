# Table 1, instance segmentation on COCO val2017: boxes as for detection,
# then SAM ViT-H (frozen) prompted with each box and its centre point.
# Paper (Lumen-7B): mask AP 29.1 / AP50 47.5 / AP75 29.6.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.coco_seg_val))
test_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file='data/coco/annotations/instances_val2017.json',
    metric='segm')
