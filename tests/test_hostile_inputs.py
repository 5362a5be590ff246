"""Hostile inputs (issue 35, inputs and memory): each row is how a user
triggers the case, and the clear error (type, and a message fragment that
names the problem and the fix) or the correct result it must give.

Text length, lone surrogates, prompt memory and test_cfg keys have their
rows in tests/test_llava_lmm.py and tests/test_task_table.py.
"""
import struct
import zlib
from unittest import mock

import mmcv
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from PIL import Image

from conftest import REPO, SHAPES_CONFIG, tiny_config

ALL_TASKS = REPO / 'configs/lumen/shapes/lumen_tiny_shapes_all_tasks.py'
CLASSES = ['circle', 'star', 'cross']


@pytest.fixture(scope='module')
def det(shapes_root, tmp_path_factory):
    """The tiny random detection / grounding / pose Lumen."""
    from lumen_mm.apis import LumenInferencer
    torch.manual_seed(0)
    return LumenInferencer(
        tiny_config(SHAPES_CONFIG, shapes_root,
                    tmp_path_factory.mktemp('det')), show_progress=False)


@pytest.fixture(scope='module')
def seg(shapes_root, tmp_path_factory):
    """The tiny random all-task Lumen with its tiny SAM, reading the
    original at SAM's input size (``LumenSamImage``)."""
    from lumen_mm.apis import LumenInferencer
    cfg = tiny_config(ALL_TASKS, shapes_root, tmp_path_factory.mktemp('seg'))
    cfg.model.mask_head.tiny = dict(
        img_size=128, embed_dim=32, depth=1, prompt_embed_dim=32,
        decoder_depth=1, decoder_mlp_dim=64)
    cfg.test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LumenSamImage', size=128),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='Pad', size=(128, 128)),
    ]
    torch.manual_seed(0)
    return LumenInferencer(cfg, show_progress=False)


def _png_header_only(path, w: int, h: int) -> str:
    """A PNG that declares w x h grey pixels (decoders check the size
    before reading the pixels): a 40000 x 40000 image in 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(
        b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(
            b'IDAT', zlib.compress(b'\0' * 10)) + chunk(b'IEND', b''))
    return str(path)


def _load_by_pipeline(path: str) -> np.ndarray:
    from lumen_mm.datasets import LumenLoadImageFromFile
    return LumenLoadImageFromFile().transform(dict(img_path=path))['img']


def _in_frame(sample, h: int, w: int) -> None:
    assert tuple(sample.ori_shape) == (h, w)
    boxes = sample.pred_instances.bboxes
    assert len(boxes) and torch.isfinite(boxes).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all()
    assert (boxes[:, 3] <= h).all()


# -- 1. image modes ----------------------------------------------------------
def test_16_bit_grey_is_the_same_8_bit_image_by_path_pil_and_array(
        tmp_path):
    """PIL made a 16-bit grey image all 255; every way now scales it as
    OpenCV does (value >> 8), as the training pipelines read it."""
    from lumen_mm.apis.inferencer import load_image
    values = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) *
              27).astype(np.uint16)
    path = tmp_path / 'grey16.png'
    Image.fromarray(values).save(path)
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, 2)
    pil = Image.open(path)
    assert pil.mode.startswith('I')  # I;16 (or I in older Pillow)
    for image in (str(path), pil, pil.convert('I'), values):
        np.testing.assert_array_equal(load_image(image), expected)
    np.testing.assert_array_equal(_load_by_pipeline(str(path)), expected)
    from lumen_mm.apis.webui import read_photo  # the web page's upload
    np.testing.assert_array_equal(
        np.asarray(read_photo(str(path), 10_000)), expected[..., ::-1])


@pytest.mark.parametrize('image, message', [
    (Image.fromarray(np.full((8, 8), 0.5, np.float32)),
     r"mode 'F'.*Convert it first"),
    (Image.fromarray(np.full((8, 8), 70000, np.int32)),
     r'outside 16 bits: scale it to 0-255'),
])
def test_image_modes_without_a_safe_8_bit_form_are_refused(image, message,
                                                           tmp_path):
    """A 0-1 float image became black; now it asks for a conversion."""
    from lumen_mm.apis.inferencer import load_image
    from lumen_mm.apis.webui import gr, read_photo
    with pytest.raises(ValueError, match=message):
        load_image(image)
    image.save(tmp_path / 'upload.tif')
    with pytest.raises(gr.Error, match=message):
        read_photo(str(tmp_path / 'upload.tif'), 10_000)


# -- 2. broken files, thin and huge images ------------------------------------
def test_bad_files_name_the_path_and_the_fix(det, tmp_path):
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    huge = _png_header_only(tmp_path / 'huge.png', 40000, 40000)
    rows = [
        (str(empty), r"empty\.png' is empty \(0 bytes\).*replace it"),
        (huge, r"huge\.png' has more pixels.*CV_IO_MAX_IMAGE_PIXELS.*"
         r'OPENCV_IO_MAX_IMAGE_PIXELS'),
    ]
    for path, message in rows:
        with pytest.raises(ValueError, match=message):
            det(path, task='det', classes=CLASSES)
        with pytest.raises(ValueError, match=message):
            _load_by_pipeline(path)


def test_a_bad_image_of_a_list_is_named_and_earlier_results_kept(
        det, tmp_path):
    good = tmp_path / 'good.png'
    Image.new('RGB', (30, 20), 'white').save(good)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(ValueError) as error:
        det([str(good), str(empty), str(good)], task='det', classes=CLASSES)
    assert 'Image 1 of 3' in str(error.value)
    assert 'empty.png' in str(error.value) and '0 bytes' in str(error.value)
    assert error.value.index == 1
    assert len(error.value.results) == 1  # the first image's answer
    _in_frame(error.value.results[0], 20, 30)
    # pose people are named alike
    with pytest.raises(ValueError, match='Image 1 of 2'):
        det([str(good), str(empty)], task='pose')


@pytest.mark.parametrize('h, w', [(1, 2000), (3, 5000), (2000, 1)])
def test_extreme_aspect_ratios_give_boxes_in_their_frame(det, seg, h, w):
    """mmdet's Resize made the short side 0 px (cv2 ``inv_scale_x > 0``);
    it keeps 1 px, in Resize and in SAM's copy."""
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
    _in_frame(det(image, task='det', classes=CLASSES), h, w)
    sample = seg(image, task='seg', classes=CLASSES)
    assert sample.pred_instances.masks.shape[1:] == (h, w)


