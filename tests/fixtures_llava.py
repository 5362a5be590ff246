"""Tiny checkpoints in the layouts the original projects released.

* :func:`write_llava_v1_release`: LLaVA-1.1 (LLaVA-Lightning-7B-v1-1) as the
  LLaVA repository's ``apply_delta`` saves it with transformers 4.28: the
  slow SentencePiece tokenizer (``tokenizer.model``, ``added_tokens.json``
  with ``<im_patch>``/``<im_start>``/``<im_end>``, ``special_tokens_map.json``,
  ``tokenizer_config.json`` naming ``LlamaTokenizer``, no ``tokenizer.json``),
  fp16 weights in ``pytorch_model-0000x-of-0000N.bin`` shards with
  ``pytorch_model.bin.index.json``, a rotary ``inv_freq`` buffer per layer,
  ``model.mm_projector`` as one Linear, and the config keys of its
  ``LlavaLlamaForCausalLM`` (``mm_vision_tower``, ``mm_hidden_size``,
  ``mm_use_im_start_end``, ``mm_vision_select_layer``, ``use_mm_proj``...).
* :func:`write_openai_clip`: a CLIP directory in the layout of
  openai/clip-vit-large-patch14: a whole ``CLIPModel`` (text and vision
  weights, projections, ``logit_scale``) in one fp32 ``pytorch_model.bin``
  with the ``position_ids`` buffers, and a config.json with both
  ``*_config`` and ``*_config_dict`` entries.

Nothing can be downloaded here, so the SentencePiece model is trained on the
spot with LLaMA's trainer settings (BPE, byte fallback, digits split, no
normalisation), on a tiny vocabulary.
"""
import json
import shutil
from pathlib import Path
from typing import Dict, List

import torch

LLAVA_V1_SYSTEM = ('A chat between a curious human and an artificial '
                   'intelligence assistant. The assistant gives helpful, '
                   "detailed, and polite answers to the human's questions.")
# LLaVA's image tokens, added in this order by its initialize_vision_tokenizer
IMAGE_TOKENS = ('<im_patch>', '<im_start>', '<im_end>')
SAMPLE_TEXTS = (
    LLAVA_V1_SYSTEM,
    'USER: What is unusual about this image?\nASSISTANT: The man is '
    'ironing clothes on the back of a taxi.',
    'Please find the location of the red circle. Respond with boxes.',
    'There are 12 apples and 3.5 kg of pears, left of the yellow cross.',
)


def train_llama_sentencepiece(model_prefix: str, texts: List[str],
                              vocab_size: int = 400) -> str:
    """Train a SentencePiece BPE with the settings of LLaMA's
    ``tokenizer.model`` (byte fallback, split digits, identity
    normalisation, ``<unk>``/``<s>``/``</s>`` = 0/1/2, no pad); returns its
    path."""
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=model_prefix,
        model_type='bpe',
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name='identity',
        add_dummy_prefix=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2)
    return model_prefix + '.model'


def _added_token(content: str) -> dict:
    """An ``AddedToken`` as transformers 4.28 wrote it to tokenizer files."""
    return dict(content=content, lstrip=False, normalized=True, rstrip=False,
                single_word=False)


def write_llava_v1_tokenizer(directory: Path, spm_model: str) -> int:
    """The tokenizer files transformers 4.28 saved for LLaVA-1.1's slow
    ``LlamaTokenizer`` (LLaVA's train.py sets pad = unk); returns the
    vocabulary size with the image tokens."""
    import sentencepiece as spm
    base = spm.SentencePieceProcessor(model_file=spm_model).get_piece_size()
    shutil.copy(spm_model, directory / 'tokenizer.model')
    typed = {k: dict(__type='AddedToken', **_added_token(v))
             for k, v in (('bos_token', '<s>'), ('eos_token', '</s>'),
                          ('unk_token', '<unk>'))}
    files = {
        'tokenizer_config.json': dict(
            add_bos_token=True, add_eos_token=False,
            clean_up_tokenization_spaces=False, model_max_length=2048,
            pad_token=None, padding_side='right', sp_model_kwargs={},
            tokenizer_class='LlamaTokenizer', **typed),
        'special_tokens_map.json': dict(
            bos_token=_added_token('<s>'), eos_token=_added_token('</s>'),
            pad_token='<unk>', unk_token=_added_token('<unk>')),
        'added_tokens.json': {t: base + i for i, t in enumerate(IMAGE_TOKENS)},
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content, indent=2))
    return base + len(IMAGE_TOKENS)


