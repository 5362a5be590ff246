"""Export a trained Lumen for the Hugging Face side and for lumen_mm.

Training leaves a config (whose LMM comes from pretrained files, with LoRA on
top) and a trainable-only checkpoint. :func:`export_lumen` loads both and
writes::

    OUT/llava/            LlavaForConditionalGeneration with LoRA and the
                          trained token rows merged (peft's
                          ``merge_and_unload``), its tokenizer (with Lumen's
                          special tokens) and a ``LlavaProcessor`` (image
                          processor + chat template): ``AutoProcessor`` and
                          ``LlavaForConditionalGeneration`` load it
    OUT/adapter/          (LoRA runs) the peft adapter with the same
                          tokenizer and processor, for
                          ``PeftModel.from_pretrained(base, OUT/adapter)`` on
                          the base LLaVA resized to that tokenizer
    OUT/lumen_heads.safetensors   the rest of Lumen (aligner, heads)
    OUT/lumen_heads.pth   the same tensors as an mmengine checkpoint marked
                          trainable-only, which ``load_from`` reads
    OUT/config.py         the config, pointing at OUT/llava without LoRA and
                          loading OUT/lumen_heads.pth

so that ``tools/test.py OUT/config.py OUT/lumen_heads.pth`` evaluates the
exported model, and the LMM can be shared on its own.

The processor's chat template writes Lumen's conversation (LLaVA v1 layout,
:mod:`lumen_mm.models.backbones.conversation`); its image processor resizes
to the LMM's input size and normalises as the config's data preprocessor
does. Lumen's own pipeline letterboxes (resize keeping the aspect ratio, pad
bottom-right) at the aligner's size and resizes that down inside the model:
for square images both agree up to the resize filter; other images are
stretched by the processor, as Hugging Face's LLaVA processors do.
"""
import copy
import json
import os
import os.path as osp
import warnings
from typing import Union

import torch
from mmengine.config import Config

from lumen_mm.engine.checkpoint import (FROM_PRETRAINED, TRAINABLE_ONLY,
                                        load_trainable_checkpoint)

HEADS_FILE = 'lumen_heads.pth'
HEADS_SAFETENSORS = 'lumen_heads.safetensors'
LLAVA_DIR = 'llava'
ADAPTER_DIR = 'adapter'
# The instruction rendered to check that the chat template tokenises as
# Lumen's ConversationTemplate does.
CHECK_INSTRUCTION = 'Please find the location of cat. Respond with boxes.'


def build_model(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in mmdet's scope, with lumen_mm registered."""
    import lumen_mm  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model)


def _literal(text: str) -> str:
    """A Jinja string literal."""
    return json.dumps(text)


def lumen_chat_template(conversation, tokenizer) -> str:
    """A Jinja chat template that renders messages as Lumen's
    ``ConversationTemplate`` builds them (LLaVA v1 layout)::

        [<s>]{system} USER: {image}\\n{question} ASSISTANT: {answer}</s>
        USER: {question} ASSISTANT: ...

    (one line: no line break after ``</s>``). ``{image}`` is ``<image>``
    (the processor expands it to one token per patch) between the
    template's ``image_start``/``image_end`` tokens, without the whitespace
    around it under ``strip_around_image`` (LLaVA-1.1). A ``system`` message
    replaces the default system prompt.
    ``<s>`` is written only when the tokenizer does not add it itself, so
    that both ``processor(text=...)`` and ``apply_chat_template(...,
    tokenize=True)`` give one.
    """
    from lumen_mm.models.backbones.conversation import (ASSISTANT,
                                                        CHAT_START,
                                                        IMAGE_TOKEN, USER)
    image = ''.join(t for t in (conversation.image_start, IMAGE_TOKEN,
                                conversation.image_end) if t)
    # LLaVA-1.1 drops the whitespace next to the image (strip_around_image)
    strip = conversation.strip_around_image
    later_image = image if strip else image + CHAT_START
    user_image = USER.rstrip() + image if strip else USER + later_image
    probe = tokenizer('a')['input_ids']
    adds_bos = bool(probe) and probe[0] == tokenizer.bos_token_id
    bos = '' if adds_bos or tokenizer.bos_token is None else \
        '{{- bos_token -}}'
    return (
        '{%- set system = ' + _literal(conversation.system) + ' -%}'
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- if messages[0]['content'] is string -%}"
        "{%- set system = messages[0]['content'] -%}"
        "{%- else -%}"
        "{%- set system = messages[0]['content'] | map(attribute='text') "
        "| join(' ') -%}"
        '{%- endif -%}'
        '{%- set messages = messages[1:] -%}'
        '{%- endif -%}' + bos +
        "{%- if system -%}{{- system + ' ' -}}{%- endif -%}"
        '{%- for message in messages -%}'
        "{%- if message['role'] == 'user' -%}"
        "{%- if message['content'] is string -%}"
        '{{- ' + _literal(USER) + " + message['content'] -}}"
        '{%- else -%}'
        "{%- if message['content'][0]['type'] != 'image' -%}"
        '{{- ' + _literal(USER) + ' -}}'
        '{%- endif -%}'
        "{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}"
        '{{- ' + _literal(user_image) + ' if loop.first else ' +
        _literal(later_image) + ' -}}'
        "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}"
        '{%- endif -%}'
        '{%- endfor -%}'
        '{%- endif -%}'
        "{%- elif message['role'] == 'assistant' -%}"
        '{{- ' + _literal(ASSISTANT + ' ') + ' -}}'
        "{%- if message['content'] is string -%}"
        "{{- message['content'] -}}"
        '{%- else -%}'
        "{{- message['content'] | map(attribute='text') | join('') -}}"
        '{%- endif -%}'
        '{{- eos_token -}}'
        '{%- endif -%}'
        '{%- endfor -%}'
        '{%- if add_generation_prompt -%}{{- ' + _literal(ASSISTANT) +
        ' -}}{%- endif -%}')