# -- 3. prompts and person boxes ---------------------------------------------
@pytest.mark.parametrize('kwargs, error, message', [
    (dict(task='det', classes=[None]), TypeError,
     r"must be names \(strings\); got None.*classes=\['cat'"),
    (dict(task='det', classes=['star', 123]), TypeError,
     r'got 123 of type int'),
    (dict(task='pose', person_bboxes=[[0, 0, float('inf'), float('inf')]]),
     ValueError, r'not all finite numbers.*no inf or NaN'),
    (dict(task='pose', person_bboxes=[[0, 0, float('nan'), 5]]), ValueError,
     r'not all finite'),
    (dict(task='pose', person_bboxes=[[500, 500, 600, 600]]), ValueError,
     r'outside the image \(40 x 30 pixels.*image\'s pixels'),
])
def test_bad_prompts_and_person_boxes_are_refused(det, kwargs, error,
                                                  message):
    with pytest.raises(error, match=message):
        det(np.zeros((30, 40, 3), np.uint8), **kwargs)


def test_person_box_over_the_border_still_gives_keypoints(det):
    sample = det(np.zeros((30, 40, 3), np.uint8), task='pose',
                 person_bboxes=[[30, 20, 60, 50]])
    assert torch.isfinite(sample.pred_instances.keypoints).all()


# -- 4. no boxes from the padding ---------------------------------------------
def test_peaks_in_the_padding_give_no_boxes():
    """A 16 x 64 image padded to 64 x 64: the strongest peaks lie in the
    padding rows; every box comes from the image, with area."""
    from lumen_mm.models import HeatmapHead
    head = HeatmapHead()
    heat = torch.full((2, 1, 8, 8), -9.)
    heat[:, 0, 5, 2] = heat[:, 0, 7, 6] = 9.  # padding: rows 2-7
    heat[0, 0, 0, 3] = 1.  # image: row 0 (y 0-8) and row 1
    heat[1, 0, 1, 5] = 0.
    preds = dict(heatmap=heat, wh=torch.full((2, 2, 8, 8), 3.))
    meta = dict(prompts=['a', 'b'], prompt_labels=[0, 1],
                ori_shape=(8, 32), scale_factor=(2., 2.))
    results = head.predict_by_feat(
        preds, meta, dict(topk=100, nms_iou=0.5, max_per_img=100), 8.,
        rescale=False)
    boxes = results.bboxes
    assert len(boxes) > 0
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (centres[:, 1] < 16).all() and (boxes[:, 3] <= 16).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    # the two image peaks (columns 3 and 5) are the top boxes
    top = results.scores.argsort(descending=True)[:2]
    assert sorted(centres[top, 0].tolist()) == [28., 44.]
    assert results.scores[top].min() >= 0.5
    one = head.predict_by_feat(preds, meta, dict(topk=1), 8., rescale=True)
    assert one.bboxes[:, 3].max() <= 8  # the original's height


