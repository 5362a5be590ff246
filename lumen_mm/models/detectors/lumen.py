"""Lumen as an mmdet detector: Stage 1 (LMM -> dense aligner), then each
task's Stage-2 decoder (Sec. 3)."""
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, SampleList
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor

from lumen_mm.engine.checkpoint import check_mmengine_load
from lumen_mm.tasks import TASKS, get_task, task_test_cfg, template_of
from ..backbones.conversation import TokenizedPrompt
from ..backbones.llava_lmm import PromptStates


class Query(NamedTuple):
    """One prompt of a batch: its image, tokens and heatmap targets."""
    image: int
    tokens: TokenizedPrompt
    targets: Tensor  # (n, 4) boxes in input pixels; zero-size for keypoints
    locate: bool  # goes through the aligner
    point: bool  # keypoint targets (sigma ``point_sigma``)


@dataclass(frozen=True)
class Stage1Output:
    """Stage 1 of a batch: the aligner's maps of every location query."""
    preds: Dict[str, Tensor]  # heatmap (P, 1, h, w), wh (P, 2, h, w)
    queries: List[Query]  # the P location queries
    loc_states: Optional[Tensor]  # (P, D) their [LOC] states
    llm: Optional[PromptStates]  # of every query, with the LM loss
    image_embeds: Tensor  # the LLM's image tokens
    patch_feats: Tensor  # what the aligner reads: CLIP (or SAM) features
    high_res_feats: Optional[Tensor]


