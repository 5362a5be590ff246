"""Both dense aligners map ([LOC] state, patch features) to heatmap + wh."""
import pytest
import torch
import torch.nn.functional as F

from lumen_mm.models import ConvDenseAligner, TransformerDenseAligner
from lumen_mm.models.necks.dense_aligner import (FOCAL_PRIOR_BIAS,
                                                  SpatialContext)


@pytest.mark.parametrize('aligner', [
    lambda: TransformerDenseAligner(24, 16, embed_dim=32, depth=1,
                                    num_heads=2, mlp_dim=64),
    lambda: TransformerDenseAligner(24, 16, embed_dim=32, depth=1,
                                    num_heads=2, mlp_dim=64, num_convs=1),
    lambda: ConvDenseAligner(24, 16, embed_dim=32, num_convs=2),
    lambda: ConvDenseAligner(24, 16, embed_dim=32, num_convs=2,
                             fusion='concat'),
])
def test_one_map_per_prompt_on_its_image(aligner):
    torch.manual_seed(0)
    model = aligner()
    loc = torch.randn(3, 24, requires_grad=True)
    feats = torch.randn(2, 16, 5, 7)
    out = model(loc, feats, [0, 1, 1])
    assert out['heatmap'].shape == (3, 1, 5, 7)
    assert out['wh'].shape == (3, 2, 5, 7)
    # prompts 1 and 2 look at image 1; changing image 0 leaves them alone
    feats2 = feats.clone()
    feats2[0] += 1
    out2 = model(loc, feats2, [0, 1, 1])
    assert torch.allclose(out['heatmap'][1:], out2['heatmap'][1:])
    assert not torch.allclose(out['heatmap'][0], out2['heatmap'][0])
    # the [LOC] state steers the map
    out['heatmap'][1].sum().backward()
    assert loc.grad[1].abs().sum() > 0 and loc.grad[0].abs().sum() == 0


def test_heatmap_starts_near_the_focal_prior():
    torch.manual_seed(0)
    model = TransformerDenseAligner(24, 16, embed_dim=32, depth=1,
                                    num_heads=2, mlp_dim=64)
    heat = model(torch.randn(4, 24), torch.randn(1, 16, 6, 6),
                 [0] * 4)['heatmap']
    assert abs(heat.mean().item() - FOCAL_PRIOR_BIAS) < 1.0


def test_dilated_convs_see_across_the_grid():
    """With dilations (1, 2, 4) the heatmap at one corner depends on the far
    side of a 16 x 16 grid; with plain 3x3 convolutions it cannot."""
    def reach(dilations):
        torch.manual_seed(0)
        model = ConvDenseAligner(8, 4, embed_dim=8, num_convs=3,
                                 dilations=dilations)
        feats = torch.randn(1, 4, 16, 16, requires_grad=True)
        model(torch.randn(1, 8), feats, [0])['heatmap'][0, 0, 0, 0].backward()
        return feats.grad[0].abs().sum(0).nonzero()[:, 1].max().item()
    assert reach(None) == 3
    assert reach((1, 2, 4)) == 7
    with pytest.raises(ValueError, match='dilations'):
        ConvDenseAligner(8, 4, num_convs=3, dilations=(1, 2))


def test_text_norm_spreads_nearly_equal_loc_states():
    """[LOC] states that differ by 1% (a random-init LLM) give nearly equal
    text embeddings, unless they are batch-normalised first; one prompt
    alone is normalised by the running statistics."""
    def spread(text_norm_cfg):
        torch.manual_seed(0)
        model = ConvDenseAligner(16, 4, embed_dim=8, num_convs=1,
                                 text_norm_cfg=text_norm_cfg)
        loc = torch.randn(1, 16) + 0.01 * torch.randn(6, 16)
        text = model.text_proj(model._normalise(loc))
        return (text.std(0) / text.abs().mean(0)).mean().item()
    assert spread(None) < 0.05
    assert spread(dict(type='BN1d')) > 0.5
    model = ConvDenseAligner(16, 4, embed_dim=8, num_convs=1,
                             text_norm_cfg=dict(type='BN1d'))
    out = model(torch.randn(1, 16), torch.randn(1, 4, 5, 5), [0])
    assert torch.isfinite(out['heatmap']).all()


def test_upsampled_readout_gives_a_finer_grid():
    """upsample=2 reads each patch out as 2 x 2 heatmap cells, so the
    detector's stride halves."""
    torch.manual_seed(0)
    model = ConvDenseAligner(8, 4, embed_dim=8, num_convs=1, upsample=2)
    out = model(torch.randn(3, 8), torch.randn(1, 4, 5, 6), [0] * 3)
    assert out['heatmap'].shape == (3, 1, 10, 12)
    assert out['wh'].shape == (3, 2, 10, 12)
    # the four cells of one patch are read out separately
    assert out['heatmap'][0, 0, :2, :2].unique().numel() == 4
    with pytest.raises(ValueError, match='upsample'):
        ConvDenseAligner(8, 4, upsample=0)


