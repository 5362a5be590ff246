"""Promptable mask decoder of Stage 2 (Sec. 3.2.2): SAM prompted by each
decoded box and its centre point.

The paper uses SAM frozen, loaded from an official checkpoint (vit_h / vit_l /
vit_b). ``train_decoder=True`` trains SAM's mask decoder instead (the ablation
"SAM vs a trained mask decoder"); ``sam_type='tiny'`` builds a small SAM for
tests and the Lumen-Shapes configs, where no pretrained SAM can be fetched.
"""
import math
import os.path as osp
import re
from contextlib import nullcontext
from functools import partial
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor
from mmdet.structures.mask import encode_mask_results
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from segment_anything import sam_model_registry
from segment_anything.modeling import (ImageEncoderViT, MaskDecoder,
                                       PromptEncoder, Sam, TwoWayTransformer)
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from lumen_mm.tasks import MASK_FORMATS, get_task

SAM_TYPES = ('vit_h', 'vit_l', 'vit_b', 'tiny')
# Official checkpoints (github.com/facebookresearch/segment-anything).
SAM_CHECKPOINTS = {
    'vit_h': 'sam_vit_h_4b8939.pth',
    'vit_l': 'sam_vit_l_0b3195.pth',
    'vit_b': 'sam_vit_b_01ec64.pth',
}
# Image-encoder (width, depth) of each official type, as segment-anything's
# build_sam_vit_* set them; used to name the type a checkpoint holds.
SAM_ENCODER_SHAPES = {
    'vit_h': (1280, 32),
    'vit_l': (1024, 24),
    'vit_b': (768, 12),
}
TINY_SAM = dict(
    img_size=128,
    patch_size=8,
    embed_dim=64,
    depth=2,
    num_heads=2,
    prompt_embed_dim=64,
    decoder_depth=2,
    decoder_heads=2,
    decoder_mlp_dim=256)
# the mask logit of the input's padding, outside every mask
_OUTSIDE = -1e4
# CLIP's normalisation in RGB, 0-255 units (Lumen's data preprocessor).
CLIP_MEAN = (122.770938, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)


class SamFrame(NamedTuple):
    """Where one image of Lumen's input batch lies in SAM's input."""
    scale: Tuple[float, float]  # (x, y): input pixels -> SAM pixels
    size: Tuple[int, int]  # (h, w) of the image in SAM pixels
    content: Tuple[int, int]  # (h, w) of the image in input pixels


def build_tiny_sam(img_size: int, patch_size: int, embed_dim: int, depth: int,
                   num_heads: int, prompt_embed_dim: int, decoder_depth: int,
                   decoder_heads: int, decoder_mlp_dim: int) -> Sam:
    """A small ``Sam`` from segment-anything's parts.

    segment-anything's ``_build_sam`` hard-codes the 1024-px input and the
    256-d prompt space, so the tiny model is assembled here the same way with
    every size configurable (global attention only, no relative positions).
    """
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=4,
            out_chans=prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(img_size // patch_size,
                                  img_size // patch_size),
            input_image_size=(img_size, img_size),
            mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_heads),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_embed_dim))


