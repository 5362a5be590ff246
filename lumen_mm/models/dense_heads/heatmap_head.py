"""Heatmap targets, losses and Stage-2 decoding of boxes, keypoints and
counts.

Targets (Eq. 3): for every target object a Gaussian centred on the object,
``H(x, y) = max_k exp(-((x - x_k)^2 + (y - y_k)^2) / (2 sigma_k^2))``,
evaluated at the patch centres, sigma adapted to the box size as in CenterNet
(mmdet's ``gaussian_radius``). The patch that holds the centre is set to 1:
those are the positives of the Gaussian focal loss (Eq. 4). Because the
Gaussian is centred on the true (sub-patch) centre, the neighbours of a peak
say on which side of the patch centre the object lies; :class:`PeakSelector`
uses that to place the peak to a quarter of a patch.

Keypoints (pose) are targets of a fixed sigma, ``point_sigma`` patches (2 in
the paper), and have no width or height.

Width and height maps are trained with an L1 loss at the centre patches, in
patch units (CenterNet).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.utils.gaussian_target import (gaussian_radius,
                                                get_local_maximum,
                                                get_topk_from_heatmap)
from mmdet.registry import MODELS
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms


class PeakSelector:
    """Peak point selection (Sec. 3.2.1): 3x3 local maxima, then top-K.

    Args:
        kernel: neighbourhood of the local-maximum test.
        refine: move each peak a quarter of a patch towards its higher
            neighbour on each axis (mmpose's ``refine_keypoints`` rule, which
            is numpy-only and per keypoint; this is the batched torch form).
    """

    def __init__(self, kernel: int = 3, refine: bool = True) -> None:
        self.kernel = kernel
        self.refine = refine

    def __call__(self, heatmap: Tensor, k: int) -> Tuple[Tensor, Tensor]:
        """Peaks of (P, 1, h, w) sigmoid scores.

        Returns:
            scores (P, k) and points (P, k, 2) as (x, y) in patch units, where
            patch ``i`` spans ``[i, i + 1)``.
        """
        num, _, h, w = heatmap.shape
        k = min(k, h * w)
        peaks = get_local_maximum(heatmap, kernel=self.kernel)
        scores, inds, _, ys, xs = get_topk_from_heatmap(peaks, k=k)
        xs, ys = xs.float(), ys.float()
        if self.refine:
            flat = F.pad(heatmap[:, 0], (1, 1, 1, 1)).flatten(1)
            yi, xi = ys.long() + 1, xs.long() + 1
            width = w + 2

            def at(dy: int, dx: int) -> Tensor:
                return flat.gather(1, (yi + dy) * width + xi + dx)

            xs = xs + 0.25 * torch.sign(at(0, 1) - at(0, -1))
            ys = ys + 0.25 * torch.sign(at(1, 0) - at(-1, 0))
        return scores, torch.stack([xs + 0.5, ys + 0.5], dim=-1)


@MODELS.register_module()
class HeatmapHead(BaseModule):
    """Lumen's heatmap pathway: targets, losses, peaks and boxes.

    Args:
        loss_heatmap: Gaussian focal loss (alpha 2, gamma 4 = the paper's
            beta), normalised by the number of peaks.
        loss_wh: L1 loss on width/height at object centres.
        loss_norm: what the number of peaks (and of wh centres) is counted
            over. ``'batch'``: all of the batch, as in CenterNet, so a task
            weighs by its peaks (a counting image with 22 objects weighs 22
            grounding sentences). ``'image'``: each image's loss over its own
            peaks, then the mean over images, so each task's share of the loss
            is its sampling rate, the paper's "balanced data sampling".
        min_overlap: the IoU with the true box that a box whose corners
            move by up to the radius keeps (CornerNet's ``gaussian_radius``,
            as CenterNet uses it): larger gives a smaller radius, so a
            narrower Gaussian. The
            default 0.7 is CenterNet's own (Objects as Points, the paper's
            ref. [67] for the size-adaptive sigma); mmdet's CenterNet uses
            0.3.
        min_sigma: lower bound of sigma (patches) for tiny objects.
        point_sigma: sigma (patches) of keypoint targets.
        peak_kernel: local-maximum neighbourhood.
        refine_peaks: quarter-patch peak refinement.
    """

    def __init__(self,
                 loss_heatmap: dict = dict(
                     type='GaussianFocalLoss',
                     alpha=2.0,
                     gamma=4.0,
                     loss_weight=1.0),
                 loss_wh: dict = dict(type='L1Loss', loss_weight=0.1),
                 min_overlap: float = 0.7,
                 min_sigma: float = 0.5,
                 point_sigma: float = 2.0,
                 peak_kernel: int = 3,
                 refine_peaks: bool = True,
                 loss_norm: str = 'batch',
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if loss_norm not in ('batch', 'image'):
            raise ValueError(f"HeatmapHead(loss_norm={loss_norm!r}): use "
                             "'batch' (CenterNet) or 'image' (each image "
                             'normalised by its own peaks)')
        self.loss_norm = loss_norm
        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.loss_wh = MODELS.build(loss_wh)
        self.min_overlap = min_overlap
        self.min_sigma = min_sigma
        self.point_sigma = point_sigma
        self.peak_selector = PeakSelector(peak_kernel, refine_peaks)

    # -- targets ------------------------------------------------------------
    def box_sigma(self, wh: Tensor) -> Tensor:
        """CenterNet's size-adaptive sigma, for (n, 2) box sizes in patches."""
        radii = [
            max(0, int(gaussian_radius((float(h), float(w)), self.min_overlap)))
            for w, h in wh.tolist()
        ]
        sigma = (2 * wh.new_tensor(radii) + 1) / 6
        return sigma.clamp(min=self.min_sigma)

    def heatmap_target(self, centers: Tensor, sigmas: Tensor,
                       size: Tuple[int, int]) -> Tensor:
        """Eq. 3 on a (h, w) patch grid for (n, 2) centres in patch units."""
        h, w = size
        target = centers.new_zeros(h, w)
        if len(centers) == 0:
            return target
        ys = torch.arange(h, device=centers.device, dtype=centers.dtype) + .5
        xs = torch.arange(w, device=centers.device, dtype=centers.dtype) + .5
        dx2 = (xs[None, :] - centers[:, :1])**2  # (n, w)
        dy2 = (ys[None, :] - centers[:, 1:])**2  # (n, h)
        g = torch.exp(-(dy2[:, :, None] + dx2[:, None, :]) /
                      (2 * sigmas[:, None, None]**2))
        target = g.max(0).values
        cx = centers[:, 0].long().clamp(0, w - 1)
        cy = centers[:, 1].long().clamp(0, h - 1)
        target[cy, cx] = 1
        return target

    def get_targets(self,
                    boxes: List[Tensor],
                    size: Tuple[int, int],
                    stride: float,
                    is_point: Optional[Sequence[bool]] = None
                    ) -> Dict[str, Tensor]:
        """Targets of every prompt from its (n, 4) xyxy boxes in pixels.

        Prompts flagged in ``is_point`` locate keypoints, given as boxes of
        zero size at the point: sigma ``point_sigma``, no wh target.
        """
        h, w = size
        is_point = is_point or [False] * len(boxes)
        heat, wh, weight = [], [], []
        for b, point in zip(boxes, is_point):
            b = b / stride
            centers = (b[:, :2] + b[:, 2:]) / 2
            sizes = (b[:, 2:] - b[:, :2]).clamp(min=0)
            sigmas = (sizes.new_full((len(b), ), self.point_sigma)
                      if point else self.box_sigma(sizes))
            heat.append(self.heatmap_target(centers, sigmas, size))
            wh_t = b.new_zeros(2, h, w)
            wt = b.new_zeros(2, h, w)
            cx = centers[:, 0].long().clamp(0, w - 1)
            cy = centers[:, 1].long().clamp(0, h - 1)
            wh_t[:, cy, cx] = sizes.t()
            wt[:, cy, cx] = 0 if point else 1
            wh.append(wh_t)
            weight.append(wt)
        return dict(
            heatmap=torch.stack(heat)[:, None],
            wh=torch.stack(wh),
            wh_weight=torch.stack(weight))

    # -- loss ---------------------------------------------------------------
    def loss(self,
             preds: Dict[str, Tensor],
             boxes: List[Tensor],
             stride: float,
             is_point: Optional[Sequence[bool]] = None,
             images: Optional[Sequence[int]] = None) -> Dict[str, Tensor]:
        """Gaussian focal loss on the heatmap and L1 on wh at the centres.

        ``images`` gives the image of each prompt; ``loss_norm='image'``
        needs it.
        """
        # in float32 also under bfloat16 autocast, where 1 - 1e-4 rounds to 1
        heatmap, wh = preds['heatmap'].float(), preds['wh'].float()
        targets = self.get_targets(boxes, heatmap.shape[-2:], stride,
                                   is_point)
        peaks = targets['heatmap'].eq(1).flatten(1).sum(1).float()
        centres = targets['wh_weight'].flatten(1).sum(1)
        heat_weight, wh_weight = None, targets['wh_weight']
        if self.loss_norm == 'image':
            if images is None:
                raise ValueError("HeatmapHead(loss_norm='image') needs the "
                                 'image index of each prompt (images=...)')
            heat_weight = self._image_weights(peaks, images)[:, None, None,
                                                             None]
            wh_weight = wh_weight * self._image_weights(
                centres, images)[:, None, None, None]
            heat_norm = wh_norm = 1.0
        else:
            heat_norm = max(1.0, float(peaks.sum()))
            wh_norm = max(1.0, float(centres.sum()))
        loss_heatmap = self.loss_heatmap(
            heatmap.sigmoid().clamp(1e-4, 1 - 1e-4),
            targets['heatmap'],
            weight=heat_weight,
            avg_factor=heat_norm)
        loss_wh = self.loss_wh(
            wh, targets['wh'], wh_weight, avg_factor=wh_norm)
        return dict(loss_heatmap=loss_heatmap, loss_wh=loss_wh)

    @staticmethod
    def _image_weights(counts: Tensor, images: Sequence[int]) -> Tensor:
        """Per-prompt weights that divide each image's loss by its own count
        (at least 1) and average over the images of the batch. An image
        with no count (keypoints have no wh centres) adds nothing but still
        counts in the mean."""
        index = torch.as_tensor(list(images), device=counts.device)
        _, index = index.unique(return_inverse=True)
        num_images = int(index.max()) + 1
        per_image = counts.new_zeros(num_images).index_add_(0, index, counts)
        return 1 / (per_image.clamp(min=1)[index] * num_images)

    # -- decoding -----------------------------------------------------------
    def decode_boxes(self, preds: Dict[str, Tensor], k: int,
                     stride: float) -> Tuple[Tensor, Tensor, Tensor]:
        """Peak selection + box decoder: (P, k) scores, (P, k, 4) xyxy
        boxes and (P, k, 2) centres, in input pixels."""
        scores, points = self.peak_selector(preds['heatmap'].sigmoid(), k)
        h, w = preds['wh'].shape[-2:]
        cell = (points[..., 1].long().clamp(0, h - 1) * w +
                points[..., 0].long().clamp(0, w - 1))
        wh = preds['wh'].flatten(2).gather(
            2, cell[:, None].expand(-1, 2, -1)).permute(0, 2, 1)
        wh = wh.clamp(min=0)
        boxes = torch.cat([points - wh / 2, points + wh / 2], dim=-1)
        return scores, boxes * stride, points * stride

    def predict_by_feat(self,
                        preds: Dict[str, Tensor],
                        img_meta: dict,
                        cfg: dict,
                        stride: float,
                        rescale: bool = True) -> InstanceData:
        """Boxes of one image's prompts (as ``CenterNetHead.predict_by_feat``).

        Top-``cfg['topk']`` peaks per prompt become boxes; NMS across the
        image's prompts when ``cfg['nms_iou']`` is set, keeping
        ``cfg['max_per_img']``. Each box takes its prompt's label
        (``img_meta['prompt_labels']``) and name (``img_meta['prompts']``,
        in ``label_names``, which mmdet's visualiser draws).

        Args:
            preds: the aligner's ``heatmap`` (P, 1, h, w) and ``wh`` maps of
                the image's P prompts.
            img_meta: the data sample's metainfo.
            cfg: the task's test settings.
            stride: input pixels per heatmap cell.
            rescale: boxes in the original image (``scale_factor``).

        Peaks are taken only from the cells over the image (not the bottom
        and right padding of a non-square input, ``ori_shape`` x
        ``scale_factor``); boxes are clipped to the image, and the ones the
        clipping left without area are dropped.
        """
        content = self.content_cells(preds['heatmap'], img_meta, stride)
        if content is not None:  # no peaks from the padding
            rows, cols = content
            heatmap = preds['heatmap'].clone()
            heatmap[..., rows:, :] = -torch.inf
            heatmap[..., :, cols:] = -torch.inf
            preds = dict(preds, heatmap=heatmap)
        scores, boxes, points = self.decode_boxes(preds, cfg['topk'], stride)
        prompt = torch.arange(
            len(scores), device=scores.device)[:, None].expand_as(scores)
        prompt, scores, boxes, points = (prompt.flatten(), scores.flatten(),
                                         boxes.flatten(0, 1),
                                         points.flatten(0, 1))
        if content is not None:
            # a k larger than the image's cells still picks padding cells
            # (score 0): drop them, clip the rest to the image
            height, width = self._content_pixels(img_meta, preds, stride)
            inside = ((points[:, 0] / stride).floor() < cols) & (
                (points[:, 1] / stride).floor() < rows)
            boxes = HorizontalBoxes(boxes)
            had_area = boxes.areas > 0
            boxes.clip_((height, width))
            # a box that lost all its area to the clipping lay in the
            # padding (a zero-size wh prediction is the model's answer)
            keep = inside & ~(had_area & (boxes.areas <= 0))
            boxes = boxes.tensor
            prompt, scores, boxes = prompt[keep], scores[keep], boxes[keep]
        labels = torch.as_tensor(
            img_meta['prompt_labels'], device=scores.device).clamp(min=0)
        labels = labels[prompt]
        if cfg.get('nms_iou') is not None:
            # torchvision's NMS runs on CUDA tensors whatever mmcv was built
            # with (mmcv's ops may be CPU-only).
            keep = batched_nms(boxes, scores, labels, cfg['nms_iou'])
            keep = keep[:cfg.get('max_per_img', len(keep))]
            prompt, scores, boxes, labels = (prompt[keep], scores[keep],
                                             boxes[keep], labels[keep])
        if rescale and 'scale_factor' in img_meta:
            boxes /= boxes.new_tensor(img_meta['scale_factor']).repeat(2)
        results = InstanceData(bboxes=boxes, scores=scores, labels=labels)
        results.label_names = [img_meta['prompts'][i] for i in prompt.tolist()]
        return results

    @staticmethod
    def _content_pixels(img_meta: dict, preds: Dict[str, Tensor],
                        stride: float) -> Tuple[int, int]:
        """(h, w) input pixels of the image in the padded input (mmdet's
        ``Pad`` sets ``img_shape`` to the padded size), at least 1 each."""
        grid_h, grid_w = preds['heatmap'].shape[-2:]
        ori_h, ori_w = img_meta['ori_shape'][:2]
        fx, fy = img_meta['scale_factor']
        return (max(1, min(round(ori_h * fy), round(grid_h * stride))),
                max(1, min(round(ori_w * fx), round(grid_w * stride))))

    def content_cells(self, heatmap: Tensor, img_meta: dict,
                      stride: float) -> Optional[Tuple[int, int]]:
        """Rows and columns of heatmap cells that overlap the image; None
        without ``ori_shape`` and ``scale_factor`` (no known padding)."""
        if 'ori_shape' not in img_meta or 'scale_factor' not in img_meta:
            return None
        h, w = self._content_pixels(img_meta, dict(heatmap=heatmap), stride)
        return math.ceil(h / stride), math.ceil(w / stride)

    @staticmethod
    def predict_count(results: InstanceData, score_thr: float) -> int:
        """Counting (Sec. 4.4): the peaks scored above ``score_thr``."""
        return int((results.scores > score_thr).sum())

    def predict_keypoints(self, preds: Dict[str, Tensor], img_meta: dict,
                          stride: float, rescale: bool = True
                          ) -> InstanceData:
        """The best peak of each keypoint prompt of one person crop, mapped
        back to the image (mmpose's top-down convention: ``input_center``,
        ``input_scale``, ``input_size``); a crop-less image (an instruction)
        is rescaled by ``scale_factor``."""
        scores, _, points = self.decode_boxes(preds, 1, stride)
        points = points[:, 0]
        if 'input_center' in img_meta:
            size = points.new_tensor(img_meta['input_size'])
            scale = points.new_tensor(img_meta['input_scale'])
            center = points.new_tensor(img_meta['input_center'])
            points = points / size * scale + center - 0.5 * scale
        elif rescale and 'scale_factor' in img_meta:
            points = points / points.new_tensor(img_meta['scale_factor'])
        box = points.new_tensor(img_meta.get('person_bbox', [0, 0, 0, 0]))
        return InstanceData(
            keypoints=points[None],
            keypoint_scores=scores[None, :, 0],
            bboxes=box[None],
            bbox_scores=points.new_tensor(img_meta.get('bbox_score',
                                                       1.0)).reshape(1),
            labels=torch.zeros(1, dtype=torch.long, device=points.device))