def build_processor(lmm, data_preprocessor: dict):
    """A ``LlavaProcessor`` for the exported LLaVA: CLIP's image processor
    at the LMM's input size with the config's normalisation, the tokenizer
    with Lumen's tokens and :func:`lumen_chat_template`."""
    from transformers import CLIPImageProcessor, LlavaProcessor
    from transformers.image_utils import PILImageResampling
    mean = data_preprocessor.get('mean')
    std = data_preprocessor.get('std')
    if mean is None or std is None:
        raise ValueError(
            'The config\'s model.data_preprocessor has no mean/std: the '
            'exported image processor normalises as Lumen\'s pipeline does. '
            'Set them (CLIP: mean=[122.770938, 116.7460125, 104.09373615], '
            'std=[68.5005327, 66.6321579, 70.32316305]).')
    size = lmm.image_size
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size=dict(height=size, width=size),
        # Lumen resizes down with (antialiased) bilinear interpolation
        resample=PILImageResampling.BILINEAR,
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[m / 255 for m in mean],
        image_std=[s / 255 for s in std],
        do_convert_rgb=True)
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=lmm.tokenizer,
        patch_size=lmm.patch_size,
        vision_feature_select_strategy='default',
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped
        chat_template=lumen_chat_template(lmm.conversation, lmm.tokenizer),
        image_token='<image>')


def check_chat_template(processor, lmm) -> bool:
    """Whether the processor tokenises a rendered conversation into the ids
    of Lumen's template; warns with both when it does not (tokenizers that
    merge across the pieces Lumen tokenises separately)."""
    messages = [dict(role='user', content=[
        dict(type='image'), dict(type='text', text=CHECK_INSTRUCTION)])]
    text = processor.apply_chat_template(messages,
                                         add_generation_prompt=True)
    size = lmm.image_size
    ids = processor(
        text=text, images=[torch.zeros(3, size, size, dtype=torch.uint8)],
        return_tensors='pt')['input_ids'][0].tolist()
    expected = lmm.conversation.instruction_prompt(
        CHECK_INSTRUCTION).input_ids
    if ids != expected:
        warnings.warn(
            'The exported chat template tokenises a Lumen conversation into '
            f'{ids}, Lumen\'s template into {expected}: Hugging Face users '
            'of the export get slightly different prompts than the model '
            'was trained on.')
    return ids == expected


def _save_heads(heads: dict, out_dir: str) -> str:
    """Aligner and heads as safetensors (data only) and as the mmengine
    trainable-only checkpoint that ``load_from`` reads; returns the
    latter."""
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in heads.items()},
              osp.join(out_dir, HEADS_SAFETENSORS),
              metadata=dict(format='pt'))
    heads_file = osp.join(out_dir, HEADS_FILE)
    # the LLM's trained entries are in the merged LLaVA, not here
    torch.save(
        dict(state_dict=heads,
             meta={TRAINABLE_ONLY: True, FROM_PRETRAINED: ['backbone.']}),
        heads_file)
    return heads_file


def export_lumen(config: Union[str, Config], checkpoint: str,
                 out_dir: str) -> Config:
    """Write the standalone model of ``config`` + ``checkpoint`` to
    ``out_dir`` (layout in the module docstring); returns the config of the
    exported model."""
    cfg = (Config.fromfile(config)
           if isinstance(config, str) else copy.deepcopy(config))
    model = build_model(cfg)
    load_trainable_checkpoint(model, checkpoint)
    model.eval()

    lmm = model.backbone
    processor = build_processor(lmm, cfg.model.get('data_preprocessor', {}))
    check_chat_template(processor, lmm)
    llava = lmm.llava
    # Hugging Face's forward picks the image tokens' CLIP layer from the
    # config; LlavaLMM keeps its own
    config = lmm.hf_model.config
    if config.vision_feature_layer != lmm.vision_feature_layer:
        warnings.warn(
            f'The base LLaVA\'s config has vision_feature_layer='
            f'{config.vision_feature_layer}, the LMM uses '
            f'{lmm.vision_feature_layer}: the export sets it, users of the '
            f'adapter ({ADAPTER_DIR}/) must set it on their base model too.')
    config.vision_feature_layer = lmm.vision_feature_layer
    config.vision_feature_select_strategy = 'default'
    if hasattr(llava, 'merge_and_unload'):  # LoRA-wrapped (peft)
        adapter_dir = osp.join(out_dir, ADAPTER_DIR)
        llava.save_pretrained(adapter_dir)
        processor.save_pretrained(adapter_dir)
        llava = llava.merge_and_unload()
    llava_dir = osp.join(out_dir, LLAVA_DIR)
    os.makedirs(llava_dir, exist_ok=True)
    llava.save_pretrained(llava_dir)
    processor.save_pretrained(llava_dir)

    heads = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if not k.startswith('backbone.')}
    heads_file = _save_heads(heads, out_dir)

    backbone = cfg.model.backbone
    for key in ('vision_config', 'text_config', 'tokenizer'):
        backbone.pop(key, None)
    backbone.update(pretrained=osp.abspath(llava_dir), lora=None)
    hooks = list(cfg.get('custom_hooks', []))
    if not any(h.get('type') == 'TrainableCheckpointHook' for h in hooks):
        hooks.append(dict(type='TrainableCheckpointHook'))
    cfg.custom_hooks = hooks
    cfg.load_from = osp.abspath(heads_file)
    cfg.dump(osp.join(out_dir, 'config.py'))
    return cfg
