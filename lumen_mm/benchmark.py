"""Timing Lumen: one image, all classes (``tools/benchmark.py``).

Inference runs ``model.test_step`` on synthetic images (random pixels at the
config's input size), each asked about C class names, and reports images/s,
milliseconds per stage, LLM tokens per image and peak memory. ``--train``
times ``model.train_step`` (forward, backward, AdamW step) instead, on
batches drawn from the config's own training set as its training draws them
(``LumenMultiTaskDataset``, ``LumenMultiTaskSampler``, every pipeline), and
reports each step's images, prompts and LLM tokens by task;
``--train-data synthetic`` keeps the synthetic batches of one detection
prompt per class. ``--profile FILE`` writes a torch.profiler table of the
timed steps.

Stages are timed by forward hooks on the model's modules, so the model holds
no timing code and runs untouched when no benchmark is attached:

* ``vision_lmm`` / ``vision_aligner``: CLIP at the LMM's and the aligner's
  input size (one call, counted as ``vision_aligner``, when they are equal);
* ``llm_prefix`` / ``llm_suffixes``: the shared path's two LLM calls;
  ``llm_full_prompts``: the LLM on full prompts (``batched`` and ``naive``);
* ``aligner``: the dense aligner; ``decoding``: from the aligner's output to
  the end of ``predict`` (peaks, boxes, NMS);
* ``other``: the rest (data preprocessor, tokenisation, embeddings).
"""
import argparse
import contextlib
import json
import math
import os
import os.path as osp
import platform
import resource
import sys
import time
from collections import Counter, defaultdict
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from lumen_mm.cli import add_common_args, load_config

