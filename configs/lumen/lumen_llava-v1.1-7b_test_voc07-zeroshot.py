# Table 4, zero-shot detection on PASCAL VOC 2007 val (VOC is never
# trained on): every image is asked its 20 class names.
# Paper: the Table 4 value did not survive the text extraction; the text
# says Lumen beats InstructCV by 17.0 AP there. mmdet's VOCMetric reports
# mAP at IoU 0.5 (11-point, the VOC 2007 protocol).
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_50k.py'
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.voc07_val))
test_evaluator = dict(
    _delete_=True, type='VOCMetric', metric='mAP', eval_mode='11points')
