"""Gaussian targets, peak selection and box decoding of the heatmap head."""
import math

import pytest
import torch
from mmdet.models.utils.gaussian_target import gaussian_radius
from mmengine.config import Config

from conftest import REPO
from lumen_mm.models import HeatmapHead, PeakSelector


@pytest.fixture
def head():
    # the Lumen-Shapes head (configs/lumen/_base_/models/lumen_tiny.py)
    return HeatmapHead(min_overlap=0.3)


def test_gaussian_peak_at_centre_with_centernet_radius(head):
    # centre (68, 52) = the centre of patch (x 8, y 6); 48 x 48 px
    box = torch.tensor([[44., 28., 92., 76.]])
    t = head.get_targets([box], (16, 16), stride=8)
    heat = t['heatmap'][0, 0]
    assert heat.max() == 1 and int(heat.eq(1).sum()) == 1
    assert heat[6, 8] == 1
    radius = int(gaussian_radius((6., 6.), head.min_overlap))
    assert radius == 1
    sigma = (2 * radius + 1) / 6
    # one patch to the right of the centre: exp(-d^2 / 2 sigma^2), d = 1
    expected = math.exp(-1 / (2 * sigma**2))
    assert heat[6, 9].item() == pytest.approx(expected, rel=1e-5)
    assert heat[6, 8 + radius + 3] < heat[6, 9]
    assert t['wh'][0, :, 6, 8].tolist() == [6., 6.]
    assert t['wh_weight'].sum() == 2


def test_peak_selector_finds_local_maxima_in_order():
    heat = torch.zeros(1, 1, 8, 8)
    heat[0, 0, 2, 3] = 0.9
    heat[0, 0, 2, 4] = 0.5  # neighbour of the first: not a peak
    heat[0, 0, 6, 6] = 0.7
    scores, points = PeakSelector(refine=False)(heat, k=3)
    assert scores[0, :2].tolist() == pytest.approx([0.9, 0.7])
    assert points[0, 0].tolist() == [3.5, 2.5]
    assert points[0, 1].tolist() == [6.5, 6.5]
    assert scores[0, 2] == 0
    refined = PeakSelector(refine=True)(heat, k=1)[1]
    assert refined[0, 0].tolist() == [3.75, 2.5]  # towards the 0.5 neighbour


def test_targets_decode_back_to_the_boxes(head):
    boxes = torch.tensor([[10., 12., 30., 40.], [60., 70., 110., 100.],
                          [90., 5., 101., 17.]])
    t = head.get_targets([boxes], (16, 16), stride=8)
    # logits whose sigmoid is the target heatmap
    logits = torch.logit(t['heatmap'].clamp(1e-6, 1 - 1e-6))
    scores, decoded, _ = head.decode_boxes(
        dict(heatmap=logits, wh=t['wh']), k=3, stride=8)
    assert scores[0].tolist() == pytest.approx([1, 1, 1], abs=1e-5)
    for gt in boxes:
        err = (decoded[0] - gt).abs().max(1).values.min()
        assert err <= 8  # within one cell


def test_losses_finite_without_objects(head):
    preds = dict(heatmap=torch.randn(2, 1, 16, 16, requires_grad=True),
                 wh=torch.randn(2, 2, 16, 16, requires_grad=True))
    losses = head.loss(preds, [torch.zeros(0, 4), torch.zeros(0, 4)], 8)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(preds['heatmap'].grad).all()


def test_neighbouring_objects_need_a_finer_grid(head):
    """Two 8-px shapes 10 px apart: on the stride-8 grid their centre
    patches touch and 3x3 peak selection keeps one peak (a learned heatmap
    never ties); at stride 4 (ConvDenseAligner(upsample=2)) both stay."""
    boxes = torch.tensor([[20., 40., 28., 48.], [30., 40., 38., 48.]])

    def peaks(stride):
        grid = (int(128 / stride), ) * 2
        a, b = (head.get_targets([box[None]], grid, stride)['heatmap']
                for box in boxes)
        heat = torch.maximum(a, 0.9 * b)  # one object scores a bit lower
        scores, _ = head.peak_selector(heat, 100)
        return int((scores > 0.3).sum())

    assert peaks(8) == 1
    assert peaks(4) == 2