def test_high_res_features_are_read_at_their_own_cells():
    """With an additional high-resolution encoder the aligner starts as it
    would without it (``high_res_zero_init``); otherwise one cell of the
    features moves the maps of its image's prompts there and not elsewhere
    (and its 3x3 neighbours, through the convolution after the fusion)."""
    def build(zero_init):
        torch.manual_seed(0)
        return ConvDenseAligner(8, 4, embed_dim=8, num_convs=1, upsample=2,
                                high_res_dim=3, high_res_embed_dim=6,
                                high_res_zero_init=zero_init)

    model = build(True)
    loc, feats = torch.randn(3, 8), torch.randn(2, 4, 5, 6)
    high_res = torch.randn(2, 3, 10, 12)
    out = model(loc, feats, [0, 1, 1], high_res_feats=high_res)
    assert out['heatmap'].shape == (3, 1, 10, 12)
    assert out['wh'].shape == (3, 2, 10, 12)
    moved = high_res.clone()
    moved[1, :, 4, 7] += 3
    same = model(loc, feats, [0, 1, 1], high_res_feats=moved)
    assert torch.equal(same['heatmap'], out['heatmap'])
    model = build(False)
    out = model(loc, feats, [0, 1, 1], high_res_feats=high_res)
    changed = model(loc, feats, [0, 1, 1], high_res_feats=moved)
    diff = (changed['heatmap'] - out['heatmap']).abs()[:, 0]
    assert torch.equal(diff[0], torch.zeros_like(diff[0]))
    assert (diff[1:, 4, 7] > 0).all()
    diff[:, 3:6, 6:9] = 0
    assert diff.max() == 0
    # another grid is resized to the heatmap's
    out = model(loc, feats, [0, 1, 1],
                high_res_feats=torch.randn(2, 3, 20, 24))
    assert out['heatmap'].shape == (3, 1, 10, 12)
    with pytest.raises(ValueError, match='high_res_encoder'):
        model(loc, feats, [0, 1, 1])
    with pytest.raises(ValueError, match='high_res_encoder'):
        ConvDenseAligner(8, 4, embed_dim=8)(loc, feats, [0, 1, 1],
                                            high_res_feats=high_res)


def test_spatial_context_pools_each_side_without_the_cell_itself():
    """One object at row 1, column 2 of a 4 x 5 grid: it lies to the left of
    the cells in columns 3-4 (every row), above rows 2-3, and anywhere for
    all cells; its own column and row are not beside it."""
    context = SpatialContext(1)
    x = torch.zeros(1, 1, 4, 5)
    x[0, 0, 1, 2] = 1.
    cols, rows = torch.arange(5), torch.arange(4)[:, None]
    expected = {
        'left': (cols > 2).expand(4, 5),     # the object is to their left
        'right': (cols < 2).expand(4, 5),
        'above': (rows > 1).expand(4, 5),
        'below': (rows < 1).expand(4, 5),
        'anywhere': torch.ones(4, 5, dtype=torch.bool),
    }
    for k, side in enumerate(expected):
        with torch.no_grad():
            context.mix.weight.zero_()
            context.mix.bias.zero_()
            context.mix.weight[0, k] = 1.
        assert torch.equal(context(x)[0, 0], expected[side].float()), side


@pytest.mark.parametrize('after', [1, 2])
def test_spatial_context_reaches_across_the_grid(after):
    """With plain 3x3 convolutions the heatmap at one corner cannot depend on
    the far corner; with the spatial context after either convolution it
    does, and the context starts as a no-op, so the aligner starts as the
    plain one."""
    torch.manual_seed(0)
    loc, feats = torch.randn(1, 8), torch.randn(1, 4, 12, 12)
    far = feats.clone()
    far[..., -1, -1] += 10.
    plain = ConvDenseAligner(8, 4, embed_dim=8, num_convs=2)
    context = ConvDenseAligner(8, 4, embed_dim=8, num_convs=2,
                               spatial_context=(after, ))
    context.load_state_dict(plain.state_dict(), strict=False)
    assert torch.equal(context(loc, feats, [0])['heatmap'],
                       plain(loc, feats, [0])['heatmap'])
    torch.nn.init.normal_(context.contexts[str(after)].mix.weight)
    for model, reaches in ((plain, False), (context, True)):
        corner = [model(loc, f, [0])['heatmap'][0, 0, 0, 0]
                  for f in (feats, far)]
        assert (not torch.allclose(*corner)) == reaches
    for bad in (0, 3):
        with pytest.raises(ValueError, match='from 1 to 2'):
            ConvDenseAligner(8, 4, num_convs=2, spatial_context=(bad, ))
    # the boolean form of earlier versions names its replacement
    with pytest.raises(TypeError, match=r'use \(1,\)'):
        ConvDenseAligner(8, 4, num_convs=2, spatial_context=True)