def load_sam_state_dict(checkpoint: str, sam_type: str,
                        tiny: Optional[dict] = None) -> Dict[str, Tensor]:
    """Load a SAM checkpoint safely and check that it holds ``sam_type``.

    The check reads only the image encoder's width (patch embedding) and
    depth (block indices), so a mismatch is reported before a large model is
    built.
    """
    if not osp.isfile(checkpoint):
        official = ', '.join(f'{t}: {f}' for t, f in SAM_CHECKPOINTS.items())
        raise FileNotFoundError(
            f'SAM checkpoint {checkpoint!r} does not exist. Download the '
            f'official file for sam_type={sam_type!r} ({official}) from '
            'https://github.com/facebookresearch/segment-anything and set '
            '`checkpoint` to its path, or set checkpoint=None for a randomly '
            'initialised SAM.')
    state_dict = torch.load(checkpoint, map_location='cpu', weights_only=True)
    key = 'image_encoder.patch_embed.proj.weight'
    if not isinstance(state_dict, dict) or key not in state_dict:
        raise ValueError(
            f'{checkpoint!r} is not a SAM state dict: it has no {key!r}. Use '
            'an official SAM checkpoint (e.g. sam_vit_b_01ec64.pth).')
    width = state_dict[key].shape[0]
    blocks = {
        int(m.group(1))
        for k in state_dict
        for m in [re.match(r'image_encoder\.blocks\.(\d+)\.', k)] if m
    }
    depth = max(blocks) + 1 if blocks else 0
    expected = ((tiny['embed_dim'], tiny['depth'])
                if sam_type == 'tiny' else SAM_ENCODER_SHAPES[sam_type])
    if (width, depth) != expected:
        found = [
            t for t, s in SAM_ENCODER_SHAPES.items() if s == (width, depth)
        ]
        looks = (f"looks like {found[0]}: set sam_type='{found[0]}'"
                 if found else 'matches no official SAM type: check the '
                 '`tiny` sizes or use an official checkpoint')
        raise ValueError(
            f'SAM checkpoint {checkpoint!r} has an image encoder of width '
            f'{width} and depth {depth}, but sam_type={sam_type!r} expects '
            f'width {expected[0]} and depth {expected[1]}; the checkpoint '
            f'{looks}.')
    return state_dict


