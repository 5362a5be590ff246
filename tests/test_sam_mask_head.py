"""SamMaskHead: prompts, mask-decoder training, freezing, checkpoints."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

import lumen_mm  # noqa: F401  (registration)
from lumen_mm.datasets import LumenSamImage
from lumen_mm.models.mask_heads.sam_mask_head import CLIP_MEAN, CLIP_STD

TINY = dict(img_size=64, embed_dim=32, depth=1, prompt_embed_dim=32,
            decoder_depth=1, decoder_mlp_dim=64)


def tiny_head(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='SamMaskHead', sam_type='tiny', tiny=TINY, **kwargs))


def clip_normalise(pixels):
    mean = torch.tensor(CLIP_MEAN).view(-1, 1, 1)
    std = torch.tensor(CLIP_STD).view(-1, 1, 1)
    return (pixels - mean) / std


def test_trained_decoder_masks_the_square_inside_its_box():
    # Input 96x128 (H, W): the encoder (64 px) sees it resized and padded,
    # so box coordinates and masks go through SAM's resize and back.
    head = tiny_head(train_decoder=True)
    size = (96, 128)
    pixels = torch.full((1, 3, *size), 40.)
    pixels[..., 30:70, 40:84] = 220.
    square = torch.zeros(1, *size, dtype=torch.bool)
    square[0, 30:70, 40:84] = True
    box = torch.tensor([[40., 30., 84., 70.]])
    embeddings = head.encode(clip_normalise(pixels))
    params = [p for p in head.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=3e-3)
    for _ in range(40):
        losses = head.loss_by_feat(
            head.predict_masks(embeddings, [box], None, size), [square])
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
    with torch.no_grad():
        logits = head.predict_masks(embeddings, [box], None, size)[0]
    assert logits.shape == (1, *size)
    mask = logits[0] > 0
    inside = (mask & square[0]).sum().item()
    assert inside / max(mask.sum().item(), 1) > 0.9
    iou = inside / (mask | square[0]).sum().item()
    chance = square.float().mean().item()  # IoU of an all-foreground mask
    assert iou > 0.7 > chance


def test_all_prompts_of_an_image_in_one_call_and_zero_prompts():
    head = tiny_head()
    calls = []
    head.sam.prompt_encoder.register_forward_hook(
        lambda m, args, kwargs, out: calls.append(kwargs), with_kwargs=True)
    size = (128, 128)  # twice the encoder size: prompts are halved
    embeddings = head.encode(torch.zeros(2, 3, *size))
    boxes = [torch.tensor([[0., 0., 20., 40.], [10., 10., 50., 30.],
                           [60., 60., 100., 120.]]),
             torch.zeros(0, 4)]
    masks = head.predict_masks(embeddings, boxes, None, size)
    assert len(calls) == 1  # one call for image 0, none for image 1
    coords, labels = calls[0]['points']
    assert torch.allclose(calls[0]['boxes'], boxes[0] / 2)
    centres = (boxes[0][:, :2] + boxes[0][:, 2:]) / 4
    assert torch.allclose(coords[:, 0], centres)
    assert labels.tolist() == [[1], [1], [1]]
    assert masks[0].shape == (3, *size) and masks[1].shape == (0, *size)
    assert not masks[0].requires_grad  # frozen SAM runs without gradients
    losses = head.loss_by_feat([masks[1]], [torch.zeros(0, *size)])
    assert all(torch.isfinite(v) and v == 0 for v in losses.values())


def test_explicit_points_and_bad_prompts():
    head = tiny_head()
    embeddings = head.encode(torch.zeros(1, 3, 64, 64))
    box = torch.tensor([[0., 0., 20., 20.]])
    points = head.predict_masks(embeddings, [box], [torch.tensor([[5., 5.]])],
                                (64, 64))[0]
    centre = head.predict_masks(embeddings, [box], None, (64, 64))[0]
    assert not torch.allclose(points, centre)
    with pytest.raises(ValueError, match='one point per box'):
        head.predict_masks(embeddings, [box], [torch.zeros(2, 2)], (64, 64))
    with pytest.raises(ValueError, match='do not match'):
        head.loss_by_feat([centre], [torch.zeros(1, 32, 32)])


def test_input_normalisation_is_converted_to_sams():
    pixels = torch.rand(1, 3, 64, 64) * 255
    clip_head = tiny_head()
    raw_head = tiny_head(input_mean=(0., 0., 0.), input_std=(1., 1., 1.))
    assert torch.allclose(
        clip_head.encode(clip_normalise(pixels)), raw_head.encode(pixels),
        atol=1e-4)


@pytest.mark.parametrize('flags, trained', [
    (dict(), set()),
    (dict(train_decoder=True), {'mask_decoder'}),
    (dict(train_decoder=True, train_encoder=True),
     {'mask_decoder', 'image_encoder', 'prompt_encoder'}),
])
def test_trainable_parameters_per_flag(flags, trained):
    head = tiny_head(**flags)
    parts = {n.split('.')[1] for n, p in head.named_parameters()
             if p.requires_grad}
    assert parts == trained
    for part in trained:  # every parameter of a trained part trains
        assert all(p.requires_grad
                   for p in getattr(head.sam, part).parameters())


def test_checkpoint_round_trip_and_errors(tmp_path):
    head = tiny_head()
    path = tmp_path / 'tiny_sam.pth'
    torch.save(head.sam.state_dict(), path)
    loaded = MODELS.build(dict(type='SamMaskHead', sam_type='tiny',
                               tiny=TINY, checkpoint=str(path)))
    for key, value in head.sam.state_dict().items():
        assert torch.equal(loaded.sam.state_dict()[key], value)

    # A vit_b-shaped state dict (width 768, 12 blocks) given as vit_h: the
    # check reads shapes only, before any large model is built.
    fake = {'image_encoder.patch_embed.proj.weight': torch.zeros(768, 3, 16,
                                                                 16)}
    fake.update({f'image_encoder.blocks.{i}.norm1.weight': torch.zeros(768)
                 for i in range(12)})
    vit_b = tmp_path / 'fake_vit_b.pth'
    torch.save(fake, vit_b)
    with pytest.raises(ValueError,
                       match="looks like vit_b: set sam_type='vit_b'"):
        MODELS.build(dict(type='SamMaskHead', sam_type='vit_h',
                          checkpoint=str(vit_b)))
    with pytest.raises(ValueError, match="expects width 64 and depth 2"):
        MODELS.build(dict(type='SamMaskHead', sam_type='tiny',
                          checkpoint=str(vit_b)))
    torch.save({'image_encoder.patch_embed.proj.weight': torch.zeros(8, 3)},
               vit_b)
    with pytest.raises(ValueError, match='no official SAM type'):
        MODELS.build(dict(type='SamMaskHead', sam_type='vit_l',
                          checkpoint=str(vit_b)))
    with pytest.raises(FileNotFoundError, match='sam_vit_b_01ec64.pth'):
        MODELS.build(dict(type='SamMaskHead', sam_type='vit_b',
                          checkpoint=str(tmp_path / 'missing.pth')))
    with pytest.raises(ValueError, match='Unknown sam_type'):
        MODELS.build(dict(type='SamMaskHead', sam_type='vit_x'))


# -- SAM at its own resolution (LumenSamImage) ------------------------------
def _pipeline(sam_size, input_size=48, flip=False):
    from mmengine.dataset import Compose
    steps = [dict(type='LoadImageFromFile'),
             dict(type='LumenSamImage', size=sam_size),
             dict(type='Resize', scale=(input_size, input_size),
                  keep_ratio=True),
             dict(type='Pad', size=(input_size, input_size))]
    if flip:
        steps.append(dict(type='RandomFlip', prob=1.0))
    return Compose(steps + [dict(type='PackLumenInputs')])


def _write_image(path, h, w, seed=0):
    import mmcv
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
    mmcv.imwrite(rgb[..., ::-1], str(path))  # files hold BGR
    return rgb


def test_sam_image_is_encoded_and_decoded_as_sam_predictor_does(tmp_path):
    from segment_anything import SamPredictor
    head = tiny_head()
    rgb = _write_image(tmp_path / 'wide.png', 40, 100)
    sample = _pipeline(64)(dict(img_path=str(tmp_path / 'wide.png')))[
        'data_samples']
    assert tuple(sample.sam_image.shape) == (3, 26, 64)
    embedding = head.encode(torch.zeros(1, 3, 48, 48), [sample])
    predictor = SamPredictor(head.sam)
    predictor.set_image(rgb)
    assert torch.allclose(embedding, predictor.features, atol=1e-5)

    # a box of the original image, given in input pixels, comes back as the
    # predictor's mask in the original frame
    box = np.array([20., 8., 70., 30.])
    expected, _, _ = predictor.predict(
        point_coords=((box[:2] + box[2:]) / 2)[None],
        point_labels=np.array([1]), box=box, multimask_output=False)
    fx, fy = sample.metainfo['scale_factor']
    results = InstanceData(
        bboxes=torch.tensor(box * [fx, fy, fx, fy], dtype=torch.float32)[None])
    out = head.predict(embedding, results, sample.metainfo, (48, 48),
                       rescale=True)
    assert out.masks.shape == (1, 40, 100)
    assert (out.masks[0].numpy() != expected[0]).mean() < 1e-3
    assert torch.allclose(out.bboxes, torch.tensor(box[None]).float(),
                          atol=1e-4)


def _box_decoder(head):
    """Stand-ins for SAM's prompt encoder and mask decoder: logits > 0
    inside the prompt box, as read in SAM's input frame."""
    side = head.sam.image_encoder.img_size // 4  # SAM's low-res size
    cells = (torch.arange(side) + 0.5) * 4  # cell centres, SAM pixels
    seen = {}

    def prompt_encoder(points, boxes, masks):
        seen['boxes'] = boxes
        return None, None

    def mask_decoder(**kwargs):
        logits = []
        for x1, y1, x2, y2 in seen['boxes']:
            inside = (((cells >= y1) & (cells <= y2))[:, None] &
                      ((cells >= x1) & (cells <= x2))[None])
            logits.append(inside.float() * 20 - 10)
        return torch.stack(logits)[:, None], None

    head.sam.prompt_encoder.forward = prompt_encoder
    head.sam.mask_decoder.forward = mask_decoder


