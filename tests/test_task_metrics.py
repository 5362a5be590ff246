"""Referring-segmentation, counting and pose metrics."""
import json

import numpy as np
import pytest
import torch
from mmdet.registry import METRICS
from mmdet.structures.mask import BitmapMasks

import lumen_mm  # noqa: F401  (registration)


def masks(*boxes, size=(10, 10)):
    """Bool masks (n, H, W), one filled rectangle (x0, y0, x1, y1) each."""
    out = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        out[i, y0:y1, x0:x1] = True
    return out


def test_refseg_ciou_miou_and_other_tasks():
    metric = METRICS.build(dict(type='LumenRefSegMetric'))
    gt = masks((0, 0, 4, 5), (0, 0, 10, 10))  # areas 20, 100
    pred = masks((0, 0, 2, 5), (0, 0, 10, 10))  # IoU 0.5, 1.0
    samples = [
        # sentences answered out of order, matched by their labels
        dict(task='refseg', gt_masks=BitmapMasks(gt.numpy(), 10, 10),
             pred_instances=dict(masks=pred.flip(0),
                                 labels=torch.tensor([1, 0]))),
        # gt in gt_instances, predictions in sentence order
        dict(gt_instances=dict(masks=gt[:1]),
             pred_instances=dict(masks=torch.zeros(1, 10, 10))),
    ]
    metric.process({}, samples)
    result = metric.evaluate(2)
    # cIoU = (10 + 100 + 0) / (20 + 100 + 20); mIoU = (0.5 + 1 + 0) / 3
    assert result['refseg/cIoU'] == pytest.approx(110 / 140)
    assert result['refseg/mIoU'] == pytest.approx(0.5)


def test_refseg_missing_prediction_counts_as_zero_and_errors():
    metric = METRICS.build(dict(type='LumenRefSegMetric'))
    gt = masks((0, 0, 5, 5), (5, 5, 10, 10))
    metric.process({}, [dict(task='refseg', gt_masks=gt,
                             pred_instances=dict(masks=gt[1:],
                                                 labels=torch.tensor([1])))])
    assert metric.evaluate(1) == pytest.approx(
        {'refseg/cIoU': 0.5, 'refseg/mIoU': 0.5})
    with pytest.raises(ValueError, match='one mask per sentence'):
        metric.process({}, [dict(gt_masks=gt,
                                 pred_instances=dict(masks=gt[:1]))])
    with pytest.raises(ValueError, match='original image size'):
        metric.process({}, [dict(gt_masks=gt, pred_instances=dict(
            masks=torch.zeros(2, 5, 5)))])


def test_counting_mae_rmse():
    metric = METRICS.build(dict(type='CountingMetric'))
    metric.process({}, [
        dict(pred_count=5, gt_count=7),
        dict(pred_count=torch.tensor(10), gt_count=9),
        dict(pred_count=3, gt_count=3),
    ])
    result = metric.evaluate(3)
    assert result['count/mae'] == pytest.approx(1.0)
    assert result['count/rmse'] == pytest.approx(np.sqrt(5 / 3))
    with pytest.raises(ValueError, match=r"lacks \['pred_count'\]"):
        metric.process({}, [dict(gt_count=2)])


NAMES = ['head', 'neck', 'hip', 'left_foot', 'right_foot']
PEOPLE = {  # annotation id -> keypoints (x, y) of one person in image 1
    11: [[20, 10], [20, 20], [20, 40], [12, 60], [28, 60]],
    12: [[70, 15], [70, 25], [70, 45], [62, 70], [78, 70]],
}


@pytest.fixture
def keypoint_files(tmp_path):
    anns = []
    for ann_id, points in PEOPLE.items():
        xy = np.array(points, float)
        x0, y0 = xy.min(0) - 5
        x1, y1 = xy.max(0) + 5
        anns.append(dict(
            id=ann_id, image_id=1, category_id=1, iscrowd=0,
            num_keypoints=len(points), area=float((x1 - x0) * (y1 - y0)),
            bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            keypoints=[v for x, y in points for v in (x, y, 2)]))
    ann_file = tmp_path / 'keypoints.json'
    ann_file.write_text(json.dumps(dict(
        images=[dict(id=1, file_name='1.png', width=100, height=100)],
        annotations=anns,
        categories=[dict(id=1, name='person', keypoints=NAMES,
                         skeleton=[])])))
    metainfo = dict(
        dataset_name='stick_figures',
        keypoint_info={i: dict(name=n, id=i, color=[255, 0, 0], swap='')
                       for i, n in enumerate(NAMES)},
        skeleton_info={},
        joint_weights=[1.0] * len(NAMES),
        sigmas=[0.05] * len(NAMES))
    return str(ann_file), metainfo


def pose_sample(ann_id, bbox_scores=True):
    points = torch.tensor(PEOPLE[ann_id], dtype=torch.float)[None]
    pred = dict(keypoints=points, keypoint_scores=torch.ones(1, len(NAMES)),
                bboxes=torch.cat([points[0].min(0)[0], points[0].max(0)[0]])
                [None])
    if bbox_scores:
        pred['bbox_scores'] = torch.ones(1)
    return dict(img_id=1, id=ann_id, category_id=1, task='pose',
                pred_instances=pred)


