"""Original LLaVA-1.1 checkpoints -> the Hugging Face LLaVA layout.

The paper builds on LLaVA-1.1 (CLIP ViT-L/14 at 224 + Vicuna-7B), released as
deltas (LLaVA-Lightning-7B-delta-v1-1) that the LLaVA repository's
``apply_delta`` adds to LLaMA and saves with transformers 4.28 in the layout of
its ``LlavaLlamaForCausalLM``:

* ``config.json``: a Llama config plus ``mm_vision_tower`` (the CLIP it was
  trained with), ``mm_hidden_size``, ``mm_vision_select_layer`` (-2),
  ``mm_use_im_start_end`` and ``use_mm_proj``;
* fp16 weights in shards ``pytorch_model-0000x-of-0000N.bin`` listed by
  ``pytorch_model.bin.index.json``: ``model.embed_tokens/layers/norm``,
  ``lm_head``, ``model.mm_projector`` (a single ``Linear(1024, 4096)``) and
  the rotary ``inv_freq`` buffer of every layer. The CLIP tower is not stored
  (LLaVA keeps it in a list, loaded from ``mm_vision_tower``); later exports
  store it under ``model.vision_tower.vision_tower.vision_model.``, with the
  ``embeddings.position_ids`` buffer that transformers 4.28-4.30 saved;
* the slow SentencePiece tokenizer: ``tokenizer.model``, ``added_tokens.json``
  (``<im_patch>``, ``<im_start>``, ``<im_end>``: 32003 tokens),
  ``special_tokens_map.json`` and ``tokenizer_config.json`` naming
  ``LlamaTokenizer``; no ``tokenizer.json``.

The CLIP directory is the one ``mm_vision_tower`` names, as released:
openai/clip-vit-large-patch14 is a whole ``CLIPModel`` (text and vision
weights, ``text_config_dict``/``vision_config_dict`` in its config.json,
``position_ids`` buffers); a ``CLIPVisionModel`` directory works too.

transformers' ``LlavaForConditionalGeneration`` has a two-layer projector
(``linear_1``, activation, ``linear_2``); the single linear layer becomes
``linear_1`` with a ``'linear'`` (identity) activation and ``linear_2`` set to
the identity, which is exact. The image placeholder becomes ``<image>`` (what
lumen_mm and transformers expand to one token per patch); ``<im_start>`` and
``<im_end>`` keep their trained embeddings and are put around the image by
``ConversationTemplate(image_start='<im_start>', image_end='<im_end>')``.
The buffers transformers now recomputes (rotary ``inv_freq``, CLIP
``position_ids``) are dropped after checking that they hold the values it
recomputes. LLaVA-1.5 checkpoints (two-layer ``mlp2x_gelu`` projector)
convert with transformers' own LLaVA conversion script instead.
"""
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional

import torch
from torch import Tensor

IMAGE_PLACEHOLDER = '<image>'  # lumen_mm's IMAGE_TOKEN
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
# Buffers old exports stored and transformers recomputes.
_INV_FREQ = re.compile(r'\.rotary_emb\.inv_freq$')
_POSITION_IDS = re.compile(r'(^|\.)embeddings\.position_ids$')
# HF key -> the original weight it comes from, for the error message
_REQUIRED = {
    'model.multi_modal_projector.linear_1.weight': 'model.mm_projector.weight',
    'model.language_model.embed_tokens.weight': 'model.embed_tokens.weight',
    'lm_head.weight': 'lm_head.weight',
}
_VISION_PREFIX = re.compile(r'^model\.vision_tower\.(vision_tower\.)?'
                            r'(vision_model\.)?')
# The parts of a whole CLIPModel that are not its vision tower.
_CLIP_NOT_VISION = re.compile(
    r'^(text_model\.|text_projection\.|visual_projection\.|logit_scale$)')
# Texts on which the converted tokenizer must give SentencePiece's ids.
TOKENIZER_PROBES = (
    'A chat between a curious human and an artificial intelligence '
    'assistant.', 'USER: What is unusual about this image?\nASSISTANT:',
    'Please find the location of the cat. 42 cats, 3.5 m away.')


class ConversionError(ValueError):
    """The input is not an original LLaVA-1.x checkpoint we can convert."""


def _weight_files(directory: str, what: str) -> List[str]:
    """The weight files of a checkpoint directory, as its index lists them
    (safetensors first, then pytorch .bin)."""
    for index_name, single in (('model.safetensors.index.json',
                                'model.safetensors'),
                               ('pytorch_model.bin.index.json',
                                'pytorch_model.bin')):
        index = osp.join(directory, index_name)
        if osp.isfile(index):
            with open(index) as f:
                files = sorted(set(json.load(f)['weight_map'].values()))
            absent = [n for n in files if not osp.isfile(osp.join(directory,
                                                                  n))]
            if absent:
                raise ConversionError(
                    f'{index} lists {absent}, which {directory!r} lacks: '
                    'download every shard of the checkpoint.')
            return [osp.join(directory, n) for n in files]
        if osp.isfile(osp.join(directory, single)):
            return [osp.join(directory, single)]
    raise ConversionError(
        f'{directory!r} holds no weights: expected {what} weights '
        '(pytorch_model.bin or pytorch_model-0000x-of-0000N.bin shards with '
        'pytorch_model.bin.index.json, or model*.safetensors) next to '
        'config.json.')


