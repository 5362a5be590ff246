"""Original LLaVA-1.1 checkpoints -> the Hugging Face LLaVA layout.

The paper builds on LLaVA-1.1 (CLIP ViT-L/14 at 224 + Vicuna-7B), released in
the layout of the LLaVA repository's ``LlavaLlamaForCausalLM``:

* ``config.json``: a Llama config plus ``mm_vision_tower`` (the CLIP it was
  trained with), ``mm_hidden_size``, ``mm_vision_select_layer`` (-2) and
  ``mm_use_im_start_end``;
* weights ``model.embed_tokens/layers/norm``, ``lm_head`` and
  ``model.mm_projector`` (a single ``Linear(1024, 4096)``); the CLIP tower is
  not stored (it is loaded from ``mm_vision_tower``), or sits under
  ``model.vision_tower.vision_tower.`` in later exports;
* a tokenizer with ``<im_patch>`` (replaced by the image features),
  ``<im_start>`` and ``<im_end>``.

transformers' ``LlavaForConditionalGeneration`` has a two-layer projector
(``linear_1``, activation, ``linear_2``); the single linear layer becomes
``linear_1`` with a ``'linear'`` (identity) activation and ``linear_2`` set to
the identity, which is exact. The image placeholder becomes ``<image>`` (what
lumen_mm and transformers expand to one token per patch); ``<im_start>`` and
``<im_end>`` keep their trained embeddings and are put around the image by
``ConversationTemplate(image_start='<im_start>', image_end='<im_end>')``.
LLaVA-1.5 checkpoints (two-layer ``mlp2x_gelu`` projector) convert with
transformers' own LLaVA conversion script instead.
"""
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, Optional

import torch
from torch import Tensor

IMAGE_PLACEHOLDER = '<image>'  # lumen_mm.datasets.conversation.IMAGE_TOKEN
IM_PATCH, IM_START, IM_END = '<im_patch>', '<im_start>', '<im_end>'

# Llama fields of the original config.json carried into ``text_config``.
TEXT_CONFIG_KEYS = ('vocab_size', 'hidden_size', 'intermediate_size',
                    'num_hidden_layers', 'num_attention_heads',
                    'num_key_value_heads', 'max_position_embeddings',
                    'rms_norm_eps', 'hidden_act', 'initializer_range',
                    'bos_token_id', 'eos_token_id', 'pad_token_id',
                    'tie_word_embeddings', 'rope_theta', 'rope_scaling')

# original key -> HF key (applied in order; the first match wins)
_KEY_MAP = (
    (re.compile(r'^model\.mm_projector\.(weight|bias)$'),
     r'model.multi_modal_projector.linear_1.\1'),
    (re.compile(r'^model\.(embed_tokens|layers|norm)\.'),
     r'model.language_model.\1.'),
    (re.compile(r'^lm_head\.weight$'), 'lm_head.weight'),
)
# Buffers that old Llama exports stored and transformers recomputes.
_DROPPED = re.compile(r'\.rotary_emb\.inv_freq$')
# HF key -> the original weight it comes from, for the error message
_REQUIRED = {
    'model.multi_modal_projector.linear_1.weight': 'model.mm_projector.weight',
    'model.language_model.embed_tokens.weight': 'model.embed_tokens.weight',
    'lm_head.weight': 'lm_head.weight',
}
_VISION_PREFIX = re.compile(r'^model\.vision_tower\.(vision_tower\.)?'
                            r'(vision_model\.)?')


class ConversionError(ValueError):
    """The input is not an original LLaVA-1.x checkpoint we can convert."""


def _load_state_dict(src: str) -> Dict[str, Tensor]:
    """All weights of a checkpoint directory (.bin shards or safetensors)."""
    st_files = sorted(glob.glob(osp.join(src, '*.safetensors')))
    bin_files = sorted(glob.glob(osp.join(src, 'pytorch_model*.bin')))
    if not st_files and not bin_files:
        raise ConversionError(
            f'{src!r} holds no weights: expected pytorch_model*.bin or '
            '*.safetensors next to config.json.')
    state = {}
    if st_files:
        from safetensors.torch import load_file
        for f in st_files:
            state.update(load_file(f))
    else:
        for f in bin_files:
            state.update(torch.load(f, map_location='cpu', weights_only=True))
    return state


