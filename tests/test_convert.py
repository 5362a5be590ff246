"""LLaVA-1.1 conversion: a tiny checkpoint in the original layout, written
here, gives the same outputs after conversion to the Hugging Face layout."""
import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (CLIPVisionConfig, CLIPVisionModel, LlamaConfig,
                          LlamaForCausalLM, LlavaForConditionalGeneration,
                          PreTrainedTokenizerFast)

from lumen_mm.converters import ConversionError, convert_llava_v1
from lumen_mm.datasets.tokenizer import template_corpus

SIDE = 32  # image size of the tiny CLIP: 4 x 4 patches of 8 px
NUM_PATCHES = 16


def _tokenizer():
    """A LLaVA-1.1-like tokenizer: <im_patch>, <im_start>, <im_end> and no
    <image>."""
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        template_corpus() + ['circle', 'square'],
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=['<unk>', '<s>', '</s>'],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token='<unk>', bos_token='<s>',
        eos_token='</s>')
    hf.add_tokens(['<im_patch>', '<im_start>', '<im_end>'],
                  special_tokens=True)
    return hf


@pytest.fixture(scope='module')
def original(tmp_path_factory):
    """An original-layout LLaVA-1.1 checkpoint and its CLIP directory."""
    root = tmp_path_factory.mktemp('llava_v1')
    torch.manual_seed(0)
    tok = _tokenizer()
    text_cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    llama = LlamaForCausalLM(text_cfg).eval()
    clip = CLIPVisionModel(
        CLIPVisionConfig(hidden_size=24, intermediate_size=48,
                         num_hidden_layers=3, num_attention_heads=2,
                         image_size=SIDE, patch_size=8)).eval()
    projector = torch.nn.Linear(24, 32)
    state = dict(llama.state_dict())
    state['model.mm_projector.weight'] = projector.weight.data
    state['model.mm_projector.bias'] = projector.bias.data
    # old Llama exports stored this buffer; the converter drops it
    state['model.layers.0.self_attn.rotary_emb.inv_freq'] = torch.ones(8)
    src = root / 'llava-7b-v1-1'
    src.mkdir()
    torch.save(state, src / 'pytorch_model.bin')
    cfg = text_cfg.to_dict()
    cfg.update(model_type='llava', architectures=['LlavaLlamaForCausalLM'],
               mm_vision_tower='openai/clip-vit-large-patch14',
               mm_hidden_size=24, mm_vision_select_layer=-2,
               mm_use_im_start_end=True, use_mm_proj=True)
    (src / 'config.json').write_text(json.dumps(cfg))
    tok.save_pretrained(src)
    clip_dir = root / 'clip'
    clip.save_pretrained(clip_dir)
    return dict(src=src, clip_dir=clip_dir, llama=llama, clip=clip,
                projector=projector, tok=tok, root=root)


@pytest.fixture(scope='module')
def converted(original):
    out = original['root'] / 'hf'
    convert_llava_v1(str(original['src']), str(out),
                     str(original['clip_dir']))
    return out


