# Table 1, object detection on COCO val2017 with the model of
# ./lumen_llava-v1.1-7b_lora_448_multitask_50k.py.
# Paper (Lumen-7B): AP 33.9 / AP50 51.2 / AP75 34.2.
#   python tools/test.py THIS_CONFIG work_dirs/<train>/iter_50000.pth
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
# 8 images per step: 14.1 images/s on one H200 against 6.1 at one
# (docs/benchmarks/README.md), in 21.4 GiB
test_dataloader = dict(
    batch_size=8, dataset=dict(_delete_=True, **_base_.coco_det_val))
test_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file='data/coco/annotations/instances_val2017.json',
    metric='bbox')
