"""Lumen as an mmdet detector: LMM -> dense aligner -> heatmap decoding."""
from typing import Dict, List, Tuple

import torch
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms

from lumen_mm.datasets.conversation import TokenizedPrompt

BOX_TASKS = ('det', 'ground')


@MODELS.register_module()
class Lumen(BaseDetector):
    """Lumen (Sec. 3): task-agnostic matching, then task-specific decoding.

    Each data sample is one image with ``metainfo``:

    * ``task``: ``'det'`` or ``'ground'``;
    * ``prompts``: descriptions to locate (class names, or one referring
      sentence);
    * ``prompt_labels``: for each prompt the class whose ``gt_instances`` are
      its targets (``-1``: all of them, the referred object).

    All prompts of a batch go through the LLM as one batch; the vision tower
    runs once per image.

    Args:
        backbone: the LMM (:class:`LlavaLMM`).
        neck: the dense aligner; its ``text_dim``/``vision_dim`` are filled in
            from the backbone.
        bbox_head: :class:`HeatmapHead`.
        loss_lm_weight: lambda_t of Eq. 5 (lambda_h lives in the head's loss).
        test_cfg: per task ``dict(topk=..., nms_iou=..., max_per_img=...)``.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 bbox_head: dict,
                 loss_lm_weight: float = 1.0,
                 train_cfg: dict = None,
                 test_cfg: dict = None,
                 data_preprocessor: dict = None,
                 init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(
            dict(
                neck,
                text_dim=self.backbone.text_dim,
                vision_dim=self.backbone.vision_dim))
        self.bbox_head = MODELS.build(bbox_head)
        self.loss_lm_weight = loss_lm_weight
        self.train_cfg = train_cfg or {}
        self.test_cfg = dict(
            det=dict(topk=100, nms_iou=0.5, max_per_img=100),
            ground=dict(topk=1))
        for task, cfg in (test_cfg or {}).items():
            self.test_cfg[task] = dict(self.test_cfg.get(task, {}), **cfg)

    @property
    def stride(self) -> int:
        """Input pixels per heatmap cell."""
        return self.backbone.patch_size

    # -- shared Stage 1 ---------------------------------------------------
    def _prompts(self, data_samples: SampleList, with_answer: bool, device
                 ) -> Tuple[List[int], List[TokenizedPrompt], List[Tensor]]:
        """Tokenised prompts, their image index and their target boxes."""
        conv = self.backbone.conversation
        image_index, prompts, targets = [], [], []
        for i, sample in enumerate(data_samples):
            task = sample.metainfo.get('task', 'det')
            if task not in BOX_TASKS:
                raise ValueError(f'Unknown task {task!r}; Lumen handles '
                                 f'{BOX_TASKS}.')
            descriptions = sample.metainfo.get('prompts')
            if not descriptions:
                raise ValueError(
                    'A data sample has no `prompts`: add LumenDetPrompts or '
                    'LumenGroundPrompts to the pipeline and keep "prompts", '
                    '"prompt_labels" and "task" in PackDetInputs.meta_keys.')
            gt = sample.get('gt_instances', None)
            boxes = get_box_tensor(gt.bboxes) if gt is not None and len(
                gt) else None
            for text, label in zip(descriptions,
                                   sample.metainfo['prompt_labels']):
                image_index.append(i)
                prompts.append(conv.location_prompt(task, text, with_answer))
                if boxes is None:
                    targets.append(torch.zeros(0, 4, device=device))
                elif label < 0:
                    targets.append(boxes)
                else:
                    targets.append(boxes[gt.labels == label])
        return image_index, prompts, targets

    def _stage1(self, inputs: Tensor, data_samples: SampleList,
                training: bool) -> Tuple[Dict[str, Tensor], dict, list, list]:
        image_embeds, patch_feats = self.backbone.encode_images(inputs)
        image_index, prompts, targets = self._prompts(data_samples, training,
                                                      inputs.device)
        lmm = self.backbone.forward_prompts(
            image_embeds, image_index, prompts, with_lm_loss=training)
        preds = self.neck(lmm['loc_states'], patch_feats, image_index)
        return preds, lmm, image_index, targets

    # -- mmdet API ----------------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        preds, lmm, _, targets = self._stage1(inputs, data_samples, True)
        losses = self.bbox_head.loss(preds, targets, self.stride)
        losses['loss_lm'] = lmm['loss_lm'] * self.loss_lm_weight
        return losses

    def predict(self,
                inputs: Tensor,
                data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        preds, _, image_index, _ = self._stage1(inputs, data_samples, False)
        image_index = torch.as_tensor(image_index, device=inputs.device)
        for i, sample in enumerate(data_samples):
            task = sample.metainfo.get('task', 'det')
            mine = image_index == i
            image_preds = {k: v[mine] for k, v in preds.items()}
            labels = torch.as_tensor(
                sample.metainfo['prompt_labels'], device=inputs.device)
            result = self._decode_boxes(image_preds, labels,
                                        self.test_cfg[task])
            if rescale and 'scale_factor' in sample.metainfo:
                result.bboxes /= result.bboxes.new_tensor(
                    sample.metainfo['scale_factor']).repeat(2)
            sample.pred_instances = result
        return data_samples

    def _decode_boxes(self, preds: Dict[str, Tensor], labels: Tensor,
                      cfg: dict) -> InstanceData:
        """Top-K peaks per prompt -> boxes; NMS across the image's prompts."""
        scores, boxes, _ = self.bbox_head.decode_boxes(
            preds, cfg['topk'], self.stride)
        labels = labels.clamp(min=0)[:, None].expand_as(scores)
        scores, boxes, labels = (scores.flatten(), boxes.flatten(0, 1),
                                 labels.flatten())
        if cfg.get('nms_iou') is not None:
            # torchvision's NMS runs on CUDA tensors whatever mmcv was built
            # with (mmcv's ops may be CPU-only).
            keep = batched_nms(boxes, scores, labels, cfg['nms_iou'])
            keep = keep[:cfg.get('max_per_img', len(keep))]
            scores, boxes, labels = scores[keep], boxes[keep], labels[keep]
        return InstanceData(bboxes=boxes, scores=scores, labels=labels)

    def _forward(self, inputs: Tensor, data_samples: SampleList = None):
        """Raw aligner outputs (heatmap and wh logits) of every prompt."""
        return self._stage1(inputs, data_samples, False)[0]

    def extract_feat(self, inputs: Tensor):
        return self.backbone.encode_images(inputs)
