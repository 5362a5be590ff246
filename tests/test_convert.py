"""LLaVA-1.1 conversion, on a tiny release written here in the layouts the
original projects published (tests/fixtures_llava.py): the converted model
gives the outputs of LLaVA-1.1's own forward pass, its tokenizer the ids of
SentencePiece."""
import copy
import json
import shutil
import sys

import pytest
import torch
from fixtures_llava import (IMAGE_TOKENS, SAMPLE_TEXTS, save_sharded_bin,
                            train_llama_sentencepiece, write_llava_v1_release,
                            write_openai_clip)
from transformers import (AutoTokenizer, CLIPConfig, CLIPModel, LlamaConfig,
                          LlamaForCausalLM, LlavaForConditionalGeneration)

from lumen_mm.converters import ConversionError, convert_llava_v1

SIDE = 32  # image size of the tiny CLIP: 4 x 4 patches of 8 px
NUM_PATCHES = 16
# text the SentencePiece model never saw: byte fallback, digits, accents
UNSEEN_TEXT = 'Zürich ✓ 2024: größer als 7 Ähren?'


@pytest.fixture(scope='module')
def original(tmp_path_factory):
    """A LLaVA-1.1 release and its CLIP (openai's CLIPModel layout)."""
    root = tmp_path_factory.mktemp('llava_v1')
    spm_model = train_llama_sentencepiece(
        str(root / 'spm'), list(SAMPLE_TEXTS), vocab_size=320)
    torch.manual_seed(0)
    import sentencepiece
    vocab = sentencepiece.SentencePieceProcessor(
        model_file=spm_model).get_piece_size() + len(IMAGE_TOKENS)
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=512)).eval()
    clip = CLIPModel(
        CLIPConfig(
            text_config=dict(hidden_size=16, intermediate_size=32,
                             num_hidden_layers=1, num_attention_heads=2,
                             vocab_size=50, max_position_embeddings=8),
            vision_config=dict(hidden_size=24, intermediate_size=48,
                               num_hidden_layers=3, num_attention_heads=2,
                               image_size=SIDE, patch_size=8),
            projection_dim=12)).eval()
    projector = torch.nn.Linear(24, 32)
    src, clip_dir = root / 'LLaVA-Lightning-7B-v1-1', root / 'clip'
    write_llava_v1_release(src, llama, projector, spm_model)
    write_openai_clip(clip_dir, clip)
    return dict(src=src, clip_dir=clip_dir, llama=llama, clip=clip,
                projector=projector, root=root)


@pytest.fixture(scope='module')
def converted(original):
    out = original['root'] / 'hf'
    convert_llava_v1(str(original['src']), str(out),
                     str(original['clip_dir']))
    return out


def _release_state(src):
    """Every tensor of a sharded release, as its index lists them."""
    index = json.loads((src / 'pytorch_model.bin.index.json').read_text())
    state = {}
    for name in sorted(set(index['weight_map'].values())):
        state.update(torch.load(src / name, weights_only=True))
    return state


def _original_forward(original, ids, pixels, image_ids):
    """LLaVA-1.1's forward (its LlavaLlamaModel), on the weights as stored
    (fp16; LLaVA also casts its CLIP to fp16) computed in fp32: CLIP layer -2
    patch features (no CLS) through the linear mm_projector, spliced in
    after each <im_start>."""
    im_start = image_ids['<im_start>']
    llama, projector, clip = (
        copy.deepcopy(original[k]).half().float()
        for k in ('llama', 'projector', 'clip'))
    with torch.no_grad():
        hidden = clip.vision_model(
            pixels, output_hidden_states=True).hidden_states[-2]
        features = projector(hidden[:, 1:])
        embeds = llama.model.embed_tokens(ids)
        rows = []
        for row, feats in zip(range(len(ids)), features):
            start = int((ids[row] == im_start).nonzero()[0])
            rows.append(torch.cat([embeds[row, :start + 1], feats,
                                   embeds[row, start + NUM_PATCHES + 1:]]))
        return llama(inputs_embeds=torch.stack(rows)).logits


