"""LumenInferencer on the tiny random model: image kinds, frames, calls."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHAPES_CONFIG, tiny_config

CLASSES = ['circle', 'star', 'cross']


@pytest.fixture(scope='module')
def inferencer(shapes_root, tmp_path_factory):
    from lumen_mm.apis import LumenInferencer
    torch.manual_seed(0)
    cfg = tiny_config(SHAPES_CONFIG, shapes_root,
                      tmp_path_factory.mktemp('work_dir'))
    return LumenInferencer(cfg, show_progress=False)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with a few blobs (uint8, RGB)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([xs * 255 // max(w - 1, 1), ys * 255 // max(h - 1, 1),
                    np.full_like(xs, 90)], -1).astype(np.float64)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), min(h, w) / 4
        img[(ys - cy)**2 + (xs - cx)**2 < r * r] = rng.uniform(0, 255, 3)
    return img.astype(np.uint8)


def _assert_in_image(sample, h, w):
    assert tuple(sample.ori_shape) == (h, w)
    preds = sample.pred_instances
    assert len(preds) > 0
    boxes = preds.bboxes
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all()
    assert (boxes[:, 3] >= boxes[:, 1]).all()
    assert ((preds.scores >= 0) & (preds.scores <= 1)).all()


def _image_kinds(tmp_path):
    """(name, input, (h, w) of the upright image) for every supported kind."""
    rgb = _photo(50, 200)
    pil = Image.fromarray(rgb)
    kinds = []
    paths = dict(rgb_png=pil, grey_png=pil.convert('L'),
                 rgba_png=pil.convert('RGBA'),
                 palette_png=pil.convert('P', palette=Image.ADAPTIVE))
    for name, image in paths.items():
        path = tmp_path / f'{name}.png'
        image.save(path)
        kinds.append((name, str(path), (50, 200)))
    # stored sideways, EXIF orientation 6: shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'exif.jpg'
    pil.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
    kinds.append(('exif_jpg_path', str(path), (50, 200)))
    kinds.append(('exif_jpg_pil', Image.open(path), (50, 200)))
    kinds += [
        ('numpy_bgr', rgb[..., ::-1].copy(), (50, 200)),
        ('numpy_grey', rgb[..., 0].copy(), (50, 200)),
        ('numpy_bgra', np.dstack([rgb[..., ::-1], np.full((50, 200), 255,
                                                           np.uint8)]),
         (50, 200)),
        ('pil_rgba', pil.convert('RGBA'), (50, 200)),
        ('pil_palette', pil.convert('P', palette=Image.ADAPTIVE), (50, 200)),
        ('pil_tall', Image.fromarray(_photo(300, 40, 1)), (300, 40)),
        ('pil_big', Image.fromarray(_photo(480, 640, 2)), (480, 640)),
    ]
    return kinds


def test_every_image_kind_gives_boxes_in_its_own_frame(inferencer, tmp_path):
    kinds = _image_kinds(tmp_path)
    samples = inferencer([k[1] for k in kinds], task='det', classes=CLASSES,
                         batch_size=4)
    assert len(samples) == len(kinds)
    for (name, _, (h, w)), sample in zip(kinds, samples):
        _assert_in_image(sample, h, w)
        assert sample.metainfo['prompts'] == CLASSES, name
        assert set(sample.pred_instances.labels.tolist()) <= {0, 1, 2}, name


def test_decoding_upright_and_in_bgr(tmp_path):
    from lumen_mm.apis import load_image
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:20, :40] = (255, 0, 0)  # red top-left quadrant
    pil = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'exif.jpg'
    pil.transpose(Image.Transpose.ROTATE_90).save(
        path, exif=exif.tobytes(), quality=95)
    for source in (str(path), Image.open(path)):
        img = load_image(source)
        assert img.shape == (40, 80, 3)
        # BGR: red is channel 2, in the top-left quadrant only
        assert img[:20, :40, 2].mean() > 200 and img[:20, :40, 0].mean() < 60
        assert img[20:, 40:, 2].mean() < 60
    palette = pil.convert('P', palette=Image.ADAPTIVE)
    palette.save(tmp_path / 'p.png')
    for source in (str(tmp_path / 'p.png'), palette):
        assert (load_image(source) == rgb[..., ::-1]).all()
    grey = load_image(pil.convert('L'))
    assert (grey[..., 0] == grey[..., 2]).all()


def test_path_numpy_and_pil_give_the_same_answer(inferencer, tmp_path):
    rgb = _photo(60, 90, 3)
    Image.fromarray(rgb).save(tmp_path / 'a.png')
    results = inferencer(
        [str(tmp_path / 'a.png'), rgb[..., ::-1].copy(),
         Image.fromarray(rgb)],
        task='det', classes=CLASSES, batch_size=3)
    for other in results[1:]:
        assert torch.allclose(results[0].pred_instances.bboxes,
                              other.pred_instances.bboxes)
    assert results[0].img_path == str(tmp_path / 'a.png')
    # a single image in, a single sample out
    single = inferencer(rgb[..., ::-1].copy(), task='det', classes=CLASSES)
    assert torch.allclose(single.pred_instances.scores,
                          results[0].pred_instances.scores)


def test_boxes_scale_with_the_original_image(inferencer):
    """The same pixels at 1x (32x128) and 2x (64x256) reach the model as one
    input, so the boxes of the 2x image are twice those of the 1x one."""
    small = _photo(32, 128, 4)
    big = small.repeat(2, axis=0).repeat(2, axis=1)
    one, two = inferencer([small, big], task='det', classes=CLASSES,
                          batch_size=1)
    # clipping happens in each frame, so compare before any clipped box
    assert torch.allclose(one.pred_instances.bboxes * 2,
                          two.pred_instances.bboxes, atol=1e-3)
    assert torch.equal(one.pred_instances.labels, two.pred_instances.labels)


def test_ground_call_gives_one_box_for_the_sentence(inferencer):
    sample = inferencer(_photo(70, 30), task='ground',
                        text='the star to the left of the red circle')
    assert sample.task == 'ground'
    assert sample.prompts == ['the star to the left of the red circle']
    assert len(sample.pred_instances) == 1
    assert sample.pred_instances.labels.tolist() == [0]
    _assert_in_image(sample, 70, 30)


def test_heatmaps_on_request(inferencer):
    from lumen_mm.visualization import heatmaps_to_image
    plain = inferencer(_photo(50, 200), task='det', classes=CLASSES)
    assert plain.get('heatmaps') is None
    sample = inferencer(_photo(50, 200), task='det', classes=CLASSES,
                        return_heatmaps=True)
    heatmaps = torch.as_tensor(sample.heatmaps)
    # 128 px padded input, patch 8: a 16 x 16 grid per prompt
    assert heatmaps.shape == (3, 16, 16)
    assert ((heatmaps >= 0) & (heatmaps <= 1)).all()
    in_frame = heatmaps_to_image(heatmaps, sample.metainfo)
    assert in_frame.shape == (3, 50, 200)
    # the image fills the top quarter of the padded input (32 of 128 rows)
    top = torch.nn.functional.interpolate(
        heatmaps[None], (128, 128), mode='bilinear')[0, :, :32]
    assert torch.allclose(in_frame.mean((1, 2)), top.mean((1, 2)), atol=0.02)


def test_free_form_instruction(inferencer):
    sample = inferencer(_photo(64, 96), instruction='Find every star.')
    assert sample.task == 'instruction'
    assert sample.prompts == ['Find every star.']
    assert isinstance(sample.pred_text, str)
    # the generated task token routes it, or there is none: a text answer
    assert sample.pred_task in ('det', 'seg', 'ground', 'refseg', 'pose',
                                'count', 'text')
    if sample.pred_task != 'text':
        _assert_in_image(sample, 64, 96)


def test_vqa_count_and_pose_calls(inferencer):
    vqa = inferencer(_photo(40, 60), task='vqa', text='What is red?')
    assert isinstance(vqa.pred_text, str)
    count = inferencer(_photo(40, 60), task='count', classes=['star'])
    assert isinstance(count.pred_count, int) and count.pred_count >= 0
    names = ['head', 'left_hand', 'hip']
    pose = inferencer(_photo(90, 30), task='pose', classes=names)
    points = pose.pred_instances.keypoints
    assert points.shape == (1, 3, 2)
    assert pose.pred_instances.keypoint_scores.shape == (1, 3)
    assert (points[..., 0] >= 0).all() and (points[..., 0] <= 30).all()
    assert (points[..., 1] >= 0).all() and (points[..., 1] <= 90).all()
    # without names: the config's pose keypoints, else COCO's 17
    default = inferencer(_photo(90, 30), task='pose')
    assert default.pred_instances.keypoints.shape[1] == len(default.prompts)
    # asked in words, as LumenPosePrompts trains them, not "left_hand"
    assert pose.prompts == ['head', 'left hand', 'hip']


def test_pose_crops_each_person_box(inferencer):
    """Top-down: each person box is cropped (1.25 x the box) and its
    keypoints come back inside that crop, in the image's pixels."""
    boxes = [[10, 20, 40, 80], [60, 5, 90, 45]]
    pose = inferencer(_photo(90, 120), task='pose', classes=['head', 'hip'],
                      person_bboxes=boxes)
    preds = pose.pred_instances
    assert preds.keypoints.shape == (2, 2, 2)
    assert preds.bboxes.tolist() == boxes
    for (x1, y1, x2, y2), points in zip(boxes, preds.keypoints):
        # the crop is square, 1.25 x the box's longer side
        half = 1.25 * max(x2 - x1, y2 - y1) / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert ((points[:, 0] - cx).abs() <= half + 1).all()
        assert ((points[:, 1] - cy).abs() <= half + 1).all()
    # images in a list take one list of boxes each
    both = inferencer([_photo(90, 120)] * 2, task='pose', classes=['head'],
                      person_bboxes=[boxes, boxes[:1]])
    assert [len(s.pred_instances) for s in both] == [2, 1]
    for bad, message in [([[5, 5, 2, 9]], 'x2 > x1'), ([], 'at least one'),
                         ([[1, 2, 3]], 'x1, y1, x2, y2')]:
        with pytest.raises(ValueError, match=message):
            inferencer(_photo(90, 120), task='pose', person_bboxes=bad)
    with pytest.raises(ValueError, match='2 images but person boxes for 1'):
        inferencer([_photo(90, 120)] * 2, task='pose', person_bboxes=[boxes])
    with pytest.raises(ValueError, match='takes none'):
        inferencer(_photo(90, 120), task='det', classes=CLASSES,
                   person_bboxes=boxes)