@MODELS.register_module()
class SamMaskHead(BaseModule):
    """SAM decoding each (box, centre point) prompt into a mask.

    Args:
        sam_type: ``'vit_h'``, ``'vit_l'``, ``'vit_b'`` (segment-anything's
            builders) or ``'tiny'``.
        checkpoint: an official SAM ``.pth`` for ``sam_type`` (loaded with
            ``weights_only=True``); None for random initialisation.
        tiny: sizes of the tiny SAM (keys of ``TINY_SAM``; missing keys take
            its values). ``img_size`` should be the Lumen input size.
        train_decoder: train SAM's mask decoder; False freezes all of SAM,
            as in the paper.
        train_encoder: also train the image and prompt encoders (for the
            tiny SAM, which has no pretrained weights).
        input_mean / input_std: the normalisation (RGB, 0-255 units) that
            the incoming image batch already has; the head converts it to
            SAM's own.
        loss_mask / loss_dice: losses on the mask logits (only used when a
            part of SAM trains).
        max_bitmap_bytes: with ``test_cfg`` ``mask_format='auto'``, the
            most one image's bool masks may take; beyond, they come as RLE.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 sam_type: str = 'vit_h',
                 checkpoint: Optional[str] = None,
                 tiny: Optional[dict] = None,
                 train_decoder: bool = False,
                 train_encoder: bool = False,
                 input_mean: Sequence[float] = CLIP_MEAN,
                 input_std: Sequence[float] = CLIP_STD,
                 loss_mask: dict = dict(
                     type='CrossEntropyLoss',
                     use_sigmoid=True,
                     loss_weight=1.0),
                 loss_dice: dict = dict(
                     type='DiceLoss', use_sigmoid=True, loss_weight=1.0),
                 max_bitmap_bytes: int = 1 << 30,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.max_bitmap_bytes = max_bitmap_bytes
        if sam_type not in SAM_TYPES:
            raise ValueError(f'Unknown sam_type {sam_type!r}; expected one '
                             f'of {SAM_TYPES}.')
        if tiny is not None and sam_type != 'tiny':
            raise ValueError(f"`tiny` sizes are only used with sam_type="
                             f"'tiny', got sam_type={sam_type!r}.")
        tiny = {**TINY_SAM, **(tiny or {})}
        unknown = set(tiny) - set(TINY_SAM)
        if unknown:
            raise ValueError(f'Unknown `tiny` keys {sorted(unknown)}; '
                             f'expected some of {list(TINY_SAM)}.')
        state_dict = (
            load_sam_state_dict(checkpoint, sam_type, tiny)
            if checkpoint is not None else None)
        self.sam = (build_tiny_sam(**tiny) if sam_type == 'tiny' else
                    sam_model_registry[sam_type](checkpoint=None))
        if state_dict is not None:
            self.sam.load_state_dict(state_dict)
        self.sam_type = sam_type
        self.train_decoder = train_decoder
        self.train_encoder = train_encoder
        self.sam.requires_grad_(False)
        self.sam.mask_decoder.requires_grad_(train_decoder)
        self.sam.image_encoder.requires_grad_(train_encoder)
        self.sam.prompt_encoder.requires_grad_(train_encoder)
        self.transform = ResizeLongestSide(self.sam.image_encoder.img_size)
        self.register_buffer(
            'input_mean', torch.tensor(input_mean).view(-1, 1, 1), False)
        self.register_buffer(
            'input_std', torch.tensor(input_std).view(-1, 1, 1), False)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)

    @property
    def feat_dim(self) -> int:
        """Channels of SAM's image embeddings (:meth:`encode`)."""
        return self.sam.prompt_encoder.embed_dim

    def feat_stride(self, input_size: int) -> float:
        """Input pixels per cell of :meth:`encode`'s embeddings for a square
        ``input_size`` batch (resized to SAM's input, then patched)."""
        encoder = self.sam.image_encoder
        cells = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
        return input_size / cells

    def encode(self, images: Tensor,
               data_samples: Optional[Sequence] = None) -> Tensor:
        """SAM image embeddings (B, C, h, w) of a batch.

        A sample packed with a ``sam_image`` (``LumenSamImage``: the original
        image at SAM's input size) is encoded from it, as ``SamPredictor``
        does. Any other (a pose crop, a pipeline without it) is taken from
        the normalised (B, 3, H, W) input batch back to pixels, its longest
        side resized to SAM's input: SAM then reads an upsampled letterbox.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError('encode expects a (B, 3, H, W) image batch, got '
                             f'shape {tuple(images.shape)}.')
        samples = list(data_samples or [None] * len(images))
        if len(samples) != len(images):
            raise ValueError(f'Got {len(samples)} data samples for '
                             f'{len(images)} images.')
        pixels = [None if s is None or 'sam_image' not in s else
                  self._sam_input(s.sam_image) for s in samples]
        missing = [i for i, p in enumerate(pixels) if p is None]
        if missing:
            batch = images[missing] * self.input_std + self.input_mean
            size = self.transform.get_preprocess_shape(
                *images.shape[-2:], self.transform.target_length)
            if tuple(size) != tuple(images.shape[-2:]):
                batch = F.interpolate(
                    batch, size, mode='bilinear', align_corners=False,
                    antialias=True)
            for i, p in zip(missing, self.sam.preprocess(batch).split(1)):
                pixels[i] = p
        grad = nullcontext() if self.train_encoder else torch.no_grad()
        with grad:
            return self.sam.image_encoder(torch.cat(pixels))

    def _sam_input(self, sam_image: Tensor) -> Tensor:
        """A packed (3, h, w) uint8 SAM image, SAM-normalised and padded."""
        size = self.sam.image_encoder.img_size
        if sam_image.dim() != 3 or max(sam_image.shape[-2:]) != size:
            raise ValueError(
                f'A sam_image of shape {tuple(sam_image.shape)} does not fit '
                f'SAM\'s {size}-px input: set LumenSamImage(size={size}) in '
                'the pipeline.')
        return self.sam.preprocess(sam_image[None].to(
            self.sam.pixel_mean.dtype))

    def sam_frame(self, img_meta: dict,
                  input_size: Tuple[int, int]) -> SamFrame:
        """Where an image of the input batch lies in SAM's frame.

        mmdet's ``Pad`` sets ``img_shape`` to the padded size, so the
        content's size is the original's times ``scale_factor``.
        """
        ori_h, ori_w = img_meta.get('ori_shape', input_size)[:2]
        fx, fy = img_meta.get('scale_factor', (1.0, 1.0))
        content = (min(round(ori_h * fy), input_size[0]),
                   min(round(ori_w * fx), input_size[1]))
        if 'sam_shape' in img_meta:  # the original, resized for SAM
            sam_h, sam_w = img_meta['sam_shape'][:2]
            return SamFrame((sam_w / (ori_w * fx), sam_h / (ori_h * fy)),
                            (int(sam_h), int(sam_w)), content)
        scale = self.transform.target_length / max(input_size)
        return SamFrame((scale, scale), (round(content[0] * scale),
                                         round(content[1] * scale)), content)

    def _low_res_logits(self, embedding: Tensor, box: Tensor,
                        point: Tensor, frame: SamFrame) -> Tensor:
        """SAM's (n, 1, 256, 256) mask logits for boxes and points given in
        input pixels."""
        to_sam = box.new_tensor(frame.scale)
        labels = torch.ones(len(box), 1, dtype=torch.int, device=box.device)
        sparse, dense = self.sam.prompt_encoder(
            points=(point[:, None] * to_sam, labels),
            boxes=box * to_sam.repeat(2),
            masks=None)
        low_res, _ = self.sam.mask_decoder(
            image_embeddings=embedding[None],
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False)
        return low_res

    def predict_masks(
            self,
            image_embeddings: Tensor,
            boxes: List[Tensor],
            points: Optional[List[Tensor]] = None,
            input_size: Optional[Tuple[int, int]] = None,
            img_metas: Optional[Sequence[dict]] = None) -> List[Tensor]:
        """Mask logits for every prompt, one prompt_encoder/mask_decoder call
        per image.

        Args:
            image_embeddings: (B, C, h, w) from :meth:`encode`.
            boxes: per image (n, 4) xyxy boxes in input pixels.
            points: per image (n, 2) positive points (label 1); None uses the
                box centres.
            input_size: (H, W) of the input batch.
            img_metas: per image its metainfo (``ori_shape``,
                ``scale_factor``, ``sam_shape``), for :meth:`sam_frame`;
                None: images fill the batch.

        Returns:
            per image (n, H, W) mask logits at input resolution (a pixel is
            in the mask where its logit is > 0; the padding is out).
        """
        if input_size is None:
            raise ValueError('predict_masks needs `input_size`, the (H, W) of '
                             'the input batch.')
        if len(boxes) != len(image_embeddings):
            raise ValueError(f'Got boxes for {len(boxes)} images but '
                             f'{len(image_embeddings)} image embeddings.')
        if points is not None and len(points) != len(boxes):
            raise ValueError(f'Got points for {len(points)} images but boxes '
                             f'for {len(boxes)}.')
        img_metas = img_metas or [{}] * len(boxes)
        grad = (nullcontext() if self.train_decoder or self.train_encoder
                else torch.no_grad())
        masks = []
        with grad:
            for i, (embedding, box) in enumerate(zip(image_embeddings, boxes)):
                if box.dim() != 2 or box.shape[1] != 4:
                    raise ValueError('boxes must be (n, 4) xyxy per image; '
                                     f'image {i} has {tuple(box.shape)}.')
                if len(box) == 0:
                    masks.append(embedding.new_zeros((0, *input_size)))
                    continue
                point = ((box[:, :2] + box[:, 2:]) / 2
                         if points is None else points[i])
                if point.shape != (len(box), 2):
                    raise ValueError(
                        f'points must be (n, 2) with one point per box; image '
                        f'{i} has {tuple(point.shape)} for {len(box)} boxes.')
                frame = self.sam_frame(img_metas[i], input_size)
                logits = self.sam.postprocess_masks(
                    self._low_res_logits(embedding, box, point, frame),
                    frame.size, frame.content)[:, 0]
                pad = (0, input_size[1] - frame.content[1], 0,
                       input_size[0] - frame.content[0])
                masks.append(F.pad(logits, pad, value=_OUTSIDE))
        return masks

    def predict(self, image_embedding: Tensor, results: InstanceData,
                img_meta: dict, input_size: Tuple[int, int],
                rescale: bool, mask_format: str = 'auto') -> InstanceData:
        """Masks of one image's decoded boxes (input pixels), as
        ``SamPredictor.predict_torch`` + ``postprocess_masks`` give them:
        SAM's logits resized straight to the original frame with
        ``rescale`` (boxes divided by ``scale_factor``, as mmdet's mask
        heads do after a bbox head that left them unscaled), else to the
        input's content.

        ``mask_format='bitmap'`` gives (n, H, W) bool masks; ``'rle'`` a
        list of COCO RLE dicts (mmdet's ``encode_mask_results``), which
        mmdet's ``CocoMetric`` reads as they are; ``'auto'`` bitmaps unless
        they would take more than ``max_bitmap_bytes``, then RLE.

        Memory: per mask, the float logits of its window only
        (:meth:`paste_mask`), not n float maps of the original's size (57.6
        GB for 100 masks of a 12000 x 12000 image); then the n bool masks,
        or with RLE one (H, W) bool mask at a time.
        """
        if mask_format not in MASK_FORMATS:
            raise ValueError(f'mask_format is {mask_format!r}; use one of '
                             f'{MASK_FORMATS}.')
        frame = self.sam_frame(img_meta, input_size)
        size = (tuple(img_meta['ori_shape'][:2])
                if rescale and 'ori_shape' in img_meta else frame.content)
        boxes = results.bboxes
        rle = mask_format == 'rle' or (
            mask_format == 'auto'
            and len(boxes) * size[0] * size[1] > self.max_bitmap_bytes)
        masks = boxes.new_zeros((1 if rle else len(boxes), *size),
                                dtype=torch.bool)
        encoded = []
        if len(boxes):
            with torch.no_grad():
                low_res = self._low_res_logits(
                    image_embedding[0], boxes,
                    (boxes[:, :2] + boxes[:, 2:]) / 2, frame)
                for i, logits in enumerate(low_res):
                    mask = masks[0 if rle else i]
                    if rle:
                        mask.zero_()
                    self.paste_mask(logits[None], frame.size, mask)
                    if rle:
                        encoded += encode_mask_results(
                            mask.cpu()[None].numpy())
        results.masks = encoded if rle else masks
        if rescale and 'scale_factor' in img_meta:
            results.bboxes /= results.bboxes.new_tensor(
                img_meta['scale_factor']).repeat(2)
        return results

    def paste_mask(self, low_res: Tensor, input_size: Tuple[int, int],
                   out: Tensor, max_pixels: int = 1 << 22) -> None:
        """Set ``out`` (H, W) to ``sam.postprocess_masks(low_res,
        input_size, (H, W)) > 0`` for one (1, 1, h, w) low-res mask, in
        bounded memory.

        segment-anything's ``postprocess_masks`` upsamples to SAM's input,
        crops the image and resizes it to (H, W) as one float map. Here the
        last resize is computed only over the rows and columns that can be
        positive (bilinear reads the two source pixels around each output
        pixel, so outside the source's positive rows and columns, widened by
        one, every value is <= 0), in strips of at most ``max_pixels``, with
        ``grid_sample`` at the exact source coordinates of
        ``F.interpolate(mode='bilinear', align_corners=False)``.
        """
        img_size = self.sam.image_encoder.img_size
        src = F.interpolate(low_res, (img_size, img_size), mode='bilinear',
                            align_corners=False)
        src = src[..., :input_size[0], :input_size[1]]
        positive = src[0, 0] > 0
        if not positive.any():
            return
        h, w = src.shape[-2:]
        out_h, out_w = out.shape

        def window(hit: Tensor, n_in: int, n_out: int) -> Tuple[int, int]:
            first, last = hit.nonzero()[[0, -1], 0].tolist()
            scale = n_out / n_in
            lo = math.floor((first - 0.5) * scale - 0.5) - 1
            hi = math.ceil((last + 1.5) * scale - 0.5) + 2
            return max(0, lo), min(n_out, hi)

        def source(start: int, stop: int, n_in: int, n_out: int) -> Tensor:
            """grid_sample's coordinates of F.interpolate's sources."""
            dst = torch.arange(start, stop, device=src.device,
                               dtype=torch.float64)
            pos = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
            return ((2 * pos + 1) / n_in - 1).to(src.dtype)

        y0, y1 = window(positive.any(1), h, out_h)
        x0, x1 = window(positive.any(0), w, out_w)
        gx = source(x0, x1, w, out_w)
        step = max(1, max_pixels // max(1, x1 - x0))
        for top in range(y0, y1, step):
            bottom = min(y1, top + step)
            gy = source(top, bottom, h, out_h)
            grid = torch.stack(
                torch.broadcast_tensors(gx[None], gy[:, None]), -1)
            values = F.grid_sample(src, grid[None], mode='bilinear',
                                   padding_mode='border', align_corners=False)
            out[top:bottom, x0:x1] = values[0, 0] > 0

    def loss(self, images: Tensor, data_samples: list) -> Dict[str, Tensor]:
        """Losses of SAM prompted with the ground-truth boxes of the batch's
        mask-task samples that have gt masks (the ablation of a trained
        mask decoder); none gives zero losses that keep the graph."""
        chosen = [
            i for i, s in enumerate(data_samples)
            if get_task(s.metainfo.get('task', 'det')).decoder == 'masks'
            and 'masks' in s.get('gt_instances', {})
        ]
        if not chosen:
            zero = sum(p.sum() * 0 for p in self.parameters()
                       if p.requires_grad)
            return dict(loss_mask=zero, loss_dice=zero)
        samples = [data_samples[i] for i in chosen]
        gts = [s.gt_instances for s in samples]
        logits = self.predict_masks(
            self.encode(images[chosen], samples),
            [get_box_tensor(g.bboxes) for g in gts],
            input_size=tuple(images.shape[-2:]),
            img_metas=[s.metainfo for s in samples])
        return self.loss_by_feat(logits, [g.masks for g in gts])

    def loss_by_feat(self, mask_logits: List[Tensor],
             gt_masks: List[Tensor]) -> Dict[str, Tensor]:
        """Sigmoid cross-entropy and Dice of the mask logits.

        Args:
            mask_logits: per image (n, H, W) from :meth:`predict_masks`.
            gt_masks: per image the n target masks at input resolution, as
                (n, H, W) tensors or mmdet ``BitmapMasks``.
        """
        if len(mask_logits) != len(gt_masks):
            raise ValueError(f'Got mask logits for {len(mask_logits)} images '
                             f'but gt masks for {len(gt_masks)}.')
        preds, targets = [], []
        for i, (pred, gt) in enumerate(zip(mask_logits, gt_masks)):
            if hasattr(gt, 'to_tensor'):  # BitmapMasks / PolygonMasks
                gt = gt.to_tensor(torch.float, pred.device)
            if tuple(gt.shape) != tuple(pred.shape):
                raise ValueError(
                    f'Image {i}: gt masks {tuple(gt.shape)} do not match the '
                    f'mask logits {tuple(pred.shape)}; give one gt mask per '
                    'prompt at the input (padded batch) resolution.')
            preds.append(pred.float().flatten(1))  # also under autocast
            targets.append(gt.to(pred.device).float().flatten(1))
        pred = torch.cat(preds)
        target = torch.cat(targets)
        if len(pred) == 0:  # no prompts in the batch
            zero = pred.sum() * 0
            return dict(loss_mask=zero, loss_dice=zero)
        return dict(
            loss_mask=self.loss_mask(pred, target),
            loss_dice=self.loss_dice(pred, target))