def _prompt_ids(original):
    """A LLaVA-1.1 prompt, tokenised as LLaVA did: text pieces by
    SentencePiece, image tokens by their ids in added_tokens.json."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(
        model_file=str(original['src'] / 'tokenizer.model'))
    image_ids = json.loads(
        (original['src'] / 'added_tokens.json').read_text())
    image = [image_ids['<im_start>']] + [image_ids['<im_patch>']
                                         ] * NUM_PATCHES + [
                                             image_ids['<im_end>']]
    ids = ([sp.bos_id()] + sp.encode(SAMPLE_TEXTS[0] + ' USER:') + image +
           sp.encode('What is unusual about this image? ASSISTANT:'))
    return torch.tensor([ids]), image_ids


def test_the_release_has_the_original_layout(original):
    """The fixture is what LLaVA's apply_delta saved (transformers 4.28)."""
    src = original['src']
    assert not (src / 'tokenizer.json').exists()
    assert json.loads((src / 'tokenizer_config.json').read_text())[
        'tokenizer_class'] == 'LlamaTokenizer'
    state = _release_state(src)
    assert len(list(src.glob('pytorch_model-0000?-of-00002.bin'))) == 2
    assert {v.dtype for v in state.values()} == {torch.float16}
    assert 'model.layers.1.self_attn.rotary_emb.inv_freq' in state
    assert state['model.mm_projector.weight'].shape == (32, 24)
    clip_cfg = json.loads((original['clip_dir'] / 'config.json').read_text())
    assert clip_cfg['architectures'] == ['CLIPModel']
    assert clip_cfg['vision_config_dict']['hidden_size'] == 24
    clip_state = torch.load(original['clip_dir'] / 'pytorch_model.bin',
                            weights_only=True)
    assert 'vision_model.embeddings.position_ids' in clip_state
    assert 'text_model.encoder.layers.0.mlp.fc1.weight' in clip_state


def test_converted_model_gives_the_original_outputs(original, converted):
    ids, image_ids = _prompt_ids(original)
    pixels = torch.randn(1, 3, SIDE, SIDE)
    reference = _original_forward(original, ids, pixels, image_ids)

    hf = LlavaForConditionalGeneration.from_pretrained(converted).eval()
    tok = AutoTokenizer.from_pretrained(converted)
    placeholder = tok.convert_tokens_to_ids('<image>')
    assert hf.dtype == torch.float16  # the release's dtype
    assert hf.config.image_token_id == placeholder
    assert hf.config.vision_feature_layer == -2
    hf_ids = ids.clone()
    hf_ids[ids == image_ids['<im_patch>']] = placeholder
    with torch.no_grad():
        half = hf(input_ids=hf_ids, pixel_values=pixels.half()).logits
        full = hf.float()(input_ids=hf_ids, pixel_values=pixels).logits
    # one more row: the <image> placeholder
    assert full.shape[-1] == reference.shape[-1] + 1
    assert torch.allclose(full[..., :-1], reference, atol=1e-5)
    # computed in fp16: within its precision (eps 1e-3) of the reference
    error = (half[..., :-1].float() - reference).abs().max()
    assert error < 1e-2 * reference.abs().max(), error


def test_converted_tokenizer_gives_sentencepiece_ids(original, converted):
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(
        model_file=str(original['src'] / 'tokenizer.model'))
    tok = AutoTokenizer.from_pretrained(converted)
    assert (converted / 'tokenizer.json').is_file()
    for text in SAMPLE_TEXTS + (UNSEEN_TEXT, ):
        ids = tok(text, add_special_tokens=False)['input_ids']
        assert ids == sp.encode(text), text
        assert tok.decode(ids) == text
    assert tok(SAMPLE_TEXTS[1])['input_ids'][0] == sp.bos_id()
    assert UNSEEN_TEXT not in ''.join(SAMPLE_TEXTS)
    # the image tokens keep their ids; <image> is new, after them
    added = json.loads((original['src'] / 'added_tokens.json').read_text())
    assert tok.convert_tokens_to_ids(list(added)) == list(added.values())
    assert tok.convert_tokens_to_ids('<image>') == max(added.values()) + 1
    assert tok('<im_start><im_end>', add_special_tokens=False)[
        'input_ids'] == [added['<im_start>'], added['<im_end>']]


def test_without_sentencepiece_the_error_says_what_to_install(
        original, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'sentencepiece', None)
    with pytest.raises(ConversionError, match='sentencepiece and protobuf'):
        convert_llava_v1(str(original['src']), str(tmp_path / 'out'),
                         str(original['clip_dir']))


