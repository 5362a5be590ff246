"""Prompts and LLM tokens per training batch, by task
(``tools/analysis/prompt_budget.py``).

A config's training batches are drawn as its training draws them (the
``LumenMultiTaskDataset`` and ``LumenMultiTaskSampler`` of its train
dataloader, its batch size), each sample runs through its pipeline, and the
batch is tokenised as :meth:`Lumen.loss` tokenises it. Per task the report
gives images, prompts (LLM sequences: one per location prompt, one per VQA
conversation) and LLM tokens per batch, counted as the LLM groups them
(:func:`~lumen_mm.models.backbones.llava_lmm.prefix_groups`,
:func:`~lumen_mm.benchmark.count_prompt_group`): each image's shared prefix
once plus every prompt's suffix. It shows how a config's prompts per image
(``max_prompts`` of the ``Lumen*Prompts`` transforms) turn its task rates,
which count images, into shares of the prompts and of the LLM's work.

No weights load: the config's LMM is built at toy width with the config's
tokenizer and conversation template, which alone fix the token counts.
"""
import argparse
import contextlib
import copy
import json
import os.path as osp
import random
import sys
from collections import defaultdict
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from lumen_mm.cli import add_common_args, load_config, parse_args

# the LMM's widths for counting: its tokenizer, template and image tokens
# stay the config's
_TOY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2)
_TOY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=2)


def counting_lmm(backbone: dict, tokenizer: Optional[str] = None):
    """The config's ``LlavaLMM`` at toy width, without weights: the same
    tokenizer (``tokenizer``, else the config's ``tokenizer`` or
    ``pretrained`` directory), conversation template, image tokens, prompt
    mode and packing, hence the same token counts."""
    import lumen_mm  # noqa: F401  (registers LlavaLMM)
    from mmdet.registry import MODELS
    cfg = copy.deepcopy(dict(backbone))
    pretrained = cfg.get('pretrained')
    tokenizer = tokenizer or cfg.get('tokenizer') or pretrained
    if not tokenizer or not osp.isdir(tokenizer):
        raise FileNotFoundError(
            f'Tokenizer directory {tokenizer!r} of the config does not exist: '
            'pass --tokenizer DIR (the LLaVA checkpoint\'s directory, or any '
            'Hugging Face tokenizer for a rough count, e.g. '
            'data/lumen_shapes/tokenizer from tools/make_shapes.py).')
    vision = dict(cfg.get('vision_config') or {})
    text = dict(cfg.get('text_config') or {})
    if pretrained and osp.isdir(pretrained):
        # a loaded checkpoint brings its own shapes (the config's are for
        # building without it)
        from transformers import LlavaConfig
        hf = LlavaConfig.from_pretrained(pretrained)
        vision['patch_size'] = hf.vision_config.patch_size
        text['max_position_embeddings'] = \
            hf.text_config.max_position_embeddings
    vision.update(_TOY_VISION)
    text.update(_TOY_TEXT)
    text.pop('vocab_size', None)  # the tokenizer's
    for key in ('init_cfg', 'attn_implementation'):
        cfg.pop(key, None)
    cfg.update(pretrained=None, tokenizer=tokenizer, vision_config=vision,
               text_config=text, lora=None, gradient_checkpointing=False)
    # another tokenizer than the checkpoint's gets LLaVA-1.1's <im_start> /
    # <im_end> from LlavaLMM: one token each there too
    return MODELS.build(cfg)


def batch_queries(lmm, data_samples: Sequence) -> list:
    """The LLM sequences of a training batch, as :meth:`Lumen.loss` builds
    them (``Lumen._queries``, which reads nothing of the model but its LMM's
    conversation template)."""
    from lumen_mm.models.detectors.lumen import Lumen
    return Lumen._queries(
        SimpleNamespace(backbone=lmm), data_samples, True,
        torch.device('cpu'))


def count_batch(lmm, queries: Sequence,
                image_tasks: Sequence[str]) -> Tuple[Dict[str, int],
                                                     Dict[str, int]]:
    """LLM tokens of one batch: per task, each image's prefix once per
    prefix group plus its prompts' suffixes; and the batch's totals of
    :func:`~lumen_mm.benchmark.count_prompt_group` (``processed``: as the
    LMM's prompt mode computes them, padding included;
    ``prefix_and_suffixes``: the per-task sum; ``full_prompts``)."""
    from lumen_mm.benchmark import count_prompt_group
    from lumen_mm.models.backbones.llava_lmm import prefix_groups
    prompts = [q.tokens for q in queries]
    images = [q.image for q in queries]
    per_task: Dict[str, int] = defaultdict(int)
    totals: Dict[str, int] = defaultdict(int)
    for members in prefix_groups(prompts):
        group = [prompts[i] for i in members]
        image = torch.as_tensor([images[i] for i in members])
        for key, value in count_prompt_group(lmm, image, group).items():
            totals[key] += value
        seen = set()
        for i in members:
            task = image_tasks[images[i]]
            if images[i] not in seen:  # the image's prefix, once
                seen.add(images[i])
                per_task[task] += prompts[i].prefix_len
            per_task[task] += len(prompts[i].input_ids) - prompts[i].prefix_len
    return dict(per_task), dict(totals)