@pytest.mark.parametrize('kwargs, message', [
    (dict(), 'Nothing to do'),
    (dict(task='detect', classes=['a']), 'Unknown task'),
    (dict(task='det', classes=[]), 'non-empty list'),
    (dict(task='det', classes=['cat', ' ']), 'non-empty list'),
    (dict(task='det'), 'needs `classes`'),
    (dict(task='ground'), 'needs `text`'),
    (dict(task='ground', classes=['a']), 'not `classes`'),
    (dict(task='det', classes=['a'], text='b'), 'not `text`'),
    (dict(instruction='find x', task='det'), 'not both'),
    (dict(instruction='  '), 'empty'),
])
def test_bad_calls_say_what_to_do(inferencer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        inferencer(_photo(20, 20), **kwargs)


def test_bad_images_say_what_is_wrong(inferencer, tmp_path):
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not an image at all')
    cases = [
        (str(tmp_path / 'missing.jpg'), FileNotFoundError, 'not found'),
        (str(broken), ValueError, 'Cannot decode'),
        (np.zeros((8, 8, 3), np.float32), ValueError, 'uint8'),
        (np.zeros((8, 8, 2), np.uint8), ValueError, 'expected HxW'),
        (np.zeros((0, 8, 3), np.uint8), ValueError, 'empty'),
        (12, TypeError, 'Unsupported image type'),
    ]
    for image, error, message in cases:
        with pytest.raises(error, match=message):
            inferencer(image, task='det', classes=CLASSES)


def test_preprocessing_comes_from_the_config(inferencer):
    """The config's test transforms minus loading, prompts and packing."""
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert names == ['LumenResize', 'Pad', 'PackLumenInputs']
    assert inferencer.pipeline.transforms[0].keep_ratio


def test_without_a_whole_image_test_pipeline(shapes_root, tmp_path):
    """Top-down pose test configs crop persons; the inferencer then resizes
    and pads whole images to the aligner's input size."""
    from lumen_mm.apis import LumenInferencer
    cfg = tiny_config(SHAPES_CONFIG, shapes_root, tmp_path)
    cfg.test_dataloader.dataset.datasets = []
    inferencer = LumenInferencer(cfg, show_progress=False)
    resize, pad, _ = inferencer.pipeline.transforms
    assert resize.scale == (128, 128) and resize.keep_ratio
    assert pad.size == (128, 128)
    _assert_in_image(
        inferencer(_photo(30, 90), task='det', classes=CLASSES), 30, 90)


def test_pose_names_and_skeleton_come_from_the_config():
    from mmengine.config import Config

    from lumen_mm.apis.inferencer import (coco_keypoint_names,
                                          config_keypoint_names,
                                          config_pose_meta)
    from lumen_mm.visualization import skeleton_meta
    cfg = Config.fromfile(
        str(SHAPES_CONFIG.parent / 'lumen_tiny_shapes_all_tasks.py'))
    names = config_keypoint_names(cfg)
    assert names[:3] == ['head', 'neck', 'left_hand']
    meta = skeleton_meta(['neck', 'head', 'hip'], config_pose_meta(cfg))
    # neck-head and neck-hip, in the order asked
    assert sorted(meta['skeleton_links']) == [(0, 2), (1, 0)]
    assert config_pose_meta(Config.fromfile(str(SHAPES_CONFIG))) is None
    assert coco_keypoint_names()[:2] == ['nose', 'left eye']


def test_bad_config_is_named(tmp_path):
    from lumen_mm.apis import LumenInferencer
    with pytest.raises(FileNotFoundError, match='Config file not found'):
        LumenInferencer(str(tmp_path / 'nope.py'))