def test_lumen_lmm_loads_the_converted_checkpoint(original, tmp_path):
    from lumen_mm.models import LlavaLMM
    out = tmp_path / 'hf32'
    convert_llava_v1(str(original['src']), str(out),
                     str(original['clip_dir']), dtype='float32')
    lmm = LlavaLMM(
        pretrained=str(out), image_size=SIDE, aligner_image_size=SIDE,
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
                                  with_lm_loss=False).loc_states
        # transformers' own LLaVA forward on the same (converted) weights
        hidden = lmm.hf_model(
            input_ids=torch.tensor([prompt.input_ids]),
            pixel_values=pixels[1:], output_hidden_states=True
        ).hidden_states[-1][0, -1]
        clip_hidden = original['clip'].vision_model(
            pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        projector = copy.deepcopy(original['projector']).half().float()
        expected = projector(clip_hidden)
    assert torch.allclose(embeds, expected, atol=1e-5)
    assert feats.shape == (2, 24, 4, 4)
    assert torch.allclose(loc[0], hidden, atol=1e-5)


def _llava_v1_ids(src, text, added):
    """``text`` tokenised as LLaVA-1.1 did (its LlamaTokenizer, transformers
    4.28): split at the added tokens, the whitespace next to them dropped
    (not next to ``</s>``, whose AddedToken keeps it), each piece by
    SentencePiece, ``<s>`` first."""
    import re

    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(
        model_file=str(src / 'tokenizer.model'))
    names = sorted(added, key=len, reverse=True)
    pieces = [p for p in re.split(
        '(' + '|'.join(map(re.escape, names + ['</s>'])) + ')', text) if p]
    ids = [sp.bos_id()]
    for i, piece in enumerate(pieces):
        if piece in added:
            ids.append(added[piece])
        elif piece == '</s>':
            ids.append(sp.eos_id())
        else:
            if i and pieces[i - 1] in added:
                piece = piece.lstrip()
            if i + 1 < len(pieces) and pieces[i + 1] in added:
                piece = piece.rstrip()
            ids += sp.encode(piece) if piece else []
    return ids


def test_lumen_prompts_are_tokenised_as_llava_v1_did(original, converted):
    """With the paper config's conversation settings, every prompt gets the
    ids LLaVA-1.1's own tokenisation of the whole prompt gives."""
    from mmengine.config import Config

    from lumen_mm.models import LlavaLMM
    paper = Config.fromfile(
        'configs/lumen/_base_/models/lumen_llava-v1.1-7b.py')
    lmm = LlavaLMM(pretrained=str(converted), image_size=SIDE,
                   aligner_image_size=SIDE,
                   conversation=paper.model.backbone.conversation)
    conv, tok = lmm.conversation, lmm.tokenizer
    added = {t: tok.convert_tokens_to_ids(t) for t in (
        '<im_start>', '<im_end>', '<image>', '[LOC]', '[DET]', '[GROUND]')}
    head = (SAMPLE_TEXTS[0] + ' USER: <im_start>' + '<image>' * NUM_PATCHES +
            '<im_end>\n')
    ask = head + ('Please find the location of {}. Respond with {}. '
                  'ASSISTANT: Sure, the location is [LOC]')
    cases = [
        (conv.location_prompt('det', 'red circle').input_ids,
         ask.format('red circle', 'boxes') +
         '. The task output is [DET].</s>'),
        (conv.location_prompt('ground', ' the star, left of 12 apples!',
                              with_answer=False).input_ids,
         ask.format('the star, left of 12 apples!', 'boxes')),
        (conv.chat_prompt([('What is unusual?', 'A taxi.'),
                           ('Why?', 'Ironing on it.')]).input_ids,
         head + 'What is unusual? ASSISTANT: A taxi.</s>USER: Why? '
         'ASSISTANT: Ironing on it.</s>'),
        (conv.instruction_prompt('Where is the yellow cross?').input_ids,
         head + 'Where is the yellow cross? ASSISTANT:'),
    ]
    for ids, text in cases:
        assert ids == _llava_v1_ids(original['src'], text, added), text
    # the labels start at the answer, the description is its own words
    p = conv.location_prompt('ground', 'the star')
    answer = [i for i, label in zip(p.input_ids, p.labels) if label >= 0]
    assert tok.decode(answer).startswith('Sure, the location is')
    assert tok.decode(p.description_ids).strip() == 'the star'
    assert p.input_ids[p.prefix_len:p.prefix_len +
                       len(p.description_ids)] == p.description_ids
    # the export's chat template renders the same conversation
    from lumen_mm.export import build_processor, check_chat_template
    processor = build_processor(lmm, paper.model.data_preprocessor)
    assert check_chat_template(processor, lmm)


def _variant(original, tmp_path, config=None, state=None, drop=()):
    """A copy of the release with its config or weights changed (saved
    sharded again)."""
    src = tmp_path / 'variant'
    shutil.copytree(original['src'], src)
    if config is not None:
        cfg = json.loads((src / 'config.json').read_text())
        (src / 'config.json').write_text(json.dumps(dict(cfg, **config)))
    if state is not None or drop:
        sd = _release_state(src)
        sd.update(state or {})
        for k in drop:
            sd.pop(k)
        for f in src.glob('pytorch_model*'):
            f.unlink()
        save_sharded_bin(sd, src)
    return src


def _stored_tower(original, scale=1.0):
    """The CLIP vision tower under the names later LLaVA exports stored it
    (transformers 4.28-4.30: with its position_ids buffer), in fp16."""
    clip = torch.load(original['clip_dir'] / 'pytorch_model.bin',
                      weights_only=True)
    return {
        'model.vision_tower.vision_tower.' + k:
        (v * scale).half() if v.is_floating_point() else v
        for k, v in clip.items() if k.startswith('vision_model.')
    }


def test_a_stored_vision_tower_with_position_ids_converts(original,
                                                          tmp_path):
    """The tower in the checkpoint wins over the CLIP directory's, and its
    position_ids buffer is dropped."""
    tower = _stored_tower(original, scale=1.5)
    assert 'model.vision_tower.vision_tower.vision_model.embeddings.' \
        'position_ids' in tower
    src = _variant(original, tmp_path, state=tower)
    out = tmp_path / 'out'
    convert_llava_v1(str(src), str(out), str(original['clip_dir']))
    hf = LlavaForConditionalGeneration.from_pretrained(out)
    ours = hf.model.vision_tower.state_dict()
    name = 'encoder.layers.0.mlp.fc1.weight'
    assert torch.equal(ours[name],
                       tower['model.vision_tower.vision_tower.vision_model.'
                             + name])


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
    (dict(drop=('model.layers.1.mlp.up_proj.weight', )),
     'language model .*lacks.*layers.1.mlp.up_proj.*config.json'),
    (dict(config=dict(num_hidden_layers=3)),
     'language model .*lacks.*layers.2.*config.json'),
    (dict(state={'model.layers.0.self_attn.rotary_emb.inv_freq':
                 torch.ones(8).half()}), 'rotary_emb.inv_freq.*rope_theta'),
])
def test_unrecognised_checkpoints_are_refused(original, tmp_path, change,
                                              message):
    src = _variant(original, tmp_path, change.get('config'),
                   change.get('state'), change.get('drop', ()))
    with pytest.raises(ConversionError, match=message):
        convert_llava_v1(str(src), str(tmp_path / 'out'),
                         str(original['clip_dir']))