# -- 5. bounded mask memory --------------------------------------------------
def test_masks_only_for_boxes_above_mask_score_thr(seg):
    from lumen_mm.models.mask_heads import SamMaskHead
    image = np.random.default_rng(1).integers(0, 256, (60, 90, 3), np.uint8)
    model = seg.model
    cfg = model.test_cfg['seg']
    assert cfg['mask_score_thr'] == 0.05
    try:
        for thr in (0.05, float(np.median(
                seg(image, task='det', classes=CLASSES)
                .pred_instances.scores)), 1.0):
            cfg['mask_score_thr'] = thr
            with mock.patch.object(SamMaskHead, 'paste_mask',
                                   autospec=True,
                                   side_effect=SamMaskHead.paste_mask) as spy:
                preds = seg(image, task='seg',
                            classes=CLASSES).pred_instances
            assert (preds.scores > thr).all()
            assert spy.call_count == len(preds) == len(preds.masks)
            assert preds.masks.dtype == torch.bool
            assert preds.masks.shape[1:] == (60, 90)
        assert len(preds) == 0  # nothing scores above 1
    finally:
        cfg['mask_score_thr'] = 0.05


def test_rle_masks_hold_one_full_size_mask_at_a_time(seg):
    """test_cfg mask_format='rle': COCO RLE dicts, the bitmap masks once
    decoded, read as they are by mmdet's CocoMetric and drawn."""
    from mmdet.evaluation import CocoMetric

    from lumen_mm.tasks import decode_masks, task_test_cfg
    from lumen_mm.visualization import LumenLocalVisualizer
    image = np.random.default_rng(2).integers(0, 256, (50, 70, 3), np.uint8)
    cfg = seg.model.test_cfg['seg']
    bitmap = seg(image, task='seg', classes=CLASSES)
    try:
        cfg['mask_format'] = 'rle'
        with mock.patch('lumen_mm.models.mask_heads.sam_mask_head.'
                        'encode_mask_results',
                        wraps=__import__('mmdet').structures.mask
                        .encode_mask_results) as encode:
            rle = seg(image, task='seg', classes=CLASSES)
    finally:
        cfg.pop('mask_format')
    masks = rle.pred_instances.masks
    assert isinstance(masks, list) and len(masks) == len(bitmap.pred_instances)
    assert masks[0]['size'] == [50, 70] and isinstance(masks[0]['counts'],
                                                       bytes)
    # one (1, H, W) mask per encoding: never n full-size masks at once
    assert {c.args[0].shape for c in encode.call_args_list} == {(1, 50, 70)}
    assert torch.equal(decode_masks(masks, (50, 70)),
                       bitmap.pred_instances.masks)
    metric = CocoMetric(metric='segm')
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [dict(rle.to_dict(), instances=[])])
    assert metric.results[0][1]['masks'] is masks
    vis = LumenLocalVisualizer(name='test_rle_vis')
    vis.add_datasample('rle', image[..., ::-1].copy(), rle, draw_gt=False,
                       pred_score_thr=0)
    assert vis.get_image().shape == (50, 70, 3)
    # the referring-segmentation metric decodes them
    from mmdet.registry import METRICS
    refseg = METRICS.build(dict(type='LumenRefSegMetric'))
    gt = bitmap.pred_instances.masks[:1]
    refseg.process({}, [dict(gt_masks=gt, pred_instances=dict(
        masks=masks[:1]))])
    assert refseg.evaluate(1)['refseg/mIoU'] == 1.0
    with pytest.raises(ValueError, match=r"mask_format is 'png'.*'rle'"):
        task_test_cfg(dict(seg=dict(mask_format='png')))


