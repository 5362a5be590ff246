"""Prompts per training image (issue 32 item 6): ``max_prompts`` of the
prompt transforms caps them, present classes (visible keypoints) first;
None keeps every prompt, test mode asks everything, numpy's seed decides."""
import numpy as np
import pytest
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config

from conftest import REPO
from lumen_mm.datasets import (LumenDetPrompts, LumenGroundPrompts,
                               LumenPosePrompts)

CLASSES = tuple(f'class {i}' for i in range(20))
KEYPOINTS = tuple(f'point_{i}' for i in range(17))


def _det(labels, **kwargs) -> list:
    out = LumenDetPrompts(**kwargs)(
        dict(text=CLASSES, gt_bboxes_labels=np.array(labels, np.int64)))
    assert out['prompts'] == [CLASSES[i] for i in out['prompt_labels']]
    return out['prompt_labels']


def test_det_asks_present_classes_first_then_fills_with_absent():
    labels = _det([5, 2, 5, 7], max_prompts=8)
    assert len(labels) == 8 and {2, 5, 7} <= set(labels)
    assert labels == sorted(labels)
    # more present classes than the cap: a subset of them, no absent one
    many = list(range(12))
    labels = _det(many, max_prompts=4)
    assert len(labels) == 4 and set(labels) <= set(many)
    # an image without objects: absent classes only
    assert len(_det([], max_prompts=8)) == 8
    # num_absent still bounds the absent ones under the cap
    assert len(_det([5, 2], max_prompts=8, num_absent=3)) == 5
    assert set(_det([5, 2], max_prompts=8, num_absent=0)) == {2, 5}
    assert len(_det([5, 2, 7], max_prompts=4, num_absent=3)) == 4


def test_det_none_is_the_previous_behaviour():
    assert _det([3]) == list(range(20))  # every class
    np.random.seed(1)
    capped = _det([3, 9], num_absent=2)
    np.random.seed(1)
    # the same draw as before max_prompts existed: present + 2 absent
    absent = np.random.permutation(np.setdiff1d(np.arange(20), [3, 9]))[:2]
    assert capped == sorted([3, 9, *absent.tolist()])


def test_test_mode_asks_every_class():
    assert _det([3], max_prompts=4, test_mode=True) == list(range(20))
    assert _det([3], max_prompts=4, num_absent=1, task='seg',
                test_mode=True) == list(range(20))


def _ground_results(n: int) -> dict:
    """``n`` sentences, mask ``i`` a box at x = 2i (so boxes tell masks
    apart)."""
    masks = np.zeros((n, 16, 64), np.uint8)
    for i in range(n):
        masks[i, 2:8, 2 * i:2 * i + 3] = 1
    return dict(text=[f'the thing {i}' for i in range(n)],
                gt_masks=BitmapMasks(masks, 16, 64))


def test_ground_asks_a_subset_of_the_sentences_with_their_masks():
    out = LumenGroundPrompts(max_prompts=8)(_ground_results(12))
    assert len(out['prompts']) == 8 == len(out['gt_masks'])
    assert out['prompt_labels'] == list(range(8))
    assert out['gt_bboxes_labels'].tolist() == list(range(8))
    kept = [int(p.split()[-1]) for p in out['prompts']]
    assert kept == sorted(kept) and len(set(kept)) == 8
    # each prompt keeps its own referred object's box
    assert out['gt_bboxes'].tensor[:, 0].tolist() == [2 * i for i in kept]
    # under the cap, or with None, every sentence
    for cap in (8, None):
        out = LumenGroundPrompts('refseg', max_prompts=cap)(
            _ground_results(5))
        assert len(out['prompts']) == 5 and out['task'] == 'refseg'


def _pose(visible, **kwargs) -> list:
    flags = np.zeros((1, 17))
    flags[0, visible] = 1
    out = LumenPosePrompts(KEYPOINTS, **kwargs)(dict(
        img=np.zeros((32, 32, 3), np.uint8), bbox=np.zeros((1, 4)),
        transformed_keypoints=np.random.rand(1, 17, 2) * 32,
        keypoints_visible=flags))
    assert out['prompts'] == [KEYPOINTS[i].replace('_', ' ')
                              for i in out['prompt_labels']]
    assert out['gt_bboxes_labels'].tolist() == sorted(visible)
    return out['prompt_labels']


def test_pose_asks_visible_keypoints_first():
    labels = _pose([0, 3, 4, 10, 16], max_prompts=8)
    assert len(labels) == 8 and {0, 3, 4, 10, 16} <= set(labels)
    assert labels == sorted(labels)
    visible = list(range(12))
    assert set(_pose(visible, max_prompts=8)) <= set(visible)
    assert _pose([1, 2]) == list(range(17))


def test_numpy_seed_decides_the_choice():
    def draw():
        return (_det([4, 11], max_prompts=6),
                LumenGroundPrompts(max_prompts=3)(
                    _ground_results(9))['prompts'],
                _pose([1, 5, 6], max_prompts=8))
    np.random.seed(7)
    first = draw()
    np.random.seed(7)
    assert draw() == first
    np.random.seed(8)
    assert draw() != first


@pytest.mark.parametrize('cap', [0, -2, 2.5, '8'])
def test_a_bad_cap_says_what_it_is(cap):
    for make in (lambda: LumenDetPrompts(max_prompts=cap),
                 lambda: LumenGroundPrompts(max_prompts=cap),
                 lambda: LumenPosePrompts(KEYPOINTS, max_prompts=cap)):
        with pytest.raises(ValueError, match='max_prompts is the most'):
            make()


# -- configs ------------------------------------------------------------------
_PROMPTS = ('LumenDetPrompts', 'LumenGroundPrompts', 'LumenPosePrompts')


def _prompt_steps(node, found):
    if isinstance(node, dict):
        if node.get('type') in _PROMPTS:
            found.append(node)
        for value in node.values():
            _prompt_steps(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _prompt_steps(value, found)
    return found


def test_paper_config_caps_training_prompts_only():
    import lumen_mm  # noqa: F401
    cfg = Config.fromfile(
        str(REPO / 'configs/lumen/lumen_llava-v1.1-7b_lora_448_multitask_50k'
            '.py'))
    assert cfg.prompts_per_image == 8
    train = _prompt_steps(cfg.train_dataloader, [])
    assert train and all(
        t['max_prompts'] == cfg.prompts_per_image for t in train)
    for split in ('val_dataloader', 'test_dataloader'):
        for step in _prompt_steps(cfg[split], []):
            assert step.get('test_mode') or not step.get('max_prompts')
    # every test pipeline of the dataset config asks everything
    for name, value in cfg.items():
        if name.endswith(('_val', '_test', '_test_pipeline')):
            for step in _prompt_steps(value, []):
                assert step.get('test_mode') or not step.get(
                    'max_prompts'), name


@pytest.mark.parametrize('path', sorted(
    list((REPO / 'configs/lumen/shapes').glob('*.py')) +
    list((REPO / 'configs/lumen/_base_/datasets').glob('lumen_shapes*.py'))),
    ids=lambda p: p.name)
def test_shapes_configs_keep_every_prompt(path):
    assert 'max_prompts' not in path.read_text()