def test_both_aligners_take_the_same_arguments():
    """One interface: both are called with ``high_res_feats``; the
    transformer aligner reads none and says so when asked to."""
    loc, feats = torch.randn(2, 8), torch.randn(1, 4, 6, 6)
    for model in (ConvDenseAligner(8, 4, embed_dim=8, num_convs=1),
                  TransformerDenseAligner(8, 4, embed_dim=8, depth=1,
                                          num_heads=2, mlp_dim=16)):
        out = model(loc, feats, [0, 0], high_res_feats=None)
        assert out['heatmap'].shape == (2, 1, 6, 6)
        assert model.upsample == 1 and model.high_res_dim == 0
        with pytest.raises(ValueError, match='high_res_dim=0'):
            model(loc, feats, [0, 0], high_res_feats=torch.randn(1, 3, 6, 6))
    with pytest.raises(ValueError, match='ConvDenseAligner'):
        TransformerDenseAligner(8, 4, high_res_dim=3)


def test_concat_fusion_is_the_papers_conv_aligner():
    """Table 3a's "Conv.": [LOC] concatenated with every patch feature, then
    convolutions; the first reads 2 x embed_dim channels. A hand-computed
    forward matches, and gradients reach both the [LOC] states and the
    patches."""
    torch.manual_seed(0)
    model = ConvDenseAligner(6, 4, embed_dim=5, num_convs=1, fusion='concat')
    assert model.convs[0].in_channels == 10
    assert model.convs[0].out_channels == 5
    loc = torch.randn(2, 6, requires_grad=True)
    feats = torch.randn(1, 4, 3, 4, requires_grad=True)
    out = model(loc, feats, [0, 0])
    text = model.text_proj(loc)
    vision = model.vision_proj(feats).expand(2, -1, -1, -1)
    fused = torch.cat([vision, text[:, :, None, None].expand(-1, -1, 3, 4)],
                      dim=1)
    x = F.gelu(model.convs[0](fused))
    assert torch.allclose(out['heatmap'], model.heat_conv(x), atol=1e-6)
    assert torch.allclose(out['wh'], model.wh_conv(x), atol=1e-6)
    (out['heatmap'].sum() + out['wh'].sum()).backward()
    assert loc.grad.abs().sum(1).min() > 0
    assert feats.grad.abs().sum() > 0


def test_concat_and_multiply_differ_where_the_loc_embedding_is_zero():
    """With a [LOC] embedding of zeros, multiplying wipes the patches out of
    the heatmap; concatenating keeps them."""
    def patch_grad(fusion):
        torch.manual_seed(0)
        model = ConvDenseAligner(6, 4, embed_dim=8, num_convs=2,
                                 fusion=fusion)
        torch.nn.init.zeros_(model.text_proj[-1].weight)
        torch.nn.init.zeros_(model.text_proj[-1].bias)
        feats = torch.randn(1, 4, 5, 5, requires_grad=True)
        model(torch.randn(1, 6), feats, [0])['heatmap'].sum().backward()
        return feats.grad.abs().sum().item()
    assert patch_grad('multiply') == 0
    assert patch_grad('concat') > 0
    with pytest.raises(ValueError, match='fusion'):
        ConvDenseAligner(6, 4, fusion='add')
    with pytest.raises(ValueError, match='num_convs'):
        ConvDenseAligner(6, 4, num_convs=0, fusion='concat')


def test_multiply_stays_the_default_with_its_parameters():
    """The tiny Lumen-Shapes model's checkpoints keep loading: the default
    fusion multiplies and its parameters keep their names and shapes."""
    torch.manual_seed(0)
    default = ConvDenseAligner(8, 4, embed_dim=8, num_convs=2, upsample=2,
                               high_res_dim=3)
    named = ConvDenseAligner(8, 4, embed_dim=8, num_convs=2, upsample=2,
                             high_res_dim=3, fusion='multiply')
    assert default.fusion == 'multiply'
    shapes = {k: v.shape for k, v in default.state_dict().items()}
    assert shapes == {k: v.shape for k, v in named.state_dict().items()}
    assert shapes['convs.0.weight'] == (8, 8, 3, 3)
    assert shapes['high_res_convs.0.weight'] == (32, 32, 3, 3)
    named.load_state_dict(default.state_dict())


def test_concat_fusion_reads_high_res_features_too():
    """The high-resolution corrections concatenate the [LOC] embedding as
    well, and start at zero as the multiplicative ones do."""
    torch.manual_seed(0)
    model = ConvDenseAligner(8, 4, embed_dim=8, num_convs=1, upsample=2,
                             high_res_dim=3, high_res_embed_dim=6,
                             fusion='concat', high_res_zero_init=False)
    assert model.high_res_convs[0].in_channels == 12
    loc, feats = torch.randn(3, 8), torch.randn(2, 4, 5, 6)
    out = model(loc, feats, [0, 1, 1],
                high_res_feats=torch.randn(2, 3, 10, 12))
    assert out['heatmap'].shape == (3, 1, 10, 12)
    assert out['wh'].shape == (3, 2, 10, 12)