def measure(dataset, lmm, batch_size: int, num_batches: int,
            seed: int = 0) -> dict:
    """Draw ``num_batches`` batches of ``batch_size`` from a
    ``LumenMultiTaskDataset`` with ``LumenMultiTaskSampler(seed=seed)`` (one
    rank's batches are consecutive stretches of the same draw) and count
    their prompts and tokens by task."""
    from lumen_mm.datasets import LumenMultiTaskSampler
    if batch_size < 1 or num_batches < 1:
        raise ValueError(f'batch_size and num_batches must be >= 1, got '
                         f'{batch_size} and {num_batches}')
    drawn = LumenMultiTaskSampler(dataset, seed=seed).indices(
        0, batch_size * num_batches).reshape(num_batches, batch_size)
    # the pipelines' own choices (prompts, flips) draw from the global RNGs
    states = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        return _measure(dataset, lmm, drawn, seed)
    finally:
        np.random.set_state(states[0])
        random.setstate(states[1])


def _measure(dataset, lmm, drawn: np.ndarray, seed: int) -> dict:
    num_batches, batch_size = drawn.shape
    tasks = list(dataset.tasks)
    fields = ('images', 'prompts', 'location_prompts', 'llm_tokens')
    counts = {t: {f: np.zeros(num_batches) for f in fields} for t in tasks}
    batch = {f: np.zeros(num_batches) for f in
             ('prompts', 'location_prompts', 'llm_tokens', 'processed',
              'full_prompts')}
    for b, indices in enumerate(drawn):
        image_tasks = [dataset.task_of(int(i)) for i in indices]
        samples = [dataset[int(i)]['data_samples'] for i in indices]
        queries = batch_queries(lmm, samples)
        tokens, totals = count_batch(lmm, queries, image_tasks)
        for task in image_tasks:
            counts[task]['images'][b] += 1
        for q in queries:
            counts[image_tasks[q.image]]['prompts'][b] += 1
            counts[image_tasks[q.image]]['location_prompts'][b] += q.locate
        for task, n in tokens.items():
            counts[task]['llm_tokens'][b] = n
        batch['prompts'][b] = len(queries)
        batch['location_prompts'][b] = sum(q.locate for q in queries)
        batch['llm_tokens'][b] = totals.get('prefix_and_suffixes', 0)
        batch['processed'][b] = totals.get('processed', 0)
        batch['full_prompts'][b] = totals.get('full_prompts', 0)

    def share(part: float, whole: float) -> Optional[float]:
        return float(part / whole) if whole else None

    report_tasks = {}
    for task in tasks:
        c = counts[task]
        report_tasks[task] = dict(
            rate=float(sum(s.share for s in dataset.streams
                           if s.task == task)),
            images_per_batch=float(c['images'].mean()),
            prompts_per_batch=float(c['prompts'].mean()),
            prompts_per_image=share(c['prompts'].sum(), c['images'].sum()),
            location_prompt_share=share(c['location_prompts'].sum(),
                                        batch['location_prompts'].sum()),
            llm_tokens_per_batch=float(c['llm_tokens'].mean()),
            llm_token_share=share(c['llm_tokens'].sum(),
                                  batch['llm_tokens'].sum()))
    total = dict(
        images_per_batch=float(batch_size),
        prompts_per_batch=float(batch['prompts'].mean()),
        prompts_per_batch_max=int(batch['prompts'].max()),
        prompts_per_image=float(batch['prompts'].mean() / batch_size),
        location_prompts_per_batch=float(batch['location_prompts'].mean()),
        llm_tokens_per_batch=float(batch['llm_tokens'].mean()),
        llm_tokens_per_batch_max=int(batch['llm_tokens'].max()),
        llm_tokens_processed_per_batch=float(batch['processed'].mean()),
        llm_tokens_processed_per_batch_max=int(batch['processed'].max()),
        llm_tokens_full_prompts_per_batch=float(
            batch['full_prompts'].mean()))
    return dict(batch_size=batch_size, batches=num_batches, seed=seed,
                prompt_mode=lmm.prompt_mode, tasks=report_tasks, total=total)