@pytest.mark.parametrize('with_sam_image', [True, False])
def test_masks_land_on_their_box_in_a_non_square_original(
        tmp_path, with_sam_image):
    # regression: the padded square was resized to the original's shape,
    # squeezing a 150 x 60 image's masks into its top rows
    head = tiny_head()
    _box_decoder(head)
    _write_image(tmp_path / 'wide.png', 60, 150)
    sample = _pipeline(64)(dict(img_path=str(tmp_path / 'wide.png')))[
        'data_samples']
    meta = dict(sample.metainfo)
    if not with_sam_image:  # SAM reads the upsampled input
        del meta['sam_shape']
    box = torch.tensor([[30., 10., 120., 50.]])  # original pixels
    fx, fy = meta['scale_factor']
    for rescale, shape, scale in ((True, (60, 150), 1.0),
                                  (False, (19, 48), fx)):
        results = InstanceData(bboxes=box * box.new_tensor([fx, fy] * 2))
        masks = head.predict(torch.zeros(1, 8, 4, 4), results, meta,
                             (48, 48), rescale).masks
        assert masks.shape == (1, *shape)
        truth = torch.zeros(shape, dtype=torch.bool)
        x1, y1, x2, y2 = (box[0] * scale).round().int().tolist()
        truth[y1:y2, x1:x2] = True
        iou = (masks[0] & truth).sum() / (masks[0] | truth).sum()
        assert iou > 0.75, (rescale, iou)