@MODELS.register_module()
class Lumen(BaseDetector):
    """Lumen (Sec. 3): task-agnostic matching, then task-specific decoding.

    Each data sample is one image (one person crop for pose) with metainfo
    ``task`` (see :mod:`lumen_mm.tasks`), ``prompts`` (what to locate, a VQA
    conversation's questions with its ``answers``, or one instruction) and
    ``prompt_labels`` (per prompt, the label of its ``gt_instances``). The
    vision tower runs once per image, the LLM once per shared prefix, the
    aligner once per batch.

    Args:
        backbone: the LMM (:class:`LlavaLMM`).
        neck: the dense aligner; ``text_dim``, ``vision_dim`` (and
            ``high_res_dim``) are filled in.
        bbox_head: :class:`HeatmapHead`.
        mask_head: :class:`SamMaskHead` for the mask tasks; None: no masks.
        loss_lm_weight: lambda_t of Eq. 5 (lambda_h lives in the head's loss).
        loc_words_loss: :class:`LocWordsLoss` (not in the paper), or None.
        aligner_features: ``'clip'``: the aligner reads the LMM's CLIP tower
            at high resolution (the paper); ``'sam'``: the mask head's SAM
            embeddings (Table 3c).
        high_res_encoder: an additional image encoder (e.g. mmdet's
            ``ResNet``) whose last output the aligner reads beside the
            patches; its ``feat_dim`` fills in the neck's ``high_res_dim``.
        max_new_tokens: answer length limit of VQA and instructions.
        test_cfg: per task, settings of its decoder (``topk``, ``nms_iou``,
            ``max_per_img``, ``score_thr``) over the task table's defaults.
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
        self.test_cfg = task_test_cfg(test_cfg)
        self.train_cfg = train_cfg or {}
        self.backbone = MODELS.build(backbone)
        self.bbox_head = MODELS.build(bbox_head)
        self.mask_head = MODELS.build(mask_head) if mask_head else None
        self.aligner_features = aligner_features
        source = self.mask_head if aligner_features == 'sam' else self.backbone
        neck = dict(neck, text_dim=self.backbone.text_dim,
                    vision_dim=source.feat_dim)
        self.high_res_encoder = None
        if high_res_encoder:
            self.high_res_encoder = MODELS.build(high_res_encoder)
            if not hasattr(self.high_res_encoder, 'feat_dim'):
                raise ValueError(
                    f'high_res_encoder {high_res_encoder["type"]!r} has no '
                    '`feat_dim` (the channels of its last output) to fill in '
                    "the neck's high_res_dim: use mmdet's ResNet, or give "
                    'the encoder a feat_dim attribute.')
            neck['high_res_dim'] = self.high_res_encoder.feat_dim
        self.neck = MODELS.build(neck)
        # input pixels per heatmap cell; an aligner may read each feature
        # cell out as upsample x upsample heatmap cells
        self.stride = source.feat_stride(
            self.backbone.aligner_image_size) / self.neck.upsample
        self.loss_lm_weight = loss_lm_weight
        self.loc_words_loss = MODELS.build(
            dict(loc_words_loss,
                 text_dim=self.backbone.text_dim,
                 vocab_size=self.backbone.hf_model.get_input_embeddings()
                 .num_embeddings)) if loc_words_loss else None
        self.max_new_tokens = max_new_tokens

    @property
    def with_mask_loss(self) -> bool:
        return self.mask_head is not None and (self.mask_head.train_decoder or
                                               self.mask_head.train_encoder)

    # -- Stage 1: prompts -> LLM -> [LOC] -> aligner (Eq. 1-2) -------------
    def _queries(self, data_samples: SampleList, training: bool,
                 device) -> List[Query]:
        """The prompts of a batch, tokenised, with their heatmap targets."""
        conv = self.backbone.conversation
        none = torch.zeros(0, 4, device=device)
        queries = []
        for i, sample in enumerate(data_samples):
            task = get_task(sample.metainfo.get('task', 'det'))
            texts = sample.metainfo.get('prompts')
            if not texts:
                raise ValueError(
                    'A data sample has no `prompts`: add a Lumen*Prompts '
                    'transform to the pipeline and pack with PackLumenInputs '
                    '(it keeps "prompts", "prompt_labels" and "task").')
            if not task.locates:
                if training:  # one conversation: every answer is trained
                    tokens = conv.chat_prompt(
                        list(zip(texts, sample.metainfo['answers'])))
                    queries.append(Query(i, tokens, none, False, False))
                continue  # at test time these are generated, not forwarded
            gt = sample.get('gt_instances', None)
            boxes = get_box_tensor(gt.bboxes) if gt is not None and len(
                gt) else None
            template = template_of(task.name).name
            for text, label in zip(texts, sample.metainfo['prompt_labels']):
                targets = none if boxes is None else (
                    boxes if label < 0 else boxes[gt.labels == label])
                queries.append(
                    Query(i, conv.location_prompt(template, text, training),
                          targets, True, task.decoder == 'keypoints'))
        return queries

    def stage1(self, inputs: Tensor, data_samples: SampleList,
               training: bool) -> Stage1Output:
        """Heatmap and wh logits of every location query of the batch."""
        image_embeds, patch_feats = self.backbone.encode_images(inputs)
        if self.aligner_features == 'sam':
            patch_feats = self.mask_head.encode(inputs, data_samples)
        high_res_feats = (self.high_res_encoder(inputs)[-1]
                          if self.high_res_encoder is not None else None)
        queries = self._queries(data_samples, training, inputs.device)
        llm = self.backbone.forward_prompts(
            image_embeds, [q.image for q in queries],
            [q.tokens for q in queries], training) if queries else None
        locate = [i for i, q in enumerate(queries) if q.locate]
        loc_states = llm.loc_states[locate] if locate else None
        preds = self.neck(
            loc_states, patch_feats, [queries[i].image for i in locate],
            high_res_feats=high_res_feats) if locate else {}
        return Stage1Output(preds, [queries[i] for i in locate], loc_states,
                            llm, image_embeds, patch_feats, high_res_feats)

    # -- mmdet API ----------------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        out = self.stage1(inputs, data_samples, True)
        queries = out.queries
        if queries:
            losses = self.bbox_head.loss(out.preds,
                                         [q.targets for q in queries],
                                         self.stride,
                                         [q.point for q in queries],
                                         [q.image for q in queries])
        else:  # a batch of VQA only
            zero = sum(f.sum() * 0 for f in (out.patch_feats,
                                             out.high_res_feats)
                       if f is not None)
            losses = dict(loss_heatmap=zero, loss_wh=zero)
        losses['loss_lm'] = out.llm.loss_lm * self.loss_lm_weight
        if self.loc_words_loss is not None:
            losses['loss_loc_words'] = self.loc_words_loss(
                out.loc_states, [q.tokens.description_ids for q in queries])
        if self.with_mask_loss:  # the ablation of a trained mask decoder
            losses.update(self.mask_head.loss(inputs, data_samples))
        return losses

    def predict(self,
                inputs: Tensor,
                data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        out = self.stage1(inputs, data_samples, False)
        input_size = tuple(inputs.shape[-2:])
        cache = {}

        def sam_embeds() -> Tensor:
            """SAM's embeddings of the batch, encoded once, when a mask is
            asked for."""
            if 'sam' not in cache:
                cache['sam'] = (
                    out.patch_feats if self.aligner_features == 'sam' else
                    self.mask_head.encode(inputs, data_samples))
            return cache['sam']

        image_index = torch.as_tensor([q.image for q in out.queries],
                                      device=inputs.device)
        for i, sample in enumerate(data_samples):
            task = get_task(sample.metainfo.get('task', 'det'))
            if not task.locates:
                self._answer(out, i, sample, sam_embeds, input_size, rescale)
                continue
            mine = image_index == i
            # decode in fp32: bf16 boxes are 2-px coarse at 448 and
            # torchvision's NMS has no bf16 kernel
            preds = {k: v[mine].float() for k, v in out.preds.items()}
            self._decode(task.name, preds, sample, sample.metainfo,
                         sam_embeds, i, input_size, rescale)
        for sample in data_samples:
            # an input (SAM's copy of the original), not a result: kept, it
            # went into every --out pickle, 3 MB a sample at 1024 px
            if 'sam_image' in sample:
                del sample.sam_image
        return data_samples

    # -- Stage 2: each task's decoder (Sec. 3.2.2) -------------------------
    def _decode(self, task: str, preds: Dict[str, Tensor],
                sample: DetDataSample, img_meta: dict,
                sam_embeds: Callable[[], Tensor], i: int,
                input_size: Tuple[int, int], rescale: bool) -> None:
        """Fill ``sample`` with ``task``'s decoding of its prompts' maps."""
        decoder, cfg = TASKS[task].decoder, self.test_cfg[task]
        if sample.metainfo.get('return_heatmaps'):
            sample.heatmaps = preds['heatmap'][:, 0].sigmoid()
        if decoder == 'keypoints':
            sample.pred_instances = self.bbox_head.predict_keypoints(
                preds, img_meta, self.stride, rescale)
            return
        masks = decoder == 'masks' and self.mask_head is not None
        results = self.bbox_head.predict_by_feat(
            preds, img_meta, cfg, self.stride, rescale and not masks)
        if decoder == 'count':
            sample.pred_count = self.bbox_head.predict_count(
                results, cfg['score_thr'])
        if masks:  # SAM reads the boxes in input pixels, then rescales them
            if cfg.get('mask_score_thr') is not None:
                # a mask costs the original image's size in memory
                results = results[results.scores > cfg['mask_score_thr']]
            results = self.mask_head.predict(
                sam_embeds()[[i]], results, img_meta, input_size, rescale,
                mask_format=cfg.get('mask_format', 'auto'))
        sample.pred_instances = results

    def _answer(self, out: Stage1Output, i: int, sample: DetDataSample,
                sam_embeds: Callable[[], Tensor],
                input_size: Tuple[int, int], rescale: bool) -> None:
        """VQA and free-form instructions: generate the answer; a task token
        in it routes its ``[LOC]`` through that task's decoder."""
        conv = self.backbone.conversation
        instruction = sample.metainfo['prompts'][-1]
        answer = self.backbone.generate(
            out.image_embeds, [i], [conv.instruction_prompt(instruction)],
            self.max_new_tokens)[0]
        sample.pred_text = self.backbone.tokenizer.decode(
            answer['ids']).strip()
        token_task = conv.task_token_ids()
        routed = [token_task[t] for t in answer['ids'] if t in token_task]
        # a task token without a [LOC] before it has nothing to locate
        if not routed or answer['loc_state'] is None:
            sample.pred_task = 'text'
            return
        sample.pred_task = routed[0]
        preds = self.neck(
            answer['loc_state'][None], out.patch_feats, [i],
            high_res_feats=out.high_res_feats)
        preds = {k: v.float() for k, v in preds.items()}
        # the answer's one [LOC] is the instruction's one prompt
        meta = dict(sample.metainfo, prompts=[instruction], prompt_labels=[0])
        self._decode(sample.pred_task, preds, sample, meta, sam_embeds, i,
                     input_size, rescale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if not prefix:  # the whole model, as mmdet's init_detector loads it
            check_mmengine_load(self, state_dict)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _forward(self, inputs: Tensor, data_samples: SampleList = None):
        """Raw aligner outputs (heatmap and wh logits) of every prompt."""
        return self.stage1(inputs, data_samples, False).preds

    def extract_feat(self, inputs: Tensor):
        return self.backbone.encode_images(inputs)