def test_a_mask_of_a_large_image_is_computed_over_its_window_only():
    """SAM's logits resized to a 3000 x 4000 original: floats only over
    the small box's window, in strips, and the mask is exactly
    segment-anything's ``postprocess_masks`` > 0."""
    import torch.nn.functional as F

    from lumen_mm.models.mask_heads import SamMaskHead
    head = SamMaskHead(sam_type='tiny')
    low_res = torch.full((1, 1, 32, 32), -10.)
    low_res[..., 10:14, 20:23] = 10.
    out = torch.zeros(3000, 4000, dtype=torch.bool)
    sizes = []
    grid_sample = F.grid_sample

    def spy(*args, **kwargs):
        values = grid_sample(*args, **kwargs)
        sizes.append(values.numel())
        return values

    with mock.patch.object(F, 'grid_sample', spy):
        head.paste_mask(low_res, (96, 128), out, max_pixels=50_000)
    expected = head.sam.postprocess_masks(low_res, (96, 128),
                                          (3000, 4000))[0, 0] > 0
    assert torch.equal(out, expected)
    assert max(sizes) <= 50_000 and len(sizes) > 1
    assert sum(sizes) < out.numel() / 20


# -- 6. drawing ---------------------------------------------------------------
@pytest.fixture(scope='module')
def config_file(shapes_root, tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    path = root / 'tiny.py'
    tiny_config(SHAPES_CONFIG, shapes_root, root / 'work_dir').dump(str(path))
    return str(path)


def _demo(argv, capsys):
    from lumen_mm.apis.demo import main
    outputs = main(argv)
    return outputs, capsys.readouterr().out


def test_demo_draws_dollar_signs_and_no_heatmaps(config_file, tmp_path,
                                                 capsys):
    photo = tmp_path / 'photo.png'
    Image.new('RGB', (60, 40), 'white').save(photo)
    args = [str(photo), '--task', 'det', '--config', config_file,
            '--out-dir', str(tmp_path), '--score-thr', '0']
    # matplotlib's mathtext failed on the label '$\foo$'
    outputs, printed = _demo(
        args + ['--classes', r'$\foo$', 'a $5 b', '--max-heatmaps', '1'],
        capsys)
    assert r'$\foo$:' in printed
    assert Image.open(outputs['pred']).size == (60, 40)
    assert Image.open(outputs['heatmap']).size == (60, 40)
    outputs, _ = _demo(args + ['--classes', 'a', '--max-heatmaps', '0'],
                       capsys)
    assert 'heatmap' not in outputs and 'pred' in outputs
    with pytest.raises(SystemExit):
        _demo(args + ['--max-heatmaps', '-1'], capsys)


def test_large_images_are_drawn_on_a_downscaled_copy(config_file, tmp_path,
                                                     capsys):
    from lumen_mm.apis.demo import MAX_DRAW_SIDE
    from lumen_mm.visualization import downscale_for_drawing
    from mmdet.structures import DetDataSample
    assert MAX_DRAW_SIDE <= 4096
    photo = tmp_path / 'wide.png'
    Image.new('RGB', (400, 100), 'white').save(photo)
    outputs, printed = _demo(
        [str(photo), '--task', 'seg', '--classes', 'a', '--config',
         config_file, '--out-dir', str(tmp_path), '--max-draw-side', '80'],
        capsys)
    assert Image.open(outputs['pred']).size == (80, 20)
    assert 'downscaled from 400 x 100 to 80 x 20' in printed
    # boxes, keypoints and masks follow the copy
    sample = DetDataSample(metainfo=dict(ori_shape=(1000, 3000)))
    masks = torch.zeros(1, 1000, 3000, dtype=torch.bool)
    masks[0, 500:, 1500:] = True
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[1500., 500., 3000., 1000.]]),
        keypoints=torch.tensor([[[300., 100.]]]), masks=masks)
    image, small, scale = downscale_for_drawing(
        np.zeros((1000, 3000, 3), np.uint8), sample, 300)
    assert image.shape == (100, 300, 3) and scale == 0.1
    preds = small.pred_instances
    assert preds.bboxes.tolist() == [[150., 50., 300., 100.]]
    assert preds.keypoints.tolist() == [[[30., 10.]]]
    assert preds.masks.shape == (1, 100, 300)
    assert preds.masks[0, 50:, 150:].all() and not preds.masks[0, :50].any()
    assert sample.pred_instances.masks.shape == (1, 1000, 3000)
