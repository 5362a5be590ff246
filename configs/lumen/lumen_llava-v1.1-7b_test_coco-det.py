# Table 1, object detection on COCO val2017 with the model of
# ./lumen_llava-v1.1-7b_lora_448_multitask_50k.py.
# Paper (Lumen-7B): AP 33.9 / AP50 51.2 / AP75 34.2.
#   python tools/test.py THIS_CONFIG work_dirs/<train>/iter_50000.pth
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.coco_det_val))
test_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file='data/coco/annotations/instances_val2017.json',
    metric='bbox')
