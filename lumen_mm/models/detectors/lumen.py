"""Lumen as an mmdet detector: LMM -> dense aligner -> task decoding."""
import inspect
from collections import defaultdict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, SampleList
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms

from lumen_mm.datasets.conversation import (IGNORE_INDEX, TASK_TOKENS,
                                            TokenizedPrompt)

# Tasks answered through the heatmap (Stage 1), and how Stage 2 decodes them.
LOCATION_TASKS = ('det', 'seg', 'ground', 'refseg', 'pose', 'count')
MASK_TASKS = ('seg', 'refseg')
# Tasks answered in text: VQA and free-form instructions (routed by the
# generated task token).
TEXT_TASKS = ('vqa', 'instruction')
TASKS = LOCATION_TASKS + TEXT_TASKS
# Counting asks for a class exactly as detection does (Sec. 4.4).
TEMPLATE_TASK = dict(count='det')


class Query(NamedTuple):
    """One prompt of a batch: its image, tokens and heatmap targets."""
    image: int
    tokens: TokenizedPrompt
    targets: Tensor  # (n, 4) boxes in input pixels; zero-size for keypoints
    locate: bool  # goes through the aligner
    point: bool  # keypoint targets (sigma ``point_sigma``)


@MODELS.register_module()
class Lumen(BaseDetector):
    """Lumen (Sec. 3): task-agnostic matching, then task-specific decoding.

    Each data sample is one image (one person crop for pose) with metainfo:

    * ``task``: one of :data:`TASKS`;
    * ``prompts``: what to locate (class names, a referring sentence,
      keypoint names), the questions of a VQA conversation (``answers``
      holds its answers), or one free-form instruction;
    * ``prompt_labels``: for each prompt the label whose ``gt_instances`` are
      its targets (grounding: the referred object's index).

    The vision tower runs once per image; the prompts of a batch run through
    the LLM grouped by their shared prefix (one KV cache per image and
    group), and all ``[LOC]`` states through the aligner as one batch.

    Args:
        backbone: the LMM (:class:`LlavaLMM`).
        neck: the dense aligner; its ``text_dim``/``vision_dim`` are filled in
            from the backbone.
        bbox_head: :class:`HeatmapHead`.
        mask_head: :class:`SamMaskHead` for the mask tasks; None: no masks.
        loss_lm_weight: lambda_t of Eq. 5 (lambda_h lives in the head's loss).
        loc_words_loss: :class:`LocWordsLoss`, for an LLM trained from
            scratch (not in the paper); its ``text_dim``/``vocab_size`` are
            filled in from the backbone. None: no such loss.
        aligner_features: ``'clip'``: the aligner reads the LMM's CLIP tower
            at high resolution (the paper's default); ``'sam'``: it reads the
            mask head's SAM image embeddings instead (Table 3c).
        high_res_encoder: an additional encoder of the input images whose
            features the aligner reads beside the patches, e.g. mmdet's
            ``ResNet`` with one stage (stride 4); its ``feat_dim`` fills in
            the neck's ``high_res_dim``. The paper tried SAM's ViT as such
            an additional backbone (Table 3c). None: the patches alone.
        max_new_tokens: answer length limit of VQA and instructions.
        test_cfg: per task ``dict(topk=..., nms_iou=..., max_per_img=...)``;
            counting adds ``score_thr``.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 bbox_head: dict,
                 mask_head: Optional[dict] = None,
                 loss_lm_weight: float = 1.0,
                 loc_words_loss: Optional[dict] = None,
                 aligner_features: str = 'clip',
                 high_res_encoder: Optional[dict] = None,
                 max_new_tokens: int = 32,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if aligner_features not in ('clip', 'sam'):
            raise ValueError(f'aligner_features must be "clip" or "sam", got '
                             f'{aligner_features!r}.')
        if aligner_features == 'sam' and not mask_head:
            raise ValueError('aligner_features="sam" reads the mask head\'s '
                             'SAM embeddings: configure a mask_head.')
        self.aligner_features = aligner_features
        self.backbone = MODELS.build(backbone)
        self.bbox_head = MODELS.build(bbox_head)
        self.mask_head = MODELS.build(mask_head) if mask_head else None
        vision_dim = (self.mask_head.sam.prompt_encoder.embed_dim
                      if aligner_features == 'sam' else
                      self.backbone.vision_dim)
        self.high_res_encoder = (MODELS.build(high_res_encoder)
                                 if high_res_encoder else None)
        if self.high_res_encoder is not None:
            neck_type = MODELS.get(neck['type']) if isinstance(
                neck['type'], str) else neck['type']
            if 'high_res_dim' not in inspect.signature(neck_type).parameters:
                raise ValueError(
                    f'high_res_encoder needs an aligner that reads its '
                    f'features, but the neck is {neck_type.__name__}: use '
                    "neck=dict(type='ConvDenseAligner', ...) or drop "
                    'high_res_encoder.')
            if not hasattr(self.high_res_encoder, 'feat_dim'):
                raise ValueError(
                    f'high_res_encoder {high_res_encoder["type"]!r} has no '
                    '`feat_dim` (the channels of its last output) to fill in '
                    "the neck's high_res_dim: use mmdet's ResNet, or give "
                    'the encoder a feat_dim attribute.')
            neck = dict(neck, high_res_dim=self.high_res_encoder.feat_dim)
        self.neck = MODELS.build(
            dict(
                neck,
                text_dim=self.backbone.text_dim,
                vision_dim=vision_dim))
        self.loss_lm_weight = loss_lm_weight
        self.loc_words_loss = MODELS.build(
            dict(loc_words_loss,
                 text_dim=self.backbone.text_dim,
                 vocab_size=self.backbone.hf_model.get_input_embeddings()
                 .num_embeddings)) if loc_words_loss else None
        self.max_new_tokens = max_new_tokens
        self.train_cfg = train_cfg or {}
        many = dict(topk=100, nms_iou=0.5, max_per_img=100)
        self.test_cfg = dict(
            det=many, seg=many, ground=dict(topk=1), refseg=dict(topk=1),
            pose=dict(topk=1), count=dict(topk=100, score_thr=0.3))
        for task, cfg in (test_cfg or {}).items():
            self.test_cfg[task] = dict(self.test_cfg.get(task, {}), **cfg)

    @property
    def stride(self) -> float:
        """Input pixels per heatmap cell."""
        if self.aligner_features == 'sam':
            # SAM resizes the (square) input to its own size, then patches it
            encoder = self.mask_head.sam.image_encoder
            cells = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
            patch = self.backbone.aligner_image_size / cells
        else:
            patch = self.backbone.patch_size
        # an aligner may read each patch out as upsample x upsample cells
        return patch / getattr(self.neck, 'upsample', 1)

    @property
    def with_mask_loss(self) -> bool:
        return self.mask_head is not None and (self.mask_head.train_decoder or
                                               self.mask_head.train_encoder)

    # -- Stage 1: prompts -> LLM -> [LOC] -> aligner -----------------------
    def _queries(self, data_samples: SampleList, training: bool,
                 device) -> List[Query]:
        """The prompts of a batch, tokenised, with their heatmap targets."""
        conv = self.backbone.conversation
        queries = []
        for i, sample in enumerate(data_samples):
            task = sample.metainfo.get('task', 'det')
            if task not in TASKS:
                raise ValueError(
                    f'Unknown task {task!r}; Lumen handles {TASKS}. Set it '
                    'with the task argument of the Lumen*Prompts transform '
                    '(or of LumenInferencer).')
            texts = sample.metainfo.get('prompts')
            if not texts:
                raise ValueError(
                    'A data sample has no `prompts`: add a Lumen*Prompts '
                    'transform to the pipeline and keep "prompts", '
                    '"prompt_labels" and "task" in PackDetInputs.meta_keys.')
            none = torch.zeros(0, 4, device=device)
            if task in TEXT_TASKS:
                if training:  # one conversation: every answer is trained
                    tokens = conv.chat_prompt(
                        list(zip(texts, sample.metainfo['answers'])))
                    queries.append(Query(i, tokens, none, False, False))
                continue  # at test time these are generated, not forwarded
            gt = sample.get('gt_instances', None)
            boxes = get_box_tensor(gt.bboxes) if gt is not None and len(
                gt) else None
            template = TEMPLATE_TASK.get(task, task)
            for text, label in zip(texts, sample.metainfo['prompt_labels']):
                if boxes is None:
                    targets = none
                elif label < 0:
                    targets = boxes
                else:
                    targets = boxes[gt.labels == label]
                queries.append(
                    Query(i, conv.location_prompt(template, text, training),
                          targets, True, task == 'pose'))
        return queries

    def _run_llm(self, image_embeds: Tensor, queries: Sequence[Query],
                 with_lm_loss: bool) -> Dict[str, Tensor]:
        """The LLM on every query, one call per shared prefix.

        Location prompts share "...Please find the location of" and VQA
        conversations share less, so each group keeps its own KV-cache
        sharing. The LM loss averages over all answer tokens of the batch.
        """
        groups = defaultdict(list)
        for i, q in enumerate(queries):
            groups[tuple(q.tokens.input_ids[:q.tokens.prefix_len])].append(i)
        order, states, loss, num_tokens = [], [], 0., 0
        for members in groups.values():
            out = self.backbone.forward_prompts(
                image_embeds, [queries[i].image for i in members],
                [queries[i].tokens for i in members], with_lm_loss)
            order += members
            states.append(out['loc_states'])
            if with_lm_loss:
                n = sum(
                    sum(t != IGNORE_INDEX for t in queries[i].tokens.labels[1:])
                    for i in members)
                loss = loss + out['loss_lm'] * n
                num_tokens += n
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.as_tensor(order)] = torch.arange(len(order))
        out = dict(loc_states=torch.cat(states)[inverse.to(image_embeds.device)])
        if with_lm_loss:
            out['loss_lm'] = loss / max(num_tokens, 1)
        return out

    def _stage1(self, inputs: Tensor, data_samples: SampleList,
                training: bool):
        """Heatmap and wh logits of every location query (Eq. 1-2)."""
        image_embeds, patch_feats = self.backbone.encode_images(inputs)
        if self.aligner_features == 'sam':
            patch_feats = self.mask_head.encode(inputs)
        high_res_feats = (self.high_res_encoder(inputs)[-1]
                          if self.high_res_encoder is not None else None)
        queries = self._queries(data_samples, training, inputs.device)
        llm = self._run_llm(image_embeds, queries,
                            training) if queries else {}
        locate = [i for i, q in enumerate(queries) if q.locate]
        loc_states = llm['loc_states'][locate] if locate else None  # (P, D)
        preds = self._align(
            loc_states, patch_feats, high_res_feats,
            [queries[i].image for i in locate]) if locate else {}
        return dict(
            preds=preds,
            queries=[queries[i] for i in locate],
            loc_states=loc_states,
            llm=llm,
            image_embeds=image_embeds,
            patch_feats=patch_feats,
            high_res_feats=high_res_feats,
            # SAM's embeddings, when the aligner already computed them
            sam_embeds=patch_feats if self.aligner_features == 'sam' else None)

    def _align(self, loc_states: Tensor, patch_feats: Tensor,
               high_res_feats: Optional[Tensor],
               prompt_image: Sequence[int]) -> Dict[str, Tensor]:
        """The aligner on each ``[LOC]`` state and its image's features."""
        if high_res_feats is None:
            return self.neck(loc_states, patch_feats, prompt_image)
        return self.neck(loc_states, patch_feats, prompt_image,
                         high_res_feats=high_res_feats)

    # -- mmdet API ----------------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        out = self._stage1(inputs, data_samples, True)
        queries = out['queries']
        if queries:
            losses = self.bbox_head.loss(out['preds'],
                                         [q.targets for q in queries],
                                         self.stride,
                                         [q.point for q in queries],
                                         [q.image for q in queries])
        else:  # a batch of VQA only
            zero = sum(f.sum() * 0 for f in (out['patch_feats'],
                                             out['high_res_feats'])
                       if f is not None)
            losses = dict(loss_heatmap=zero, loss_wh=zero)
        losses['loss_lm'] = out['llm']['loss_lm'] * self.loss_lm_weight
        if self.loc_words_loss is not None:
            losses['loss_loc_words'] = self.loc_words_loss(
                out['loc_states'],
                [q.tokens.description_ids for q in queries])
        if self.with_mask_loss:
            losses.update(self._mask_loss(inputs, data_samples))
        return losses

    def _mask_loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Train SAM's decoder on ground-truth boxes (the ablation of a
        trained mask decoder; the paper keeps SAM frozen)."""
        chosen = [
            i for i, s in enumerate(data_samples)
            if s.metainfo.get('task') in MASK_TASKS and 'masks' in s.get(
                'gt_instances', {})
        ]
        if not chosen:
            zero = sum(p.sum() * 0 for p in self.mask_head.parameters()
                       if p.requires_grad)
            return dict(loss_mask=zero, loss_dice=zero)
        gts = [data_samples[i].gt_instances for i in chosen]
        embeddings = self.mask_head.encode(inputs[chosen])
        logits = self.mask_head.predict_masks(
            embeddings, [get_box_tensor(g.bboxes) for g in gts],
            input_size=tuple(inputs.shape[-2:]))
        return self.mask_head.loss(logits, [g.masks for g in gts])

    def predict(self,
                inputs: Tensor,
                data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        out = self._stage1(inputs, data_samples, False)
        image_index = torch.as_tensor([q.image for q in out['queries']],
                                      device=inputs.device)
        for i, sample in enumerate(data_samples):
            task = sample.metainfo['task']
            if task in TEXT_TASKS:
                self._answer(inputs, out, i, sample, rescale)
                continue
            mine = image_index == i
            # decode in fp32: bf16 boxes are 2-px coarse at 448 and
            # torchvision's NMS has no bf16 kernel
            preds = {k: v[mine].float() for k, v in out['preds'].items()}
            labels = torch.as_tensor(
                sample.metainfo['prompt_labels'], device=inputs.device)
            self._decode(inputs, i, sample, task, preds, labels, rescale, out)
        return data_samples

    # -- Stage 2: task decoding (Sec. 3.2.2) -------------------------------
    def _decode(self,
                inputs: Tensor,
                i: int,
                sample: DetDataSample,
                task: str,
                preds: Dict[str, Tensor],
                labels: Tensor,
                rescale: bool,
                out: dict) -> None:
        """Fill ``sample`` with the ``task`` pathway's output of ``preds``
        (``out``: the batch's Stage-1 outputs, which keep SAM's embeddings)."""
        cfg = self.test_cfg[task]
        if sample.metainfo.get('return_heatmaps'):
            sample.heatmaps = preds['heatmap'][:, 0].sigmoid()
        if task == 'pose':
            sample.pred_instances = self._decode_keypoints(
                preds, sample, rescale)
            return
        result = self._decode_boxes(preds, labels, cfg)
        if task == 'count':
            # 100 peaks, the confident ones counted (Sec. 4.4)
            sample.pred_count = int((result.scores > cfg['score_thr']).sum())
        if task in MASK_TASKS and self.mask_head is not None:
            embeds = self._sam_embeddings(inputs, out)
            result.masks = self._decode_masks(embeds[[i]],
                                              tuple(inputs.shape[-2:]),
                                              result.bboxes, sample, rescale)
        if rescale and 'scale_factor' in sample.metainfo:
            result.bboxes /= result.bboxes.new_tensor(
                sample.metainfo['scale_factor']).repeat(2)
        sample.pred_instances = result

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

    def _sam_embeddings(self, inputs: Tensor, out: dict) -> Tensor:
        """SAM's embeddings of the whole batch, encoded once per batch."""
        if out.get('sam_embeds') is None:
            out['sam_embeds'] = self.mask_head.encode(inputs)
        return out['sam_embeds']

    def _decode_masks(self, embedding: Tensor, input_size: Tuple[int, int],
                      boxes: Tensor, sample: DetDataSample,
                      rescale: bool) -> Tensor:
        """SAM prompted with each box and its centre; masks in the original
        frame (bool, N x H x W) when ``rescale``."""
        logits = self.mask_head.predict_masks(
            embedding, [boxes], input_size=input_size)[0]
        h, w = sample.metainfo.get('img_shape', input_size)[:2]
        logits = logits[:, :h, :w]  # drop the padding
        if rescale and 'ori_shape' in sample.metainfo and len(logits):
            logits = F.interpolate(
                logits[:, None], sample.metainfo['ori_shape'][:2],
                mode='bilinear', align_corners=False)[:, 0]
        return logits > 0

    def _decode_keypoints(self, preds: Dict[str, Tensor],
                          sample: DetDataSample,
                          rescale: bool) -> InstanceData:
        """The best peak of each keypoint prompt, mapped from the person
        crop back to the image (mmpose's top-down convention)."""
        scores, _, points = self.bbox_head.decode_boxes(preds, 1, self.stride)
        points = points[:, 0]
        meta = sample.metainfo
        if 'input_center' in meta:
            size = points.new_tensor(meta['input_size'])
            scale = points.new_tensor(meta['input_scale'])
            center = points.new_tensor(meta['input_center'])
            points = points / size * scale + center - 0.5 * scale
        elif rescale and 'scale_factor' in meta:  # an instruction, no crop
            points = points / points.new_tensor(meta['scale_factor'])
        box = points.new_tensor(meta.get('person_bbox', [0, 0, 0, 0]))
        return InstanceData(
            keypoints=points[None],
            keypoint_scores=scores[None, :, 0],
            bboxes=box[None],
            bbox_scores=points.new_tensor(meta.get('bbox_score', 1.0)).reshape(1),
            labels=torch.zeros(1, dtype=torch.long, device=points.device))

    def _answer(self, inputs: Tensor, out: dict, i: int,
                sample: DetDataSample, rescale: bool) -> None:
        """VQA and free-form instructions: generate the answer; a task token
        in it routes its ``[LOC]`` through that task's decoding."""
        conv = self.backbone.conversation
        prompt = conv.instruction_prompt(sample.metainfo['prompts'][-1])
        answer = self.backbone.generate(out['image_embeds'], [i], [prompt],
                                        self.max_new_tokens)[0]
        tokenizer = self.backbone.tokenizer
        sample.pred_text = tokenizer.decode(answer['ids']).strip()
        token_task = {
            tokenizer.convert_tokens_to_ids(token): task
            for task, token in TASK_TOKENS.items()
        }
        routed = [token_task[t] for t in answer['ids'] if t in token_task]
        # a task token without a [LOC] before it has nothing to locate
        if not routed or answer['loc_state'] is None:
            sample.pred_task = 'text'
            return
        sample.pred_task = routed[0]
        preds = self._align(answer['loc_state'][None], out['patch_feats'],
                            out['high_res_feats'], [i])
        preds = {k: v.float() for k, v in preds.items()}
        labels = torch.zeros(1, dtype=torch.long, device=inputs.device)
        self._decode(inputs, i, sample, sample.pred_task, preds, labels,
                     rescale, out)

    def _forward(self, inputs: Tensor, data_samples: SampleList = None):
        """Raw aligner outputs (heatmap and wh logits) of every prompt."""
        return self._stage1(inputs, data_samples, False)['preds']

    def extract_feat(self, inputs: Tensor):
        return self.backbone.encode_images(inputs)