def read_llava_v1_config(src: str) -> dict:
    """The original config.json, checked to be a LLaVA-1.x one we handle."""
    path = osp.join(src, 'config.json')
    if not osp.isfile(path):
        raise ConversionError(
            f'{src!r} has no config.json: point the converter at the '
            'directory of an original LLaVA-1.1 checkpoint (e.g. '
            'LLaVA-Lightning-7B-v1-1 after applying its delta to LLaMA).')
    with open(path) as f:
        cfg = json.load(f)
    archs = cfg.get('architectures') or []
    if 'LlavaForConditionalGeneration' in archs:
        raise ConversionError(
            f'{src!r} is already in the Hugging Face layout '
            '(LlavaForConditionalGeneration): use it as `pretrained` '
            'directly.')
    if cfg.get('model_type') != 'llava' or 'mm_hidden_size' not in cfg:
        raise ConversionError(
            f'{src!r} is not an original LLaVA-1.x checkpoint: expected '
            'model_type "llava" with mm_hidden_size/mm_vision_tower fields, '
            f'got model_type={cfg.get("model_type")!r}, '
            f'architectures={archs}.')
    projector = cfg.get('mm_projector_type', 'linear')
    if projector != 'linear':
        raise ConversionError(
            f'mm_projector_type {projector!r} is not LLaVA-1.1\'s single '
            'linear projector. LLaVA-1.5 checkpoints (mlp2x_gelu) convert '
            'with transformers\' convert_llava_weights_to_hf.py; llava-hf '
            'releases load directly.')
    return cfg