def load_weights(directory: str, what: str = 'model') -> Dict[str, Tensor]:
    """All tensors of a checkpoint directory. Pickled .bin shards load with
    ``weights_only=True`` (tensors only, never code) and memory-mapped, so a
    7B checkpoint is not read into memory twice."""
    state = {}
    for path in _weight_files(directory, what):
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            state.update(load_file(path))
        else:
            state.update(
                torch.load(
                    path, map_location='cpu', weights_only=True, mmap=True))
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


def _check_recomputed_buffer(key: str, value: Tensor, cfg: dict) -> None:
    """A stored buffer is dropped only if it holds what transformers
    recomputes; otherwise the converted model would compute differently."""
    if _INV_FREQ.search(key):
        head_dim = cfg['hidden_size'] // cfg['num_attention_heads']
        theta = cfg.get('rope_theta', 10000.0)
        expected = 1.0 / theta**(
            torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        # rtol: the buffer was saved in the checkpoint's fp16
        ok = value.shape == expected.shape and torch.allclose(
            value.float(), expected, rtol=1e-3, atol=0)
        what = (f'the rotary frequencies of rope_theta={theta} and head '
                f'size {head_dim} (config.json)')
    else:
        ok = torch.equal(value.flatten().long(),
                         torch.arange(value.numel()))
        what = 'the positions 0, 1, 2... that transformers recomputes'
    if not ok:
        raise ConversionError(
            f'The stored buffer {key!r} does not hold {what}: the checkpoint '
            'computes positions differently (rotary scaling? edited '
            'positions?) and converting it would silently change its '
            'outputs.')


def _map_language_keys(state: Dict[str, Tensor], cfg: dict) -> tuple:
    """Split the original weights into HF language/projector keys and
    vision-tower keys; unknown names are an error."""
    mapped, vision, unknown = {}, {}, []
    for key, value in state.items():
        if _INV_FREQ.search(key):
            _check_recomputed_buffer(key, value, cfg)
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


def _vision_tower_weights(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The vision tower's weights under ``CLIPVisionModel``'s names, from a
    whole ``CLIPModel`` (text tower and projections left out), a
    ``CLIPVisionModel`` or the tower stored in a LLaVA checkpoint; the
    ``position_ids`` buffers transformers 4.28-4.30 saved are dropped."""
    vision = {}
    for key, value in state.items():
        if _CLIP_NOT_VISION.match(key):
            continue
        name = key[len('vision_model.'):] if key.startswith(
            'vision_model.') else key
        if _POSITION_IDS.search(name):
            _check_recomputed_buffer(key, value, {})
            continue
        vision[name] = value
    return vision


def read_clip_vision_config(clip_dir: str, cfg: dict):
    """The ``CLIPVisionConfig`` of a CLIP directory as released: a whole
    ``CLIPModel`` (openai/clip-vit-large-patch14) or a ``CLIPVisionModel``.
    Of a ``CLIPModel``'s config.json it reads ``vision_config``, as
    ``CLIPVisionModel.from_pretrained`` did when LLaVA loaded its tower (the
    ``*_config_dict`` entries of openai's file repeat those values)."""
    from transformers import CLIPVisionConfig
    named = cfg.get('mm_vision_tower', 'the CLIP of the checkpoint')
    if not osp.isdir(clip_dir):
        raise FileNotFoundError(
            f'CLIP directory {clip_dir!r} does not exist. Pass a local '
            f'copy of {named!r} (config.json + weights) as the vision '
            'tower.')
    path = osp.join(clip_dir, 'config.json')
    if not osp.isfile(path):
        raise ConversionError(
            f'CLIP directory {clip_dir!r} has no config.json: pass a local '
            f'copy of {named!r} as released (config.json + weights).')
    with open(path) as f:
        model_type = json.load(f).get('model_type')
    if model_type not in ('clip', 'clip_vision_model'):
        raise ConversionError(
            f'{clip_dir!r} holds a {model_type!r} model, not CLIP: pass a '
            f'local copy of {named!r} (model_type "clip" or '
            '"clip_vision_model").')
    vision_config = CLIPVisionConfig.from_pretrained(clip_dir)
    if vision_config.hidden_size != cfg['mm_hidden_size']:
        raise ConversionError(
            f'{clip_dir!r} has width {vision_config.hidden_size} but the '
            f'checkpoint\'s projector expects mm_hidden_size='
            f'{cfg["mm_hidden_size"]}: pass the CLIP named by mm_vision_tower '
            f'({cfg.get("mm_vision_tower")!r}).')
    return vision_config


def load_llava_v1_tokenizer(src: str):
    """The checkpoint's tokenizer as a fast (``tokenizers``) one, checked to
    give SentencePiece's ids.

    transformers 5 has no slow tokenizers: it rebuilds LLaVA-1.1's
    ``tokenizer.model`` with sentencepiece and protobuf (without them it
    falls back to a tiktoken reader that cannot read it).
    """
    from transformers import AutoTokenizer
    spm_file = osp.join(src, 'tokenizer.model')
    if not osp.isfile(spm_file) and not osp.isfile(
            osp.join(src, 'tokenizer.json')):
        raise ConversionError(
            f'{src!r} has no tokenizer (tokenizer.model or tokenizer.json): '
            'copy the tokenizer files of the LLaVA-1.1 release (apply_delta '
            'saves them next to the weights).')
    if osp.isfile(spm_file):
        try:
            import google.protobuf  # noqa: F401
            import sentencepiece
        except ImportError as e:
            raise ConversionError(
                f'Reading the SentencePiece tokenizer of {src!r} needs the '
                f'sentencepiece and protobuf packages ({e}); install them: '
                'pip install -r requirements/runtime.txt') from e
    tokenizer = AutoTokenizer.from_pretrained(src)
    if osp.isfile(spm_file):
        sp = sentencepiece.SentencePieceProcessor(model_file=spm_file)
        for text in TOKENIZER_PROBES:
            ours = tokenizer(text, add_special_tokens=False)['input_ids']
            if ours != sp.encode(text):
                raise ConversionError(
                    f'The tokenizer transformers built from {spm_file!r} '
                    f'tokenises {text!r} as {ours}, SentencePiece as '
                    f'{sp.encode(text)}: the conversion would change the '
                    'ids the model was trained on. Check tokenizer_config.'
                    'json (tokenizer_class LlamaTokenizer, legacy).')
    return tokenizer


def _check_layout(expected: set, mapped: Dict[str, Tensor], src: str,
                  clip_source: str) -> None:
    """Name what does not fit the LLaVA layout, and where it came from."""
    absent, unexpected = expected - set(mapped), set(mapped) - expected
    problems = []
    for keys, verb in ((absent, 'lacks'), (unexpected, 'has unexpected')):
        vision = sorted(k for k in keys if k.startswith('model.vision_tower'))
        language = sorted(set(keys) - set(vision))
        if vision:
            problems.append(
                f'the vision tower from {clip_source} {verb} {vision[:5]} '
                f'({len(vision)} in all): pass the CLIP ViT named by '
                'mm_vision_tower')
        if language:
            problems.append(
                f'the language model of {src!r} {verb} {language[:5]} '
                f'({len(language)} in all): its weights do not match its '
                'config.json (num_hidden_layers, hidden_size...)')
    if problems:
        raise ConversionError('The converted weights do not match the LLaVA '
                              'layout: ' + '; '.join(problems) + '.')


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
        vision_tower: local CLIP directory, the model named by the
            checkpoint's ``mm_vision_tower`` (openai/clip-vit-large-patch14
            for LLaVA-1.1) as released; its weights are used unless the
            checkpoint stores its own tower.
        dtype: ``'float16'``, ``'bfloat16'`` or ``'float32'``; defaults to the
            language model's dtype in the checkpoint.
        max_shard_size: shard size of the written safetensors.

    Returns:
        ``out``.
    """
    from transformers import (LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)

    cfg = read_llava_v1_config(src)
    vision_config = read_clip_vision_config(vision_tower, cfg)
    mapped, vision = _map_language_keys(load_weights(src, 'LLaVA'), cfg)
    clip_source = f'{src!r} (model.vision_tower.*)'
    if not vision:
        vision = load_weights(vision_tower, 'CLIP')
        clip_source = repr(vision_tower)
    vision = _vision_tower_weights(vision)
    embed = mapped['model.language_model.embed_tokens.weight']
    torch_dtype = getattr(torch, dtype) if dtype else embed.dtype

    # The tokenizer must hold LLaVA-1.1's image tokens; <image> is added.
    tokenizer = load_llava_v1_tokenizer(src)
    vocab = tokenizer.get_vocab()
    needed = [IM_PATCH] + ([IM_START, IM_END]
                           if cfg.get('mm_use_im_start_end', False) else [])
    missing = [t for t in needed if t not in vocab]
    if missing:
        raise ConversionError(
            f'The tokenizer of {src!r} lacks {missing}; a LLaVA-1.1 tokenizer '
            'has <im_patch> (and <im_start>/<im_end> with '
            'mm_use_im_start_end) in added_tokens.json.')
    if len(tokenizer) > embed.shape[0]:
        raise ConversionError(
            f'The tokenizer of {src!r} has {len(tokenizer)} tokens but the '
            f'checkpoint embeds {embed.shape[0]}: tokenizer and weights come '
            'from different releases.')
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
    _check_layout(set(llava.state_dict()), mapped, src, clip_source)
    llava.load_state_dict(mapped, strict=True, assign=True)
    llava.config.dtype = torch_dtype
    os.makedirs(out, exist_ok=True)
    llava.save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    return out
