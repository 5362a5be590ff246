"""Lumen's tasks, each defined once.

Every vision-centric task is one instruction template (Sec. 3.1.1) plus one
Stage-2 decoder (Sec. 3.2.2); VQA and free-form instructions are answered in
text. The conversation template, the prompt transforms, :class:`Lumen`, the
inferencer, the task-routed metrics and the packing of data samples all read
this table: adding a task is one entry here plus its decoder.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

# What every packed Lumen sample keeps in its metainfo (mmdet's defaults plus
# the three keys that route a sample through Lumen, and SAM's image size).
BASE_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                  'scale_factor', 'task', 'prompts', 'prompt_labels',
                  'sam_shape')

# Stage-2 decoders.
DECODERS = ('boxes', 'masks', 'keypoints', 'count', 'text')


@dataclass(frozen=True)
class Task:
    """One task of Lumen.

    Args:
        name: the task's name in data samples (``metainfo['task']``).
        prompts: what a prompt of the task is: ``'classes'`` (one prompt per
            class name), ``'text'`` (a referring sentence), ``'keypoints'``
            (one prompt per keypoint name of a person crop),
            ``'conversation'`` (LLaVA-Instruct turns) or ``'instruction'``.
        decoder: the Stage-2 pathway (one of :data:`DECODERS`).
        token: the task token that ends the answer (``[DET]``...); None for
            text tasks.
        answer_format: the "Respond with ..." word of the instruction.
        template: the task whose template this one asks with (counting asks
            as detection does, Sec. 4.4); None: its own.
        test_cfg: default Stage-2 settings (``topk``, ``nms_iou``,
            ``max_per_img``, ``score_thr``; ``mask_score_thr``: mask tasks
            keep only the boxes scored above it, and their masks;
            ``mask_format``: one of :data:`MASK_FORMATS`).
        meta_keys: metainfo keys the task needs beyond
            :data:`BASE_META_KEYS`.
    """
    name: str
    prompts: str
    decoder: str
    token: Optional[str] = None
    answer_format: Optional[str] = None
    template: Optional[str] = None
    test_cfg: Dict[str, float] = field(default_factory=dict)
    meta_keys: Tuple[str, ...] = ()

    @property
    def locates(self) -> bool:
        """Answered through ``[LOC]`` and the heatmap (Stage 1)."""
        return self.decoder != 'text'


_MANY = dict(topk=100, nms_iou=0.5, max_per_img=100)
_ONE = dict(topk=1)

TASKS: Dict[str, Task] = {
    t.name: t
    for t in (
        Task('det', 'classes', 'boxes', '[DET]', 'boxes', test_cfg=_MANY),
        # masks only for boxes scored above mask_score_thr (mmdet's Mask
        # R-CNN keeps rcnn.score_thr=0.05): 100 full-size masks of a large
        # image do not fit in memory
        Task('seg', 'classes', 'masks', '[SEG]', 'masks',
             test_cfg=dict(_MANY, mask_score_thr=0.05)),
        Task('pose', 'keypoints', 'keypoints', '[POINT]', 'points',
             test_cfg=_ONE,
             meta_keys=('id', 'category_id', 'person_bbox', 'bbox_score',
                        'input_center', 'input_scale', 'input_size')),
        Task('ground', 'text', 'boxes', '[GROUND]', 'boxes', test_cfg=_ONE),
        Task('refseg', 'text', 'masks', '[REFSEG]', 'masks', test_cfg=_ONE),
        # 100 peaks, the confident ones counted (Sec. 4.4)
        Task('count', 'classes', 'count', template='det',
             test_cfg=dict(topk=100, score_thr=0.3),
             meta_keys=('gt_count', )),
        Task('vqa', 'conversation', 'text',
             meta_keys=('answers', 'question_type')),
        Task('instruction', 'instruction', 'text'),
    )
}

# Tasks with a template of their own: their tokens are Lumen's special tokens.
TEMPLATE_TASKS = tuple(n for n, t in TASKS.items() if t.token is not None)

# Every metainfo key any task needs, in a stable order.
META_KEYS = BASE_META_KEYS + tuple(
    dict.fromkeys(k for t in TASKS.values() for k in t.meta_keys))


def get_task(name: str) -> Task:
    """The task called ``name``, or an error that lists the known ones."""
    if name not in TASKS:
        raise ValueError(f'Unknown task {name!r}; Lumen handles '
                         f'{tuple(TASKS)}. Set it with the task argument of '
                         'the Lumen*Prompts transform (or of '
                         'LumenInferencer).')
    return TASKS[name]


def template_of(name: str) -> Task:
    """The task whose conversation template ``name`` is asked with."""
    task = get_task(name)
    return TASKS[task.template] if task.template else task


TEST_CFG_KEYS = ('topk', 'nms_iou', 'max_per_img', 'score_thr',
                 'mask_score_thr', 'mask_format')
# pred_instances.masks of the mask tasks: an (n, H, W) bool tensor (mmdet's
# convention), or a list of COCO RLE dicts (mmdet's encode_mask_results;
# CocoMetric reads them as they are): one (H, W) mask in memory at a time.
# 'auto' (the default) gives bitmaps unless they would take more than the
# mask head's max_bitmap_bytes (100 masks of a 12000 px image: 14 GB).
MASK_FORMATS = ('auto', 'bitmap', 'rle')


def decode_masks(masks, shape: Tuple[int, int]):
    """``pred_instances.masks`` in either of :data:`MASK_FORMATS` as an
    (n, H, W) bool tensor; ``shape`` (H, W) is used for an empty list."""
    import numpy as np
    import torch
    if isinstance(masks, (list, tuple)):
        if not len(masks):
            return torch.zeros((0, *shape), dtype=torch.bool)
        from pycocotools import mask as mask_util
        return torch.from_numpy(
            np.ascontiguousarray(
                mask_util.decode(list(masks)).transpose(2, 0, 1))).bool()
    return torch.as_tensor(np.asarray(masks) if not isinstance(
        masks, torch.Tensor) else masks).bool()


def task_test_cfg(test_cfg: Optional[dict] = None) -> Dict[str, dict]:
    """Each location task's decoder settings: the table's defaults updated
    by ``test_cfg``. An unknown task or key is an error, not a silently
    ignored typo."""
    cfg = {name: dict(t.test_cfg) for name, t in TASKS.items() if t.locates}
    for task, settings in (test_cfg or {}).items():
        if task not in cfg:
            raise ValueError(f'test_cfg has settings for {task!r}, which is '
                             f'no location task; those are {tuple(cfg)}.')
        unknown = set(settings) - set(TEST_CFG_KEYS)
        if unknown:
            raise ValueError(f'test_cfg.{task} has unknown keys '
                             f'{sorted(unknown)}; use {TEST_CFG_KEYS}.')
        if settings.get('mask_format', 'auto') not in MASK_FORMATS:
            raise ValueError(
                f'test_cfg.{task}.mask_format is '
                f"{settings['mask_format']!r}; use one of {MASK_FORMATS} "
                "('rle' for large images: compact COCO RLE masks).")
        cfg[task].update(settings)
    return cfg