def test_sam_image_follows_a_horizontal_flip_of_a_full_width_image(
        tmp_path):
    _write_image(tmp_path / 'square.png', 50, 50)
    _write_image(tmp_path / 'tall.png', 100, 40)
    plain = _pipeline(64)(dict(img_path=str(tmp_path / 'square.png')))
    flipped = _pipeline(64, flip=True)(
        dict(img_path=str(tmp_path / 'square.png')))
    assert torch.equal(flipped['data_samples'].sam_image,
                       plain['data_samples'].sam_image.flip(-1))
    with pytest.raises(ValueError, match='fill the padded width'):
        _pipeline(64, flip=True)(dict(img_path=str(tmp_path / 'tall.png')))


def test_sam_image_of_another_size_and_mixed_batches(tmp_path):
    head = tiny_head()
    _write_image(tmp_path / 'a.png', 48, 48)
    wrong = _pipeline(32)(dict(img_path=str(tmp_path / 'a.png')))
    with pytest.raises(ValueError, match=r'LumenSamImage\(size=64\)'):
        head.encode(torch.zeros(1, 3, 48, 48), [wrong['data_samples']])
    right = _pipeline(64)(dict(img_path=str(tmp_path / 'a.png')))
    images = clip_normalise(right['inputs'].flip(0)[None].float())
    with_sam, without = right['data_samples'], right['data_samples'].clone()
    del without.sam_image
    both = head.encode(images.repeat(2, 1, 1, 1), [with_sam, without])
    assert torch.allclose(both[0], head.encode(images, [with_sam])[0],
                          atol=1e-5)
    assert torch.allclose(both[1], head.encode(images)[0], atol=1e-5)
    assert not torch.allclose(both[0], both[1], atol=1e-3)  # two sources
    with pytest.raises(ValueError, match='2 data samples for 1 images'):
        head.encode(images, [with_sam, without])
    with pytest.raises(ValueError, match="size must be SAM's input size"):
        LumenSamImage(size=0)


def test_auto_masks_turn_to_rle_beyond_max_bitmap_bytes(tmp_path):
    """Bitmaps while they fit max_bitmap_bytes, RLE of the same masks
    beyond: 100 bool masks of a 12000 px image would take 14 GB."""
    from lumen_mm.tasks import decode_masks
    head = tiny_head(max_bitmap_bytes=2 * 60 * 150)
    _box_decoder(head)
    _write_image(tmp_path / 'wide.png', 60, 150)
    sample = _pipeline(64)(dict(img_path=str(tmp_path / 'wide.png')))[
        'data_samples']
    fx, fy = sample.metainfo['scale_factor']
    scale = torch.tensor([fx, fy] * 2)

    def masks(n, mask_format='auto'):
        boxes = torch.tensor([[30., 10., 120., 50.], [5., 5., 60., 40.],
                              [70., 20., 140., 55.]])[:n] * scale
        return head.predict(torch.zeros(1, 8, 4, 4),
                            InstanceData(bboxes=boxes), sample.metainfo,
                            (48, 48), True, mask_format=mask_format).masks

    assert masks(2).dtype == torch.bool  # 2 x 9000 bytes: at the limit
    encoded = masks(3)
    assert isinstance(encoded, list) and len(encoded) == 3
    assert torch.equal(decode_masks(encoded, (60, 150)),
                       masks(3, 'bitmap'))
    with pytest.raises(ValueError, match="mask_format is 'png'; use one of"):
        masks(1, 'png')