# benchmark --mode -> LlavaLMM.prompt_mode
MODES = {'shared': 'shared', 'batched': 'batched', 'naive': 'per_prompt'}
STAGES = ('vision_lmm', 'vision_aligner', 'llm_prefix', 'llm_suffixes',
          'llm_full_prompts', 'aligner', 'decoding')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/benchmark.py``."""
    parser = argparse.ArgumentParser(
        description='Time Lumen on synthetic images: images/s, ms per stage, '
        'LLM tokens per image, peak memory (or training samples/s)')
    parser.add_argument('config', help='config file path')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--checkpoint', help='mmengine checkpoint to load')
    weights.add_argument(
        '--random-init',
        action='store_true',
        help="ignore the config's weights (`pretrained`, `checkpoint`, "
        'Pretrained init_cfg) and build the model from its shapes with '
        'random weights (timing only)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--dtype', default='fp32', choices=list(DTYPES))
    parser.add_argument(
        '--classes', type=int, default=80, help='prompts (class names) per '
        'image (inference, --train-data synthetic)')
    parser.add_argument(
        '--images', type=int, default=8, help='images timed (training: '
        'samples, rounded up to whole batches)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed steps first')
    parser.add_argument(
        '--mode',
        default='shared',
        choices=list(MODES),
        help='shared: prefix once per image, suffixes on its KV cache; '
        'batched: one padded batch of full prompts; naive: every prompt '
        'alone (the per-prompt loop)')
    parser.add_argument(
        '--train', action='store_true', help='time training steps')
    parser.add_argument(
        '--train-data',
        default='config',
        choices=['config', 'synthetic'],
        help="training batches: drawn from the config's training set and "
        'pipelines (config), or synthetic images asked --classes names')
    parser.add_argument(
        '--profile', help='write a torch.profiler table of the timed '
        'training steps here')
    parser.add_argument(
        '--grad-checkpointing',
        action=argparse.BooleanOptionalAction,
        help="gradient checkpointing in the LLM on or off (default: the "
        "config's)")
    parser.add_argument(
        '--tokenizer',
        help="tokenizer directory, when the config's is absent (e.g. "
        'data/lumen_shapes/tokenizer from tools/make_shapes.py)')
    parser.add_argument(
        '--image-size', type=int, help="input size (default: the config's "
        'aligner_image_size)')
    parser.add_argument(
        '--threads', type=int, help='CPU threads of torch (default: its '
        'own); 1 is far faster than 2 on a CPU busy with other work')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', required=True, help='write results here')
    add_common_args(parser, launcher=False)
    return parser


def drop_weights(node, path: str = 'model') -> List[str]:
    """Remove every weight file a model config names (``pretrained``,
    ``checkpoint``, ``init_cfg=dict(type='Pretrained')``), in place; returns
    where they were."""
    dropped = []
    if isinstance(node, dict):
        if node.get('pretrained') is not None:
            dropped.append(f'{path}.pretrained')
            node['pretrained'] = None
        if isinstance(node.get('checkpoint'), str):
            dropped.append(f'{path}.checkpoint')
            node['checkpoint'] = None
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            dropped.append(f'{path}.init_cfg')
            node['init_cfg'] = None
        for key, value in node.items():
            dropped += drop_weights(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            dropped += drop_weights(value, f'{path}[{i}]')
    return dropped


def prepare_config(args: argparse.Namespace):
    """The config, changed as the arguments ask; fails early, naming the fix,
    when the model cannot be built as asked."""
    cfg = load_config(args)
    backbone = cfg.model.backbone
    if args.random_init:
        missing = [k for k in ('vision_config', 'text_config')
                   if not backbone.get(k)]
        if missing:
            raise ValueError(
                f'--random-init builds the LMM from the config\'s shapes, but '
                f'model.backbone has no {missing}; add them (kwargs of '
                'CLIPVisionConfig / LlamaConfig) or pass --checkpoint.')
        # the LLaVA directory is also the default tokenizer
        backbone.tokenizer = backbone.get('tokenizer') or backbone.get(
            'pretrained')
        cfg.dropped_weights = drop_weights(cfg.model)
    if args.tokenizer:
        backbone.tokenizer = args.tokenizer
    tokenizer = backbone.get('tokenizer') or backbone.get('pretrained')
    if not tokenizer or not osp.isdir(tokenizer):
        raise FileNotFoundError(
            f'Tokenizer directory {tokenizer!r} of {args.config} does not '
            'exist: pass --tokenizer DIR (any Hugging Face tokenizer, e.g. '
            'data/lumen_shapes/tokenizer written by tools/make_shapes.py).')
    if args.image_size:
        backbone.aligner_image_size = args.image_size
    backbone.prompt_mode = MODES[args.mode]
    if args.grad_checkpointing is not None:
        backbone.gradient_checkpointing = args.grad_checkpointing
    return cfg


def build_model(cfg,
                device: torch.device,
                dtype: torch.dtype,
                checkpoint: Optional[str] = None,
                train: bool = False) -> nn.Module:
    """Build the model directly on ``device`` (random initialisation there
    is fast for a 7B LLM on a GPU), load ``checkpoint``, cast to ``dtype``;
    for training the trainable parameters stay fp32 (mixed precision:
    autocast computes in ``dtype``)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from lumen_mm.engine.checkpoint import load_trainable_checkpoint

    init_default_scope(cfg.default_scope)
    with torch.device(device):
        model = MODELS.build(cfg.model)
    model.to(device)  # no copy; points mmengine's data preprocessor there
    if checkpoint is not None:
        # strict (keys, shapes, tokenizer), trainable-only ones completed
        load_trainable_checkpoint(model, checkpoint, map_location=device,
                                  strict=cfg.get('strict_load', True))
    if dtype != torch.float32:
        for param in model.parameters():
            if not (train and param.requires_grad):
                param.data = param.data.to(dtype)
    return model


def class_names(num: int) -> List[str]:
    """``num`` class names: COCO's, numbered once they run out."""
    from mmdet.datasets import CocoDataset
    coco = CocoDataset.METAINFO['classes']
    return [
        coco[i % len(coco)] + ('' if i < len(coco) else f' {i // len(coco)}')
        for i in range(num)
    ]