def _map_language_keys(state: Dict[str, Tensor]) -> tuple:
    """Split the original weights into HF language/projector keys and
    vision-tower keys; unknown names are an error."""
    mapped, vision, unknown = {}, {}, []
    for key, value in state.items():
        if _DROPPED.search(key):
            continue
        if key.startswith('model.vision_tower.'):
            vision[_VISION_PREFIX.sub('', key)] = value
            continue
        for pattern, repl in _KEY_MAP:
            if pattern.search(key):
                mapped[pattern.sub(repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f'{len(unknown)} weight(s) of an unknown kind, e.g. '
            f'{sorted(unknown)[:5]}; expected LLaVA-1.1 names '
            '(model.layers.*, model.embed_tokens, model.norm, lm_head, '
            'model.mm_projector, model.vision_tower.*).')
    for hf_key, original in _REQUIRED.items():
        if hf_key not in mapped:
            raise ConversionError(
                f'The checkpoint lacks {original!r}. A LLaVA-1.1 checkpoint '
                'holds the language model, lm_head and the linear '
                'mm_projector; a projector-only (pretraining) checkpoint '
                'cannot be converted on its own.')
    return mapped, vision


def convert_llava_v1(src: str,
                     out: str,
                     vision_tower: str,
                     dtype: Optional[str] = None,
                     max_shard_size: str = '5GB') -> str:
    """Write ``out``: a Hugging Face LLaVA directory that
    ``LlavaLMM(pretrained=out)`` and ``LlavaForConditionalGeneration`` load.

    Args:
        src: original LLaVA-1.1 checkpoint directory (config.json, weights,
            tokenizer).
        out: output directory (created).
        vision_tower: local Hugging Face CLIP directory, the model named by
            the checkpoint's ``mm_vision_tower`` (openai/clip-vit-large-patch14
            for LLaVA-1.1); its weights are used unless the checkpoint stores
            its own tower.
        dtype: ``'float16'``, ``'bfloat16'`` or ``'float32'``; defaults to the
            language model's dtype in the checkpoint.
        max_shard_size: shard size of the written safetensors.

    Returns:
        ``out``.
    """
    from transformers import (AutoTokenizer, CLIPVisionConfig,
                              CLIPVisionModel, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)

    cfg = read_llava_v1_config(src)
    if not osp.isdir(vision_tower):
        named = cfg.get('mm_vision_tower', 'the CLIP of the checkpoint')
        raise FileNotFoundError(
            f'CLIP directory {vision_tower!r} does not exist. Pass a local '
            f'copy of {named!r} (config.json + weights) as the vision '
            'tower.')
    mapped, vision = _map_language_keys(_load_state_dict(src))
    embed = mapped['model.language_model.embed_tokens.weight']
    torch_dtype = getattr(torch, dtype) if dtype else embed.dtype

    # The tokenizer must hold LLaVA-1.1's image tokens; <image> is added.
    tokenizer = AutoTokenizer.from_pretrained(src)
    vocab = tokenizer.get_vocab()
    needed = [IM_PATCH] + ([IM_START, IM_END]
                           if cfg.get('mm_use_im_start_end', False) else [])
    missing = [t for t in needed if t not in vocab]
    if missing:
        raise ConversionError(
            f'The tokenizer of {src!r} lacks {missing}; a LLaVA-1.1 tokenizer '
            'has <im_patch> (and <im_start>/<im_end> with '
            'mm_use_im_start_end).')
    if IMAGE_PLACEHOLDER not in vocab:
        tokenizer.add_tokens([IMAGE_PLACEHOLDER], special_tokens=True)
    num_tokens = len(tokenizer)
    if num_tokens > embed.shape[0]:
        # New rows (the <image> placeholder is always replaced by image
        # features; its output row gets the mean, as LLaVA initialised its
        # own new tokens).
        for key in ('model.language_model.embed_tokens.weight',
                    'lm_head.weight'):
            w = mapped[key]
            extra = w.float().mean(0, keepdim=True).to(w.dtype)
            mapped[key] = torch.cat(
                [w, extra.expand(num_tokens - w.shape[0], -1)])

    # CLIP: configuration from the local directory, weights from the
    # checkpoint when it stores them.
    vision_config = CLIPVisionConfig.from_pretrained(vision_tower)
    if vision_config.hidden_size != cfg['mm_hidden_size']:
        raise ConversionError(
            f'{vision_tower!r} has width {vision_config.hidden_size} but the '
            f'checkpoint\'s projector expects mm_hidden_size='
            f'{cfg["mm_hidden_size"]}: pass the CLIP named by mm_vision_tower '
            f'({cfg.get("mm_vision_tower")!r}).')
    if not vision:
        vision = CLIPVisionModel.from_pretrained(vision_tower).state_dict()
    text_config = LlamaConfig(
        **{k: cfg[k]
           for k in TEXT_CONFIG_KEYS if cfg.get(k) is not None})
    text_config.vocab_size = num_tokens
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        projector_hidden_act='linear',
        vision_feature_layer=cfg.get('mm_vision_select_layer', -2),
        vision_feature_select_strategy='default',
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER))

    width = text_config.hidden_size
    mapped['model.multi_modal_projector.linear_2.weight'] = torch.eye(width)
    mapped['model.multi_modal_projector.linear_2.bias'] = torch.zeros(width)
    if 'model.multi_modal_projector.linear_1.bias' not in mapped:
        mapped['model.multi_modal_projector.linear_1.bias'] = torch.zeros(
            width)
    mapped.update({f'model.vision_tower.{k}': v for k, v in vision.items()})
    mapped = {k: v.to(torch_dtype) for k, v in mapped.items()}

    # Build on the meta device and take the tensors as they are: a 7B model
    # is never held twice in memory.
    with torch.device('meta'):
        llava = LlavaForConditionalGeneration(config)
    expected = set(llava.state_dict())
    absent, unexpected = expected - set(mapped), set(mapped) - expected
    if absent or unexpected:
        raise ConversionError(
            'The converted weights do not match the LLaVA layout: missing '
            f'{sorted(absent)[:5]}, unexpected {sorted(unexpected)[:5]} '
            '(is the CLIP directory the one of mm_vision_tower?).')
    llava.load_state_dict(mapped, strict=True, assign=True)
    llava.config.dtype = torch_dtype
    os.makedirs(out, exist_ok=True)
    llava.save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    return out
