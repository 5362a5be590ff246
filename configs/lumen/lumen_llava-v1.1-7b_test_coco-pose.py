# Table 1, pose estimation on COCO val2017 keypoints, top-down: each person
# box (ground truth here) is cropped, each keypoint asked by name, the best
# peak kept (K = 1).
# Paper (Lumen-7B): AP 65.4 / AP50 90.4 / AP75 72.2.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.coco_pose_val))
test_evaluator = dict(
    _delete_=True,
    type='LumenPoseMetric',
    ann_file='data/coco/annotations/person_keypoints_val2017.json',
    # one prediction per ground-truth person box: nothing to suppress
    nms_mode='none')