def _reference_image(original, pixels):
    """LLaVA-1.1's image tokens: CLIP layer -2 patches -> linear."""
    with torch.no_grad():
        feats = original['clip'](
            pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        return original['projector'](feats)


def _reference_logits(original, ids, pixels):
    """LLaVA-1.1's forward: the image tokens replace <im_patch>."""
    image = _reference_image(original, pixels)
    with torch.no_grad():
        embeds = original['llama'].model.embed_tokens(ids).clone()
        patch = ids == original['tok'].convert_tokens_to_ids('<im_patch>')
        embeds[patch] = image.reshape(-1, image.shape[-1])
        return original['llama'](inputs_embeds=embeds).logits


def test_converted_model_gives_the_original_outputs(original, converted):
    tok = original['tok']
    text = tok('USER: ', add_special_tokens=False)['input_ids']
    image = tok.convert_tokens_to_ids(['<im_start>'] + ['<im_patch>'] *
                                      NUM_PATCHES + ['<im_end>'])
    question = tok(' circle? ASSISTANT:',
                   add_special_tokens=False)['input_ids']
    ids = torch.tensor([[tok.bos_token_id] + text + image + question])
    pixels = torch.randn(1, 3, SIDE, SIDE)
    ref_logits = _reference_logits(original, ids, pixels)

    hf = LlavaForConditionalGeneration.from_pretrained(converted).eval()
    hf_tok = PreTrainedTokenizerFast.from_pretrained(converted)
    placeholder = hf_tok.convert_tokens_to_ids('<image>')
    assert hf.config.image_token_id == placeholder
    assert hf.config.vision_feature_layer == -2
    hf_ids = ids.clone()
    hf_ids[ids == tok.convert_tokens_to_ids('<im_patch>')] = placeholder
    with torch.no_grad():
        logits = hf(input_ids=hf_ids, pixel_values=pixels).logits
    # one more row: the <image> placeholder
    assert logits.shape[-1] == ref_logits.shape[-1] + 1
    assert torch.allclose(logits[..., :-1], ref_logits, atol=1e-5)


def test_lumen_lmm_loads_the_converted_checkpoint(original, converted):
    from lumen_mm.models import LlavaLMM
    lmm = LlavaLMM(
        pretrained=str(converted), image_size=SIDE, aligner_image_size=SIDE,
        vision_feature_layer=-2, aligner_feature_layer=-2,
        conversation=dict(image_start='<im_start>', image_end='<im_end>'))
    lmm.eval()
    prompt = lmm.conversation.location_prompt('det', 'circle', False)
    tok = lmm.tokenizer
    start = prompt.input_ids.index(tok.convert_tokens_to_ids('<im_start>'))
    assert prompt.input_ids[start + 1:start + 1 + NUM_PATCHES] == [
        tok.convert_tokens_to_ids('<image>')] * NUM_PATCHES
    assert prompt.input_ids[start + 1 + NUM_PATCHES] == \
        tok.convert_tokens_to_ids('<im_end>')

    pixels = torch.randn(2, 3, SIDE, SIDE)
    with torch.no_grad():
        embeds, feats = lmm.encode_images(pixels)
        loc = lmm.forward_prompts(embeds, [1], [prompt],
                                  with_lm_loss=False)['loc_states']
        # transformers' own LLaVA forward on the same (converted) weights
        hidden = lmm.hf_model(
            input_ids=torch.tensor([prompt.input_ids]),
            pixel_values=pixels[1:], output_hidden_states=True
        ).hidden_states[-1][0, -1]
    assert torch.allclose(embeds, _reference_image(original, pixels),
                          atol=1e-5)
    assert feats.shape == (2, 24, 4, 4)
    assert torch.allclose(loc[0], hidden, atol=1e-5)


def _config(original):
    return json.loads((original['src'] / 'config.json').read_text())


def _variant(original, tmp_path, config=None, state=None, drop=()):
    """A copy of the original checkpoint with one thing changed."""
    import shutil
    src = tmp_path / 'variant'
    shutil.copytree(original['src'], src)
    if config is not None:
        (src / 'config.json').write_text(json.dumps(config))
    if state is not None or drop:
        sd = torch.load(src / 'pytorch_model.bin', weights_only=True)
        sd.update(state or {})
        for k in drop:
            sd.pop(k)
        torch.save(sd, src / 'pytorch_model.bin')
    return src


@pytest.mark.parametrize('change, message', [
    (dict(config=dict(mm_projector_type='mlp2x_gelu')),
     'convert_llava_weights'),
    (dict(config=dict(architectures=['LlavaForConditionalGeneration'])),
     'already in the Hugging Face layout'),
    (dict(config=dict(model_type='llama')), 'not an original LLaVA'),
    (dict(state={'model.extra_head.weight': torch.zeros(2)}),
     'unknown kind.*model.extra_head.weight'),
    (dict(drop=('model.mm_projector.weight', )), 'model.mm_projector.weight'),
    (dict(config=dict(mm_hidden_size=1024)), 'mm_hidden_size=1024'),
])
def test_unrecognised_checkpoints_are_refused(original, tmp_path, change,
                                              message):
    config = None
    if 'config' in change:
        config = dict(_config(original), **change['config'])
    src = _variant(original, tmp_path, config, change.get('state'),
                   change.get('drop', ()))
    with pytest.raises(ConversionError, match=message):
        convert_llava_v1(str(src), str(tmp_path / 'out'),
                         str(original['clip_dir']))


def test_missing_inputs_are_named(original, tmp_path):
    with pytest.raises(ConversionError, match='no config.json'):
        convert_llava_v1(str(tmp_path), str(tmp_path / 'out'),
                         str(original['clip_dir']))
    with pytest.raises(FileNotFoundError, match='clip-vit-large-patch14'):
        convert_llava_v1(str(original['src']), str(tmp_path / 'out'),
                         str(tmp_path / 'no_clip'))