def synthetic_batch(num_images: int, image_size: int, names: List[str],
                    with_boxes: bool, generator: torch.Generator) -> dict:
    """Random uint8 images, each asked about every name (detection), with
    a few random boxes per image when training."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    inputs, samples = [], []
    for _ in range(num_images):
        inputs.append(
            torch.randint(0, 256, (3, image_size, image_size),
                          dtype=torch.uint8, generator=generator))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(image_size, image_size),
                ori_shape=(image_size, image_size),
                scale_factor=(1.0, 1.0),
                task='det',
                prompts=list(names),
                prompt_labels=list(range(len(names)))))
        if with_boxes:
            num = 3
            xy = torch.rand(num, 2, generator=generator) * image_size / 2
            wh = (torch.rand(num, 2, generator=generator) * 0.4 + 0.1) * \
                image_size
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(
                    0, len(names), (num, ), generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def config_batches(cfg, model: nn.Module, num_batches: int,
                   batch_size: int, seed: int) -> List[dict]:
    """``num_batches`` training batches as the config's training draws them
    (its dataset, ``LumenMultiTaskSampler``, pipelines, pseudo-collate),
    each with ``stats``: images, prompts and LLM tokens by task (counted as
    :func:`~lumen_mm.analysis.prompt_budget.count_batch` counts them)."""
    import copy
    import random

    import numpy as np
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    from lumen_mm.analysis.prompt_budget import batch_queries, count_batch
    from lumen_mm.datasets import LumenMultiTaskSampler
    dataset_cfg = cfg.train_dataloader.dataset
    if dataset_cfg.get('type') != 'LumenMultiTaskDataset':
        raise TypeError(
            "--train-data config draws a LumenMultiTaskDataset's mix; this "
            f"config trains on {dataset_cfg.get('type')!r}: pass "
            '--train-data synthetic.')
    dataset = DATASETS.build(copy.deepcopy(dataset_cfg))
    drawn = LumenMultiTaskSampler(dataset, seed=seed).indices(
        0, num_batches * batch_size).reshape(num_batches, batch_size)
    np.random.seed(seed)  # the pipelines' own draws (prompts, flips)
    random.seed(seed)
    batches = []
    for indices in drawn:
        tasks = [dataset.task_of(int(i)) for i in indices]
        batch = pseudo_collate([dataset[int(i)] for i in indices])
        queries = batch_queries(model.backbone, batch['data_samples'])
        tokens, _ = count_batch(model.backbone, queries, tasks)
        batch['stats'] = dict(
            images=dict(Counter(tasks)),
            prompts=dict(Counter(tasks[q.image] for q in queries)),
            llm_tokens=tokens)
        batches.append(batch)
    return batches


class StageTimer:
    """Seconds per stage of Lumen's forward, from module hooks (see the
    module docstring); :meth:`remove` detaches it."""

    def __init__(self, model: nn.Module, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.seconds: Dict[str, float] = defaultdict(float)
        self._start: Dict[int, tuple] = {}  # module id -> (stage, start)
        self._aligner_end = None
        lmm = model.backbone
        hf = lmm.hf_model.model

        def vision_stage(args, kwargs):
            pixels = args[0] if args else kwargs['pixel_values']
            return ('vision_lmm' if pixels.shape[-1] != lmm.aligner_image_size
                    else 'vision_aligner')

        def llm_stage(args, kwargs):
            if kwargs.get('cache') is not None:
                return 'llm_suffixes'
            return 'llm_prefix' if kwargs.get('use_cache') else \
                'llm_full_prompts'

        self._handles = [
            *self._time(hf.vision_tower, vision_stage),
            *self._time(hf.language_model, llm_stage),
            *self._time(model.neck, lambda args, kwargs: 'aligner'),
            model.register_forward_hook(self._end_of_predict),
        ]

    def _time(self, module: nn.Module, stage_of) -> list:
        def pre(module, args, kwargs):
            self.sync()
            self._start[id(module)] = (stage_of(args, kwargs),
                                       time.perf_counter())

        def post(module, args, output):
            self.sync()
            stage, start = self._start.pop(id(module))
            now = time.perf_counter()
            self.seconds[stage] += now - start
            if stage == 'aligner':
                self._aligner_end = now

        return [
            module.register_forward_pre_hook(pre, with_kwargs=True),
            module.register_forward_hook(post)
        ]

    def _end_of_predict(self, module, args, output) -> None:
        if self._aligner_end is not None:
            self.sync()
            self.seconds['decoding'] += time.perf_counter() - \
                self._aligner_end
            self._aligner_end = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def environment(device: torch.device) -> dict:
    """Device name, threads and library versions."""
    import mmdet
    import mmengine
    import peft
    import transformers
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        if osp.isfile('/proc/cpuinfo'):
            with open('/proc/cpuinfo') as f:
                name = next((line.split(':', 1)[1].strip() for line in f
                             if line.startswith('model name')), name)
    return dict(
        device=device.type,
        device_name=name,
        cpu_threads=torch.get_num_threads(),
        versions=dict(
            python=platform.python_version(),
            torch=torch.__version__,
            transformers=transformers.__version__,
            peft=peft.__version__,
            mmengine=mmengine.__version__,
            mmdet=mmdet.__version__))


def peak_memory(device: torch.device) -> dict:
    """CUDA: max_memory_allocated since the last reset; CPU: the process's
    peak resident set size (its whole life, model building included)."""
    if device.type == 'cuda':
        return dict(peak_memory_gib=torch.cuda.max_memory_allocated(device) /
                    2**30, peak_memory_kind='cuda_max_memory_allocated')
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return dict(peak_memory_gib=kib / 2**20, peak_memory_kind='cpu_peak_rss')


def count_llm_tokens(mode: str, prompt_image: torch.Tensor,
                     prompts: list) -> Dict[str, int]:
    """LLM token positions one prompt group computes (``processed``,
    padding included), against the least possible work
    (``prefix_and_suffixes``: each image's prefix once plus every suffix)
    and the naive one (``full_prompts``: every prompt in full)."""
    full = [len(p.input_ids) for p in prompts]
    suffixes = [len(p.input_ids) - p.prefix_len for p in prompts]
    images = prompt_image.unique().tolist()
    prefix_len = prompts[0].prefix_len
    if mode == 'shared':  # one packed row per image, padded to the longest
        per_image = dict.fromkeys(images, 0)
        for image, length in zip(prompt_image.tolist(), suffixes):
            per_image[image] += length
        processed = len(images) * (prefix_len + max(per_image.values()))
    elif mode == 'batched':
        processed = len(prompts) * max(full)
    else:
        processed = sum(full)
    return dict(
        processed=processed,
        prefix_and_suffixes=len(images) * prefix_len + sum(suffixes),
        full_prompts=sum(full))


def count_prompt_group(lmm: nn.Module, prompt_image: torch.Tensor,
                       prompts: list) -> Dict[str, int]:
    """:func:`count_llm_tokens` of one prompt group as ``lmm`` runs it (its
    ``prompt_group_mode``; ``'shared'`` in ``packed_chunks``, each call
    computing its prefix again). Needs no forward pass."""
    mode = lmm.prompt_group_mode(prompt_image, prompts)
    counts = count_llm_tokens(mode, prompt_image, prompts)
    if mode == 'shared':  # each packed call computes its prefix
        counts['processed'] = sum(
            count_llm_tokens(mode, prompt_image[c],
                             [prompts[i] for i in c])['processed']
            for c in lmm.packed_chunks(prompt_image, prompts))
    return counts


class TokenCounter:
    """Counts the LLM tokens of every prompt group the LMM runs, by
    wrapping its ``run_prompt_group`` (the model holds no counting code);
    :meth:`remove` restores it."""

    def __init__(self, lmm: nn.Module) -> None:
        self.totals: Dict[str, int] = defaultdict(int)
        self._lmm = lmm
        run = lmm.run_prompt_group

        def counted(image_embeds, prompt_image, prompts):
            counts = count_prompt_group(lmm, prompt_image, prompts)
            for k, v in counts.items():
                self.totals[k] += v
            return run(image_embeds, prompt_image, prompts)

        lmm.run_prompt_group = counted

    def remove(self) -> None:
        del self._lmm.run_prompt_group  # back to the class's method


def _tokens_per_image(totals: Dict[str, int], images: int) -> dict:
    """:class:`TokenCounter` totals per image."""
    return dict(
        llm_tokens_per_image=totals['processed'] / images,
        llm_tokens_prefix_and_suffixes_per_image=totals['prefix_and_suffixes']
        / images,
        llm_tokens_full_prompts_per_image=totals['full_prompts'] / images,
        llm_tokens_vs_prefix_and_suffixes=totals['processed'] /
        max(totals['prefix_and_suffixes'], 1))


def benchmark_inference(model: nn.Module, batch: dict, steps: int,
                        warmup: int, device: torch.device,
                        autocast) -> dict:
    """images/s, ms per stage and image, LLM tokens per image."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    model.eval()
    with torch.no_grad(), autocast:
        for _ in range(warmup):
            model.test_step(batch)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        timer = StageTimer(model, sync)
        tokens = TokenCounter(model.backbone)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            model.test_step(batch)
        sync()
        seconds = time.perf_counter() - start
        timer.remove()
        tokens.remove()
    images = steps * len(batch['inputs'])
    stages = {k: 1000 * timer.seconds.get(k, 0.0) / images for k in STAGES}
    stages['other'] = 1000 * seconds / images - sum(stages.values())
    return dict(
        images_per_s=images / seconds,
        ms_per_image=1000 * seconds / images,
        stage_ms_per_image=stages,
        **_tokens_per_image(tokens.totals, images),
        **peak_memory(device))


def benchmark_training(model: nn.Module, batches: List[dict], steps: int,
                       warmup: int, device: torch.device, autocast,
                       profile: Optional[str] = None,
                       float32_modules: Sequence[str] = ()) -> dict:
    """samples/s and prompts/s of full training steps (AdamW on the
    trainable parameters) over ``batches`` in turn, peak memory, and each
    step's seconds with its batch's ``stats`` (when it has them).
    ``float32_modules`` run outside the (CPU bfloat16) autocast, as
    :class:`CpuAmpOptimWrapper` runs them in training."""
    from mmengine.optim import OptimWrapper

    from lumen_mm.engine import CpuAmpOptimWrapper
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    optim_wrapper = CpuAmpOptimWrapper(
        optimizer=optimizer, float32_modules=float32_modules
    ) if float32_modules else OptimWrapper(optimizer)

    def step(i: int) -> dict:
        batch = {k: v for k, v in batches[i % len(batches)].items()
                 if k != 'stats'}
        with autocast:
            return model.train_step(batch, optim_wrapper)

    for i in range(warmup):
        step(i)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    tokens = TokenCounter(model.backbone)
    profiler = _profiler(device) if profile else contextlib.nullcontext()
    per_step = []
    with profiler:
        for i in range(warmup, warmup + steps):
            sync()
            start = time.perf_counter()
            losses = step(i)
            sync()
            per_step.append(dict(
                seconds=time.perf_counter() - start,
                **batches[i % len(batches)].get('stats', {})))
    tokens.remove()
    if profile:
        _write_profile(profiler, profile, device)
    seconds = sum(s['seconds'] for s in per_step)
    samples = sum(len(batches[i % len(batches)]['inputs'])
                  for i in range(warmup, warmup + steps))
    prompts = sum(sum(s.get('prompts', {}).values()) for s in per_step)
    return dict(
        samples_per_s=samples / seconds,
        ms_per_step=1000 * seconds / steps,
        **(dict(prompts_per_s=prompts / seconds,
                prompts_per_step=prompts / steps) if prompts else {}),
        last_loss=float(losses['loss'].detach()),
        trainable_parameters=sum(p.numel() for p in params),
        **_tokens_per_image(tokens.totals, samples),
        **peak_memory(device),
        steps=per_step)


def _profiler(device: torch.device):
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    return profile(activities=activities)


def _write_profile(profiler, path: str, device: torch.device) -> None:
    """The profiler's operators by total time (CUDA's on a GPU)."""
    key = 'cuda_time_total' if device.type == 'cuda' else 'cpu_time_total'
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(profiler.key_averages().table(sort_by=key, row_limit=40))


def main(argv: Optional[list] = None) -> dict:
    """Entry point of ``tools/benchmark.py``; returns what it writes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config!r}')
    for name in ('classes', 'images', 'batch_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda, but torch sees no CUDA device; use '
                     '--device cpu')
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _benchmark(args, argv)
    finally:
        torch.set_num_threads(threads)


def config_float32_modules(cfg, device: torch.device,
                           dtype: torch.dtype) -> List[str]:
    """The modules that a CPU bfloat16 training step of ``cfg`` keeps in
    float32 (``CpuAmpOptimWrapper``'s ``float32_modules``)."""
    if device.type != 'cpu' or dtype != torch.bfloat16:
        return []
    names = cfg.get('optim_wrapper', {}).get('float32_modules', ())
    return [names] if isinstance(names, str) else list(names)


def _benchmark(args: argparse.Namespace, argv: Optional[list]) -> dict:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.manual_seed(args.seed)

    cfg = prepare_config(args)
    start = time.perf_counter()
    model = build_model(cfg, device, dtype, args.checkpoint, args.train)
    build_s = time.perf_counter() - start

    lmm = model.backbone
    steps = math.ceil(args.images / args.batch_size)
    autocast = torch.autocast(device.type, dtype=dtype) \
        if dtype != torch.float32 else contextlib.nullcontext()
    if args.train and args.train_data == 'config':
        # (the data preprocessor moves them to the device)
        batches = config_batches(cfg, model, args.warmup + steps,
                                 args.batch_size, args.seed)
    else:
        generator = torch.Generator().manual_seed(args.seed)
        batches = [synthetic_batch(args.batch_size, lmm.aligner_image_size,
                                   class_names(args.classes), args.train,
                                   generator)]
    float32_modules = config_float32_modules(cfg, device, dtype) \
        if args.train else []
    if args.train:
        results = benchmark_training(model, batches, steps, args.warmup,
                                     device, autocast, args.profile,
                                     float32_modules)
    else:
        results = benchmark_inference(model, batches[0], steps, args.warmup,
                                      device, autocast)

    report = dict(
        task='train' if args.train else 'inference',
        command=' '.join(['tools/benchmark.py',
                          *(sys.argv[1:] if argv is None else argv)]),
        config=args.config,
        weights=('random-init' if args.random_init else args.checkpoint
                 or 'config'),
        dropped_weights=cfg.get('dropped_weights', []),
        mode=args.mode,
        train_data=args.train_data if args.train else None,
        prompt_mode=lmm.prompt_mode,
        dtype=args.dtype,
        float32_modules=float32_modules,
        classes=args.classes,
        images=steps * args.batch_size,
        batch_size=args.batch_size,
        image_size=lmm.aligner_image_size,
        lmm_image_size=lmm.image_size,
        gradient_checkpointing=bool(
            cfg.model.backbone.get('gradient_checkpointing')),
        lora=cfg.model.backbone.get('lora') is not None,
        parameters=sum(p.numel() for p in model.parameters()),
        build_s=build_s,
        **results,
        **environment(device))
    os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(report, f, indent=2)
    return report
