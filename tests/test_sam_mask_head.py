"""SamMaskHead: prompts, mask-decoder training, freezing, checkpoints."""
import pytest
import torch
from mmdet.registry import MODELS

import lumen_mm  # noqa: F401  (registration)
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