def test_clip_weights_that_do_not_fit_are_named(original, tmp_path):
    """CLIP weights that lack a layer of their config: the error names the
    CLIP directory, not the LLaVA checkpoint."""
    clip_dir = tmp_path / 'clip2'
    shutil.copytree(original['clip_dir'], clip_dir)
    state = torch.load(clip_dir / 'pytorch_model.bin', weights_only=True)
    state = {k: v for k, v in state.items()
             if not k.startswith('vision_model.encoder.layers.2.')}
    torch.save(state, clip_dir / 'pytorch_model.bin')
    with pytest.raises(ConversionError,
                       match=r"vision tower from '.*clip2' lacks.*layers.2"):
        convert_llava_v1(str(original['src']), str(tmp_path / 'out'),
                         str(clip_dir))


def test_edited_position_ids_are_refused(original, tmp_path):
    tower = _stored_tower(original)
    key = ('model.vision_tower.vision_tower.vision_model.embeddings.'
           'position_ids')
    tower[key] = tower[key].flip(-1)
    src = _variant(original, tmp_path, state=tower)
    with pytest.raises(ConversionError, match='position_ids.*positions'):
        convert_llava_v1(str(src), str(tmp_path / 'out'),
                         str(original['clip_dir']))


def test_missing_inputs_are_named(original, tmp_path):
    with pytest.raises(ConversionError, match='no config.json'):
        convert_llava_v1(str(tmp_path), str(tmp_path / 'out'),
                         str(original['clip_dir']))
    with pytest.raises(FileNotFoundError, match='clip-vit-large-patch14'):
        convert_llava_v1(str(original['src']), str(tmp_path / 'out'),
                         str(tmp_path / 'no_clip'))
    src = _variant(original, tmp_path)
    (src / 'pytorch_model-00002-of-00002.bin').unlink()
    with pytest.raises(ConversionError,
                       match='pytorch_model-00002-of-00002.bin.*shard'):
        convert_llava_v1(str(src), str(tmp_path / 'out'),
                         str(original['clip_dir']))