def rotary_inv_freq(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """The ``inv_freq`` buffer transformers 4.28's LlamaRotaryEmbedding
    registered (persistent, so saved)."""
    return 1.0 / theta**(
        torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def save_sharded_bin(state: Dict[str, torch.Tensor], directory: Path,
                     num_shards: int = 2) -> None:
    """``pytorch_model-0000x-of-0000N.bin`` + ``pytorch_model.bin.index.json``
    as transformers 4.28's ``save_pretrained`` shards a state dict."""
    keys = list(state)
    per_shard = -(-len(keys) // num_shards)
    weight_map, total = {}, 0
    for i in range(num_shards):
        name = f'pytorch_model-{i + 1:05d}-of-{num_shards:05d}.bin'
        shard = {k: state[k] for k in keys[i * per_shard:(i + 1) * per_shard]}
        torch.save(shard, directory / name)
        weight_map.update({k: name for k in shard})
        total += sum(v.numel() * v.element_size() for v in shard.values())
    (directory / 'pytorch_model.bin.index.json').write_text(
        json.dumps(dict(metadata=dict(total_size=total),
                        weight_map=weight_map), indent=2))


def llava_v1_config(llama_config, mm_hidden_size: int) -> dict:
    """config.json of LLaVA-1.1's LlavaLlamaForCausalLM (transformers 4.28:
    no num_key_value_heads/rope_theta yet)."""
    c = llama_config
    return {
        '_name_or_path': './checkpoints/LLaVA-Lightning-7B-v1-1',
        'architectures': ['LlavaLlamaForCausalLM'],
        'bos_token_id': 1,
        'eos_token_id': 2,
        'freeze_mm_mlp_adapter': False,
        'hidden_act': 'silu',
        'hidden_size': c.hidden_size,
        'initializer_range': 0.02,
        'intermediate_size': c.intermediate_size,
        'max_position_embeddings': c.max_position_embeddings,
        'max_sequence_length': c.max_position_embeddings,
        'mm_hidden_size': mm_hidden_size,
        'mm_use_im_start_end': True,
        'mm_vision_select_layer': -2,
        'mm_vision_tower': 'openai/clip-vit-large-patch14',
        'model_type': 'llava',
        'num_attention_heads': c.num_attention_heads,
        'num_hidden_layers': c.num_hidden_layers,
        'pad_token_id': 0,
        'rms_norm_eps': c.rms_norm_eps,
        'sep_image_conv_front': False,
        'tie_word_embeddings': False,
        'torch_dtype': 'float16',
        'transformers_version': '4.28.0.dev0',
        'tune_mm_mlp_adapter': False,
        'use_cache': True,
        'use_mm_proj': True,
        'vocab_size': c.vocab_size,
    }


def write_llava_v1_release(directory: Path, llama, projector,
                           spm_model: str) -> None:
    """A LLaVA-1.1 checkpoint directory: ``llama`` (a ``LlamaForCausalLM``
    whose vocabulary includes the image tokens) and ``projector`` (the
    ``mm_projector`` Linear) saved in fp16 as LLaVA's apply_delta did."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_llava_v1_tokenizer(directory, spm_model)
    cfg = llama.config
    if cfg.vocab_size != vocab:
        raise ValueError(f'the Llama embeds {cfg.vocab_size} tokens, the '
                         f'tokenizer has {vocab}')
    state = {}
    inv_freq = rotary_inv_freq(cfg.hidden_size // cfg.num_attention_heads)
    for key, value in llama.state_dict().items():
        state[key] = value
        if key.endswith('.self_attn.o_proj.weight'):
            state[key.replace('o_proj.weight', 'rotary_emb.inv_freq')] = \
                inv_freq
    state['model.mm_projector.weight'] = projector.weight.data
    state['model.mm_projector.bias'] = projector.bias.data
    # model.half(): every floating tensor, buffers included, in fp16
    save_sharded_bin({k: v.detach().clone().half() for k, v in state.items()},
                     directory)
    (directory / 'config.json').write_text(
        json.dumps(llava_v1_config(cfg, projector.in_features), indent=2))


def write_openai_clip(directory: Path, clip_model) -> None:
    """A CLIP directory in openai/clip-vit-large-patch14's layout, holding
    ``clip_model`` (a ``CLIPModel``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = clip_model.config
    text, vision = config.text_config, config.vision_config
    state = {k: v.detach().clone() for k, v in clip_model.state_dict().items()}
    num_patches = (vision.image_size // vision.patch_size)**2
    # persistent buffers in the transformers versions of the release
    state['vision_model.embeddings.position_ids'] = torch.arange(
        num_patches + 1)[None]
    state['text_model.embeddings.position_ids'] = torch.arange(
        text.max_position_embeddings)[None]
    torch.save(state, directory / 'pytorch_model.bin')
    # the *_config_dict entries: the values that differ from the defaults
    dict_keys = ('hidden_size', 'intermediate_size', 'num_attention_heads',
                 'num_hidden_layers', 'projection_dim', 'image_size',
                 'patch_size')

    def differing(config):
        default = type(config)().to_dict()
        return {k: getattr(config, k) for k in dict_keys
                if k in default and getattr(config, k) != default[k]}

    config = {
        '_name_or_path': 'clip-vit-large-patch14/',
        'architectures': ['CLIPModel'],
        'initializer_factor': 1.0,
        'logit_scale_init_value': 2.6592,
        'model_type': 'clip',
        'projection_dim': clip_model.config.projection_dim,
        'text_config': text.to_dict(),
        'text_config_dict': differing(text),
        'torch_dtype': 'float32',
        'transformers_version': None,
        'vision_config': vision.to_dict(),
        'vision_config_dict': differing(vision),
    }
    (directory / 'config.json').write_text(json.dumps(config, indent=2))