def prompt_budget(cfg, num_batches: int = 20, seed: int = 0,
                  tokenizer: Optional[str] = None,
                  batch_size: Optional[int] = None) -> dict:
    """:func:`measure` on a config's training data, batch size (or
    ``batch_size``) and LMM (:func:`counting_lmm`)."""
    import lumen_mm  # noqa: F401
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader = cfg.train_dataloader
    if loader.dataset.get('type') != 'LumenMultiTaskDataset':
        raise TypeError(
            'The prompt budget draws a LumenMultiTaskDataset with its '
            f'sampler; this config trains on {loader.dataset.get("type")!r}.')
    lmm = counting_lmm(cfg.model.backbone, tokenizer)
    dataset = DATASETS.build(copy.deepcopy(loader.dataset))
    return measure(dataset, lmm, batch_size or loader.batch_size,
                   num_batches, seed)


def _percent(value: Optional[float]) -> str:
    return '-' if value is None else f'{100 * value:.1f}%'


def format_report(report: dict) -> str:
    """The report as a table, one row per task and a total."""
    from terminaltables import AsciiTable
    header = ['task', 'rate', 'images/batch', 'prompts/batch',
              'prompts/image', 'share of location prompts',
              'LLM tokens/batch', 'share of LLM tokens']
    rows = [header]
    for task, r in report['tasks'].items():
        per_image = r['prompts_per_image']
        rows.append([
            task, f"{r['rate']:.3f}", f"{r['images_per_batch']:.1f}",
            f"{r['prompts_per_batch']:.1f}",
            '-' if per_image is None else f'{per_image:.1f}',
            _percent(r['location_prompt_share']),
            f"{r['llm_tokens_per_batch']:.0f}",
            _percent(r['llm_token_share'])
        ])
    t = report['total']
    rows.append([
        'total', '1.000', f"{t['images_per_batch']:.0f}",
        f"{t['prompts_per_batch']:.1f}", f"{t['prompts_per_image']:.1f}",
        '100.0%', f"{t['llm_tokens_per_batch']:.0f}", '100.0%'
    ])
    table = AsciiTable(rows)
    for column in range(1, len(header)):
        table.justify_columns[column] = 'right'
    lines = [
        f"{report.get('config', 'config')}: {report['batches']} batches of "
        f"{report['batch_size']} (seed {report['seed']})",
        table.table,
        'LLM tokens/batch: each image\'s prompt prefix once plus every '
        'prompt\'s suffix.',
        f"Per batch at most {t['prompts_per_batch_max']} prompts and "
        f"{t['llm_tokens_per_batch_max']} such tokens; as prompt_mode "
        f"{report['prompt_mode']!r} computes them (padding and repeated "
        f"prefixes included) {t['llm_tokens_processed_per_batch']:.0f} on "
        f"average, at most {t['llm_tokens_processed_per_batch_max']}; every "
        f"prompt in full {t['llm_tokens_full_prompts_per_batch']:.0f}.",
    ]
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Prompts and LLM tokens per training batch, by task: '
        "draws the config's training batches with its multi-task sampler "
        'and tokenises them as training does (no weights are loaded)')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--batches', type=int, default=20, help='batches drawn (default 20)')
    parser.add_argument(
        '--batch-size', type=int,
        help="images per batch (default: the config's train batch size, "
        'per GPU)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the draw (default 0)')
    parser.add_argument(
        '--tokenizer',
        help="tokenizer directory, when the config's is absent (counts "
        'then hold for that tokenizer)')
    parser.add_argument(
        '--json', metavar='FILE',
        help="also write the report as JSON to FILE ('-': print only the "
        'JSON)')
    add_common_args(parser, launcher=False)
    return parser


def main(argv: Optional[List[str]] = None) -> dict:
    """Entry point of ``tools/analysis/prompt_budget.py``; returns the
    report."""
    parser = build_parser()
    args = parse_args(parser, argv)
    for name in ('batches', 'batch_size'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    cfg = load_config(args)
    # datasets print as they load (pycocotools): not into the report
    with contextlib.redirect_stdout(sys.stderr):
        report = dict(config=args.config, **prompt_budget(
            cfg, args.batches, args.seed, args.tokenizer, args.batch_size))
    text = json.dumps(report, indent=2)
    if args.json == '-':
        print(text)
        return report
    print(format_report(report))
    if args.json:
        with open(args.json, 'w') as f:
            f.write(text + '\n')
    return report
