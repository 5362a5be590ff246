"""The V-L dense aligner ``H = A(h_[LOC], F)`` (Eq. 2).

It matches the ``[LOC]`` hidden state of each prompt against every
high-resolution patch of that prompt's image, giving a heatmap of matching
logits. Two learnable tokens appended after ``[LOC]`` (Sec. 3.2.1, box
decoder) make the same aligner output a height map and a width map.

Both variants return ``dict(heatmap=(P, 1, h, w), wh=(P, 2, h, w))`` with the
wh channels ordered (width, height), in units of heatmap cells: the patch
grid, or ``upsample`` x finer for the conv aligner.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.ops import CornerPool
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

# Heatmap bias so that the initial sigmoid is 0.1, as CenterNet does: a
# random-init aligner otherwise starts by predicting objects everywhere.
FOCAL_PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)


def _conv_stack(dim: int, num_convs: int,
                dilations: Optional[Sequence[int]] = None,
                in_dim: Optional[int] = None) -> nn.Sequential:
    """``num_convs`` x (3x3 conv, GELU); empty for 0. The first convolution
    takes ``in_dim`` channels (default ``dim``)."""
    dilations = dilations or [1] * num_convs
    if len(dilations) != num_convs:
        raise ValueError(f'{num_convs} convolutions but {len(dilations)} '
                         'dilations given.')
    layers = []
    for i, d in enumerate(dilations):
        cin = in_dim if i == 0 and in_dim else dim
        layers += [nn.Conv2d(cin, dim, 3, padding=d, dilation=d), nn.GELU()]
    return nn.Sequential(*layers)


class SpatialContext(nn.Module):
    """What lies to the left of, right of, above and below every cell, and
    anywhere in the image: per channel, the max over those cells.

    A grid of convolutions only sees a window, but "the left-most square"
    asks whether any square lies to the left anywhere in the image, and "the
    star to the right of the yellow cross" whether the cross lies to the
    left. The column maxima (for left / right) and row maxima (for above /
    below) are pooled cumulatively, as CornerNet's corner pooling does along
    one row (mmcv's ``CornerPool``); shifting them by one cell first leaves
    the cell's own column or row out. A 1x1 convolution mixes the five maps
    back into the features.
    """

    # side: (CornerPool mode, axis, whether it pools from the start of the
    # axis). CornerPool's 'right' mode runs its max from left to right, so
    # every cell gets the max of the cells to its left.
    _SIDES = {'left': ('right', 3, True), 'right': ('left', 3, False),
              'above': ('bottom', 2, True), 'below': ('top', 2, False)}

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pools = nn.ModuleDict(
            {side: CornerPool(mode) for side, (mode, _, _) in
             self._SIDES.items()})
        # zero-initialised, so that the aligner starts as it would without
        # the context (a random mix kept the class prompts from separating)
        self.mix = nn.Conv2d(5 * dim, dim, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: Tensor) -> Tensor:
        # keyed by the axis pooled along: column maxima (1 x w), row maxima
        # (h x 1)
        lines = {3: x.amax(dim=2, keepdim=True),
                 2: x.amax(dim=3, keepdim=True)}
        maps = []
        for side, (_, axis, from_start) in self._SIDES.items():
            # shift one cell away from where the pooling starts; zeros
            # ("nothing there") come in
            before, after = (1, 0) if from_start else (0, 1)
            pad = (before, after) if axis == 3 else (0, 0, before, after)
            line = F.pad(lines[axis], pad).narrow(axis, after,
                                                  x.shape[axis])
            maps.append(self.pools[side](line))
        maps.append(lines[3].amax(dim=3, keepdim=True))
        # The maps are a row (1 x w), a column (h x 1) or one value: mixing
        # each before broadcasting is the same 1x1 convolution as on the
        # concatenated h x w maps, at a fraction of the cost.
        weights = self.mix.weight.chunk(len(maps), dim=1)
        out = self.mix.bias[:, None, None]
        for m, weight in zip(maps, weights):
            out = out + F.conv2d(m, weight)
        return out.expand_as(x)


class _AlignerBase(BaseModule):
    """Projections and the interface shared by both aligners.

    Both are called as ``aligner(loc_states, patch_feats, prompt_image,
    high_res_feats=None)``; ``high_res_dim`` > 0 declares that the aligner
    reads ``high_res_feats`` (:class:`Lumen` fills it in from its
    ``high_res_encoder``).

    ``text_norm_cfg`` (e.g. ``dict(type='BN1d')``) normalises the ``[LOC]``
    states over the prompts of a batch before projecting them. A randomly
    initialised LLM gives every prompt almost the same ``[LOC]`` state (its
    attention is uniform, so a class name is ~1% of the state): batch
    normalisation removes that shared part and scales up the differences, so
    that prompts for different classes get different heatmaps from the first
    steps instead of after a lucky escape from one class-agnostic heatmap.
    """

    # heatmap cells per patch along each axis
    upsample = 1

    def __init__(self, text_dim: int, vision_dim: int, embed_dim: int,
                 high_res_dim: int = 0,
                 text_norm_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.high_res_dim = high_res_dim
        self.text_norm = (build_norm_layer(text_norm_cfg, text_dim)[1]
                          if text_norm_cfg else nn.Identity())
        self.text_proj = nn.Sequential(
            nn.Linear(text_dim, embed_dim), nn.GELU(),
            nn.Linear(embed_dim, embed_dim))
        self.vision_proj = nn.Sequential(
            nn.Conv2d(vision_dim, embed_dim, 1), nn.GELU(),
            nn.Conv2d(embed_dim, embed_dim, 1))
        self.embed_dim = embed_dim

    def check_high_res(self, high_res_feats: Optional[Tensor]) -> None:
        if bool(self.high_res_dim) != (high_res_feats is not None):
            raise ValueError(
                f'This aligner has high_res_dim={self.high_res_dim}, but '
                f'high_res_feats were {"not " * (high_res_feats is None)}'
                'given: configure Lumen\'s high_res_encoder together with '
                'the neck\'s high_res_dim (Lumen fills it in).')

    def project(self, loc_states: Tensor, patch_feats: Tensor,
                prompt_image: Sequence[int]):
        """Project both sides into the aligner's width, one map per prompt."""
        text = self.text_proj(self._normalise(loc_states))
        index = torch.as_tensor(prompt_image, device=patch_feats.device)
        vision = self.vision_proj(patch_feats)[index]
        return text, vision

    def _normalise(self, loc_states: Tensor) -> Tensor:
        norm = self.text_norm
        # FSDP with mixed precision shards a batch norm as its own unit
        if self.training and len(loc_states) == 1 and isinstance(
                getattr(norm, 'module', norm), _BatchNorm):
            # batch statistics need two prompts; one alone (a batch of a
            # single grounding sample) is normalised by the running ones:
            # the module in eval mode (its own forward, so that FSDP gathers
            # its weights)
            norm.eval()
            try:
                return norm(loc_states)
            finally:
                norm.train()
        return norm(loc_states)


@MODELS.register_module()
class TransformerDenseAligner(_AlignerBase):
    """The paper's aligner: a light two-way transformer.

    Query tokens ``[LOC]``, ``[H]``, ``[W]`` and the patch tokens attend to
    each other (segment-anything's ``TwoWayTransformer``: token self-attention,
    token-to-image and image-to-token cross-attention); each output map is the
    dot product of a query with every patch, as SAM reads masks out. Like
    SAM's output neck, ``num_convs`` 3x3 convolutions may refine the patch
    tokens before the read-out: patches never attend to each other in the
    two-way transformer, and a centre patch needs its neighbours to tell a
    circle's centre from a square's.
    """

    def __init__(self,
                 text_dim: int,
                 vision_dim: int,
                 embed_dim: int = 256,
                 depth: int = 2,
                 num_heads: int = 8,
                 mlp_dim: int = 1024,
                 num_convs: int = 0,
                 high_res_dim: int = 0,
                 text_norm_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        if high_res_dim:
            raise ValueError(
                'TransformerDenseAligner reads no high-resolution features '
                f'(high_res_dim={high_res_dim}): use '
                "neck=dict(type='ConvDenseAligner', ...) or drop Lumen's "
                'high_res_encoder.')
        super().__init__(text_dim, vision_dim, embed_dim, 0, text_norm_cfg,
                         init_cfg)
        self.convs = _conv_stack(embed_dim, num_convs)
        self.wh_tokens = nn.Embedding(2, embed_dim)
        self.pos_embed = PositionEmbeddingRandom(embed_dim // 2)
        self.transformer = TwoWayTransformer(
            depth=depth,
            embedding_dim=embed_dim,
            num_heads=num_heads,
            mlp_dim=mlp_dim)
        self.readout = nn.ModuleList(
            nn.Sequential(
                nn.Linear(embed_dim, embed_dim), nn.GELU(),
                nn.Linear(embed_dim, embed_dim)) for _ in range(3))
        self.heat_bias = nn.Parameter(torch.tensor(FOCAL_PRIOR_BIAS))

    def forward(self,
                loc_states: Tensor,
                patch_feats: Tensor,
                prompt_image: Sequence[int],
                high_res_feats: Optional[Tensor] = None) -> Dict[str, Tensor]:
        self.check_high_res(high_res_feats)
        text, vision = self.project(loc_states, patch_feats, prompt_image)
        num, _, h, w = vision.shape
        queries = torch.cat(
            [text[:, None],
             self.wh_tokens.weight[None].expand(num, -1, -1)], dim=1)
        pe = self.pos_embed((h, w))[None]
        queries, keys = self.transformer(vision, pe, queries)
        if len(self.convs):
            grid = keys.transpose(1, 2).reshape(num, -1, h, w)
            keys = keys + self.convs(grid).flatten(2).transpose(1, 2)
        # (P, 3, C) x (P, hw, C) -> (P, 3, hw)
        reads = torch.stack(
            [mlp(queries[:, i]) for i, mlp in enumerate(self.readout)], 1)
        maps = reads @ keys.transpose(1, 2) / math.sqrt(self.embed_dim)
        maps = maps.view(num, 3, h, w)
        return dict(heatmap=maps[:, :1] + self.heat_bias, wh=maps[:, 1:])


@MODELS.register_module()
class ConvDenseAligner(_AlignerBase):
    """A convolutional aligner: the ``[LOC]`` embedding fused with every
    patch feature, then a few 3x3 convolutions predict the heatmap and the
    wh maps (through 1x1 read-outs).

    ``fusion`` says how the ``[LOC]`` embedding meets the patches:

    - ``'concat'``: the paper's "Conv." of Table 3a ("concatenating feature
      of [LOC] token with every image patch features and fusing them with
      two convolutional layers"): the first convolution reads
      ``2 * embed_dim`` channels, the patch's and the ``[LOC]``'s.
    - ``'multiply'`` (the default; the tiny Lumen-Shapes model's measured
      setting): the ``[LOC]`` embedding modulates every patch feature
      channel-wise, so that every convolution already sees features that
      depend on the prompt.

    ``dilations``
    widen their view (e.g. ``(1, 2, 4)`` sees 15 x 15 patches), which
    relations such as "left of the yellow cross" need. ``upsample`` > 1
    reads every patch out as ``upsample`` x ``upsample`` heatmap cells (a 1x1
    convolution and a pixel shuffle, as in sub-pixel convolution): two small
    objects in neighbouring patches then give two peaks instead of one, which
    counting crowded images needs.

    ``spatial_context`` lists the convolutions (1-based) after which what
    lies to each side of every cell, and anywhere in the image, is added
    (:class:`SpatialContext`): the window of the convolutions alone cannot
    tell the left-most square or the bigger star. ``(1, )`` is the measured
    setting; a later convolution, whose features may peak at object centres
    rather than cover whole objects, is there to be tried.

    ``high_res_dim`` > 0 reads one more input: features of the image from
    an additional high-resolution encoder (the paper's Table 3c adds SAM's
    ViT for that), ``high_res_dim`` channels at the heatmap's grid. The
    ``[LOC]`` embedding is fused with them as with the patches
    (``fusion``), they are added to the patch features read out at that
    grid, and
    a ``high_res_embed_dim``-wide 3x3 convolution gives corrections to the
    heatmap and wh maps: a patch's features then need not hold the shape of
    an object smaller than the patch. ``high_res_zero_init`` starts the
    corrections at zero, so that the aligner starts as it would without
    them; no gradient then reaches the encoder until they move.
    """

    FUSIONS = ('multiply', 'concat')

    def __init__(self,
                 text_dim: int,
                 vision_dim: int,
                 embed_dim: int = 256,
                 num_convs: int = 3,
                 dilations: Optional[Sequence[int]] = None,
                 fusion: str = 'multiply',
                 upsample: int = 1,
                 spatial_context: Sequence[int] = (),
                 high_res_dim: int = 0,
                 high_res_embed_dim: int = 32,
                 high_res_zero_init: bool = True,
                 text_norm_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(text_dim, vision_dim, embed_dim, high_res_dim,
                         text_norm_cfg, init_cfg)
        if fusion not in self.FUSIONS:
            raise ValueError(f"fusion must be one of {self.FUSIONS}, got "
                             f'{fusion!r}.')
        if fusion == 'concat' and num_convs < 1:
            raise ValueError("fusion='concat' needs a convolution to fuse "
                             'the concatenation: num_convs >= 1.')
        self.fusion = fusion
        concat = fusion == 'concat'
        self.convs = _conv_stack(embed_dim, num_convs, dilations,
                                 in_dim=2 * embed_dim if concat else None)
        if isinstance(spatial_context, bool):
            raise TypeError(
                'spatial_context lists the convolutions (1-based) that the '
                f'context follows; for spatial_context={spatial_context} use '
                f'{(1, ) if spatial_context else ()}.')
        if not set(spatial_context) <= set(range(1, num_convs + 1)):
            raise ValueError(
                f'spatial_context={tuple(spatial_context)} names convolutions '
                f'(1-based) after which to add the context, but there are '
                f'{num_convs}: use numbers from 1 to {num_convs}.')
        # keyed by the convolution it follows
        self.contexts = nn.ModuleDict(
            {str(i): SpatialContext(embed_dim) for i in spatial_context})
        if upsample < 1:
            raise ValueError(f'upsample must be >= 1, got {upsample}.')
        self.upsample = upsample
        self.heat_conv = nn.Conv2d(embed_dim, upsample**2, 1)
        self.wh_conv = nn.Conv2d(embed_dim, 2 * upsample**2, 1)
        nn.init.constant_(self.heat_conv.bias, FOCAL_PRIOR_BIAS)
        if high_res_dim:
            # the patch features, each patch as upsample x upsample cells
            self.patch_readout = nn.Conv2d(
                embed_dim, high_res_embed_dim * upsample**2, 1)
            self.high_res_proj = nn.Sequential(
                nn.Conv2d(high_res_dim, high_res_embed_dim, 1), nn.GELU(),
                nn.Conv2d(high_res_embed_dim, high_res_embed_dim, 1))
            self.high_res_text = nn.Linear(embed_dim, high_res_embed_dim)
            self.high_res_convs = _conv_stack(
                high_res_embed_dim, 1,
                in_dim=2 * high_res_embed_dim if concat else None)
            # heatmap and wh corrections
            self.high_res_out = nn.Conv2d(high_res_embed_dim, 3, 1)
            if high_res_zero_init:
                nn.init.zeros_(self.high_res_out.weight)
                nn.init.zeros_(self.high_res_out.bias)

    def forward(self,
                loc_states: Tensor,
                patch_feats: Tensor,
                prompt_image: Sequence[int],
                high_res_feats: Optional[Tensor] = None) -> Dict[str, Tensor]:
        self.check_high_res(high_res_feats)
        text, vision = self.project(loc_states, patch_feats, prompt_image)
        x = self._fuse(vision, text)
        # the stack holds (conv, GELU) pairs
        for i in range(len(self.convs) // 2):
            x = self.convs[2 * i:2 * i + 2](x)
            if str(i + 1) in self.contexts:
                x = x + self.contexts[str(i + 1)](x)
        heatmap = F.pixel_shuffle(self.heat_conv(x), self.upsample)
        wh = F.pixel_shuffle(self.wh_conv(x), self.upsample)
        if self.high_res_dim:
            fine = self._high_res(x, text, high_res_feats, prompt_image)
            heatmap, wh = heatmap + fine[:, :1], wh + fine[:, 1:]
        return dict(heatmap=heatmap, wh=wh)

    def _fuse(self, feats: Tensor, text: Tensor) -> Tensor:
        """(P, C, h, w) features and the (P, C') ``[LOC]`` embedding: their
        product (C' = C), or both concatenated at every cell (C + C')."""
        text = text[:, :, None, None]
        if self.fusion == 'multiply':
            return feats * text
        return torch.cat([feats, text.expand(-1, -1, *feats.shape[-2:])], 1)

    def _high_res(self, x: Tensor, text: Tensor, high_res_feats: Tensor,
                  prompt_image: Sequence[int]) -> Tensor:
        """Heatmap and wh corrections at the heatmap's grid: the patch
        features there plus the high-resolution features, fused with the
        ``[LOC]`` embedding (``fusion``), through a 3x3 convolution."""
        x = F.pixel_shuffle(self.patch_readout(x), self.upsample)
        if high_res_feats.shape[-2:] != x.shape[-2:]:
            high_res_feats = F.interpolate(
                high_res_feats, x.shape[-2:], mode='bilinear',
                align_corners=False)
        index = torch.as_tensor(prompt_image, device=x.device)
        fine = self.high_res_proj(high_res_feats)[index]
        text = self.high_res_text(text)
        if self.fusion == 'multiply':
            x = F.gelu(x + self._fuse(fine, text))
        else:
            x = self._fuse(F.gelu(x + fine), text)
        return self.high_res_out(self.high_res_convs(x))
