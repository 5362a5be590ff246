"""Instruction samples from mmdet datasets (multi-task sampling:
test_multitask_sampling.py)."""
import numpy as np
import pytest

from lumen_mm.datasets import LumenDetPrompts


def test_det_prompts_present_plus_absent_classes():
    classes = ('circle', 'square', 'triangle', 'star')
    results = dict(text=classes, gt_bboxes_labels=np.array([2, 2, 0]))
    out = LumenDetPrompts(num_absent=1)(dict(results))
    assert out['task'] == 'det'
    assert {0, 2} <= set(out['prompt_labels'])
    assert len(out['prompt_labels']) == 3
    assert out['prompts'] == [classes[i] for i in out['prompt_labels']]
    everything = LumenDetPrompts(test_mode=True)(dict(results))
    assert everything['prompt_labels'] == [0, 1, 2, 3]
    with pytest.raises(KeyError, match='return_classes'):
        LumenDetPrompts()(dict(gt_bboxes_labels=np.array([0])))


def _shapes_refs(shapes_root, split: str) -> dict:
    """Arguments of a RefCocoDataset over the Lumen-Shapes expressions."""
    return dict(
        data_root=str(shapes_root),
        ann_file='annotations/instances_refs.json',
        split_file='annotations/refs_shapes.p',
        split=split,
        data_prefix=dict(img_path=''))


def test_ground_prompts_boxes_from_masks(shapes_root):
    from mmengine.registry import init_default_scope

    from mmdet.datasets import RefCocoDataset
    init_default_scope('mmdet')
    ds = RefCocoDataset(
        **_shapes_refs(shapes_root, 'val'),
        text_mode='original',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=False, with_label=False,
                 with_mask=True),
            dict(type='LumenGroundPrompts'),
        ])
    out = ds[0]
    n = len(out['prompts'])
    assert n == len(out['gt_bboxes']) and out['prompt_labels'] == list(range(n))
    masks = out['gt_masks'].masks
    for mask, box in zip(masks, out['gt_bboxes'].tensor.numpy()):
        ys, xs = np.nonzero(mask)
        assert box[0] == xs.min() and box[1] == ys.min()
        assert box[2] == xs.max() + 1 and box[3] == ys.max() + 1


def test_refcoco_resample_draws_one_sentence_per_object_each_fetch(
        shapes_root):
    import json
    from collections import defaultdict

    from mmengine.registry import init_default_scope

    from lumen_mm.datasets import LumenRefCocoDataset
    init_default_scope('mmdet')
    refs = _shapes_refs(shapes_root, 'train')
    every = LumenRefCocoDataset(text_mode='original', **refs)
    ds = LumenRefCocoDataset(text_mode='resample', **refs)
    assert len(ds) == len(every)
    np.random.seed(0)
    several = 0
    for idx in range(len(ds)):
        sentences = defaultdict(set)  # object (its mask) -> its sentences
        info = every.get_data_info(idx)
        for ins, text in zip(info['instances'], info['text']):
            sentences[json.dumps(ins['mask'])].add(text)
        several += sum(len(s) > 1 for s in sentences.values())
        seen = defaultdict(set)
        for _ in range(40):
            got = ds.get_data_info(idx)
            objects = [json.dumps(ins['mask']) for ins in got['instances']]
            assert sorted(objects) == sorted(sentences)  # one per object
            for obj, text in zip(objects, got['text']):
                assert text in sentences[obj]
                seen[obj].add(text)
        assert seen == sentences  # every sentence comes up
    assert several > 0  # the fixture has objects with several sentences


def test_referring_flip_keeps_each_sentence_on_its_object():
    from mmdet.structures.mask import BitmapMasks

    from lumen_mm.datasets import LumenGroundPrompts, RandomFlipReferring
    from lumen_mm.datasets.referring_flip import flip_sentence

    # two squares; the sentence refers to the upper left one
    img = np.zeros((20, 40, 3), np.uint8)
    mask = np.zeros((1, 20, 40), np.uint8)
    mask[0, 2:8, 2:8] = 1
    img[2:8, 2:8] = img[12:18, 30:36] = 255
    sample = dict(img=img, img_shape=(20, 40),
                  gt_masks=BitmapMasks(mask, 20, 40),
                  text=['the left-most square, above the other'])

    def flip(direction):
        out = LumenGroundPrompts()(RandomFlipReferring(
            prob=1., direction=direction)(dict(sample)))
        return out['prompts'], out['gt_bboxes'].tensor.tolist(), out['img']

    kept = LumenGroundPrompts()(RandomFlipReferring(prob=0.)(dict(sample)))
    assert kept['prompts'] == sample['text']
    assert kept['gt_bboxes'].tensor.tolist() == [[2., 2., 8., 8.]]

    # the referent moves to the other side, and the sentence says so
    prompts, boxes, flipped = flip('horizontal')
    assert prompts == ['the right-most square, above the other']
    assert boxes == [[32., 2., 38., 8.]]
    assert (flipped[2:8, 32:38] == 255).all()
    prompts, boxes, _ = flip('vertical')
    assert prompts == ['the left-most square, below the other']
    assert boxes == [[2., 12., 8., 18.]]
    prompts, boxes, _ = flip('diagonal')
    assert prompts == ['the right-most square, below the other']
    assert boxes == [[32., 12., 38., 18.]]

    assert flip_sentence('The star to the right of the leftmost cross') == \
        'The star to the left of the rightmost cross'
    assert flip_sentence('Left one, not the bright top one') == \
        'Right one, not the bright top one'
    assert flip_sentence('Top-most star, below the upper cross, stop',
                         'vertical') == \
        'Bottom-most star, above the lower cross, stop'
    with pytest.raises(ValueError, match='direction'):
        flip_sentence('the top star', 'sideways')