def test_pose_two_people_of_one_image_counted_separately(keypoint_files):
    ann_file, metainfo = keypoint_files
    # as in a multi-task evaluation: wrapped, among samples of other tasks
    metric = METRICS.build(dict(
        type='LumenTaskMetric', task='pose', prefix='coco',
        metric=dict(type='LumenPoseMetric', ann_file=ann_file,
                    metainfo=metainfo)))
    metric.dataset_meta = dict(classes=('person', ))  # as an evaluator does
    assert metric.dataset_meta['num_keypoints'] == 5
    assert metric.dataset_meta['keypoint_id2name'][4] == 'right_foot'
    metric.process({}, [pose_sample(11), dict(task='det'),
                        pose_sample(12, bbox_scores=False)])
    both = metric.evaluate(3)
    assert both['coco/AP'] == pytest.approx(1.0)
    assert both['coco/AR'] == pytest.approx(1.0)

    metric.process({}, [pose_sample(12)])
    one = metric.evaluate(1)
    assert one['coco/AR'] == pytest.approx(0.5)
    assert one['coco/AP'] < 0.6


def test_pose_flip_collapse_counts_pairs_predicted_at_one_point(
        keypoint_files):
    ann_file, metainfo = keypoint_files
    info = metainfo['keypoint_info']
    info[3]['swap'], info[4]['swap'] = 'right_foot', 'left_foot'
    metric = METRICS.build(dict(type='LumenPoseMetric', ann_file=ann_file,
                                metainfo=metainfo))
    metric.dataset_meta = dict(classes=('person', ))
    collapsed = pose_sample(12)
    # both feet at the right foot, as when "left foot" and "right foot"
    # give the aligner one [LOC] state
    collapsed['pred_instances']['keypoints'][0, 3] = torch.tensor([77., 70.])
    metric.process({}, [pose_sample(11), collapsed])
    result = metric.evaluate(2)
    assert result['coco/flip_collapse'] == pytest.approx(0.5)
    assert result['coco/AP'] < 1.0

    metric.process({}, [pose_sample(11), pose_sample(12)])
    assert metric.evaluate(2)['coco/flip_collapse'] == 0.0

    # a person from a detection-results file names no annotation: not
    # compared with another person's keypoints
    detected = pose_sample(11)
    detected['id'] = 0
    metric.process({}, [detected, collapsed])
    assert metric.evaluate(2)['coco/flip_collapse'] == 1.0

    # keypoints without left / right pairs report no share
    info[3]['swap'] = info[4]['swap'] = ''
    plain = METRICS.build(dict(type='LumenPoseMetric', ann_file=ann_file,
                               metainfo=metainfo))
    plain.dataset_meta = dict(classes=('person', ))
    plain.process({}, [pose_sample(11)])
    assert 'coco/flip_collapse' not in plain.evaluate(1)


def test_pose_bad_input(keypoint_files):
    ann_file, metainfo = keypoint_files
    with pytest.raises(ValueError, match='names 5 keypoints'):
        METRICS.build(dict(type='LumenPoseMetric', ann_file=ann_file))
    metric = METRICS.build(dict(type='LumenPoseMetric', ann_file=ann_file,
                                metainfo=metainfo))
    sample = pose_sample(11)
    sample['pred_instances']['keypoints'] = torch.zeros(2, 5, 2)
    with pytest.raises(ValueError, match=r'\(1, 5, 2\)'):
        metric.process({}, [sample])
    sample = pose_sample(11)
    del sample['id']
    with pytest.raises(ValueError, match="annotation id"):
        metric.process({}, [sample])


def test_vqa_accuracy_per_question_kind(tmp_path):
    """Lumen-Shapes' questions carry their kind (``type``): the metric
    reports each kind's accuracy beside the overall one."""
    from lumen_mm.datasets import LumenVQADataset
    items = [dict(id=str(i), image='a.png', type=kind, conversations=[
        dict(**{'from': 'human', 'value': '<image>\nQ?'}),
        dict(**{'from': 'gpt', 'value': answer})])
        for i, (kind, answer) in enumerate(
            [('count', '2'), ('count', '3'), ('colour', 'red')])]
    (tmp_path / 'qa.json').write_text(json.dumps(items))
    data = LumenVQADataset(ann_file=str(tmp_path / 'qa.json'), pipeline=[],
                           lazy_init=True).load_data_list()
    assert [d['question_type'] for d in data] == ['count', 'count', 'colour']
    metric = METRICS.build(dict(type='VQAMetric'))
    metric.process({}, [
        dict(pred_text=p, answers=[a], question_type=d['question_type'])
        for d, p, a in zip(data, ['2', '4', 'Red.'], ['2', '3', 'red'])])
    assert metric.evaluate(3) == {'vqa/accuracy': 2 / 3,
                                  'vqa/accuracy_count': 0.5,
                                  'vqa/accuracy_colour': 1.0}