def test_image_norm_is_the_mean_of_each_image_alone():
    """loss_norm='image': an image with 20 objects weighs as much as one
    with a single referred object (the sampling rates set the task shares);
    'batch' weighs them by their peaks."""
    torch.manual_seed(0)
    xy = torch.rand(20, 2) * 100
    many = torch.cat([xy, xy + 8], dim=1)
    one = torch.tensor([[40., 40., 80., 90.]])
    boxes = [one, many[:12], many[12:]]  # image 0: one prompt; 1: two
    preds = dict(heatmap=torch.randn(3, 1, 16, 16),
                 wh=torch.randn(3, 2, 16, 16))
    images = [0, 1, 1]
    per_image = HeatmapHead(loss_norm='image').loss(
        preds, boxes, 8, images=images)
    batch = HeatmapHead()

    def alone(idx):
        return batch.loss({k: v[idx] for k, v in preds.items()},
                          [boxes[i] for i in idx], 8)

    first, second = alone([0]), alone([1, 2])
    for key in ('loss_heatmap', 'loss_wh'):
        expected = (first[key] + second[key]) / 2
        assert per_image[key].item() == pytest.approx(expected.item(),
                                                       rel=1e-5)
    whole = batch.loss(preds, boxes, 8)['loss_heatmap']
    assert whole.item() != pytest.approx(per_image['loss_heatmap'].item(),
                                         rel=1e-2)


def test_loss_norm_errors():
    with pytest.raises(ValueError, match="'batch'"):
        HeatmapHead(loss_norm='prompt')
    preds = dict(heatmap=torch.randn(1, 1, 16, 16),
                 wh=torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match='images='):
        HeatmapHead(loss_norm='image').loss(preds, [torch.zeros(0, 4)], 8)


def test_radius_follows_min_overlap():
    """sigma = (2 r + 1) / 6 with r CornerNet's radius at ``min_overlap``
    (mmdet's ``gaussian_radius``), floored at ``min_sigma``; a larger
    overlap gives a smaller radius. The default is CenterNet's 0.7."""
    assert HeatmapHead().min_overlap == 0.7
    wh = torch.tensor([[20., 20.], [30., 12.], [6., 6.], [1., 2.]])
    sigmas = {}
    for overlap in (0.3, 0.7):
        head = HeatmapHead(min_overlap=overlap)
        expected = [max((2 * int(gaussian_radius((h, w), overlap)) + 1) / 6,
                        head.min_sigma) for w, h in wh.tolist()]
        sigmas[overlap] = head.box_sigma(wh)
        assert sigmas[overlap].tolist() == pytest.approx(expected)
    assert (sigmas[0.7] <= sigmas[0.3]).all()
    # 20 x 20 patches: radius 4 at 0.3, 1 at 0.7
    assert sigmas[0.3][0] == pytest.approx(9 / 6)
    assert sigmas[0.7][0] == pytest.approx(3 / 6)


def _resolved_min_overlap(path):
    from mmdet.registry import MODELS

    import lumen_mm  # noqa: F401
    return MODELS.build(Config.fromfile(str(path)).model.bbox_head).min_overlap


@pytest.mark.parametrize('name', [
    'lumen_llava-v1.1-7b_lora_448_multitask_50k.py',
    'ablations/lumen_llava-v1.1-7b_lora_448_multitask_10k.py',
    'lumen_llava-v1.1-7b_test_coco-det.py',
])
def test_paper_configs_use_centernets_radius(name):
    assert _resolved_min_overlap(REPO / 'configs/lumen' / name) == 0.7


@pytest.mark.parametrize(
    'path', sorted((REPO / 'configs/lumen/shapes').glob('*.py')),
    ids=lambda p: p.stem)
def test_shapes_configs_keep_their_measured_radius(path):
    assert _resolved_min_overlap(path) == 0.3
