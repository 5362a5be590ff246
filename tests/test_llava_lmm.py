"""The LMM wrapper: hi-res features, [LOC] states, prefix sharing, LoRA."""
import pytest
import torch

from lumen_mm.models import LlavaLMM

TINY = dict(
    vision_config=dict(hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=2,
                       image_size=32, patch_size=8),
    text_config=dict(hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2),
    image_size=32, aligner_image_size=64, vision_feature_layer=-1,
    aligner_feature_layer=-1, freeze_vision=False)


@pytest.fixture
def lmm(tokenizer_dir):
    torch.manual_seed(0)
    return LlavaLMM(tokenizer=tokenizer_dir, **TINY)


def test_high_resolution_patch_features(lmm):
    embeds, feats = lmm.encode_images(torch.randn(2, 3, 64, 64))
    assert embeds.shape == (2, 16, 32)  # 32 px / 8: the LMM's 4 x 4 tokens
    assert feats.shape == (2, 32, 8, 8)  # 64 px / 8, interpolated positions
    with pytest.raises(ValueError, match='64x64'):
        lmm.encode_images(torch.randn(1, 3, 32, 32))


def test_input_size_must_be_a_multiple_of_the_patch(tokenizer_dir):
    with pytest.raises(ValueError, match='multiples of the patch size'):
        LlavaLMM(tokenizer=tokenizer_dir, **dict(TINY, aligner_image_size=60))


def test_built_from_scratch_adds_the_image_marks(tokenizer_dir):
    """LLaVA-1.1's <im_start> / <im_end>, absent from another tokenizer, are
    new tokens of a model built without its checkpoint."""
    lmm = LlavaLMM(tokenizer=tokenizer_dir, **TINY, conversation=dict(
        image_start='<im_start>', image_end='<im_end>'))
    ids = lmm.conversation.image_ids()
    assert len(ids) == 16 + 2
    assert lmm.tokenizer.convert_ids_to_tokens([ids[0], ids[-1]]) == [
        '<im_start>', '<im_end>']
    assert max(ids) < lmm.llava.get_input_embeddings().num_embeddings


def test_shared_prefix_equals_full_prompts(lmm):
    conv = lmm.conversation
    prompts = [conv.location_prompt('det', d)
               for d in ['circle', 'the left-most red star', 'square']]
    embeds, _ = lmm.encode_images(torch.randn(2, 3, 64, 64))
    shared = lmm.forward_prompts(embeds, [0, 1, 1], prompts)
    lmm.prompt_mode = 'batched'
    full = lmm.forward_prompts(embeds, [0, 1, 1], prompts)
    assert torch.allclose(shared.loc_states, full.loc_states, atol=1e-5)
    assert torch.allclose(shared.loss_lm, full.loss_lm, atol=1e-5)
    assert (shared.loc_states.abs().sum(1) > 0).all()  # each has a [LOC]
    # the [LOC] state depends on the description
    assert not torch.allclose(shared.loc_states[1], shared.loc_states[2])


def test_shared_mode_packs_only_images_with_several_prompts(
        lmm, monkeypatch):
    """Nothing to share when each image has one prompt: full prompts run
    (no packed 4D mask), with the same result."""
    conv = lmm.conversation
    prompts = [conv.location_prompt('det', d) for d in ['circle', 'square']]
    embeds, _ = lmm.encode_images(torch.randn(2, 3, 64, 64))
    packed = []
    run_shared = lmm._run_shared
    monkeypatch.setattr(lmm, '_run_shared',
                        lambda *a: packed.append(1) or run_shared(*a))
    lmm.forward_prompts(embeds, [0, 0], prompts)
    assert packed == [1]
    shared = lmm.forward_prompts(embeds, [0, 1], prompts)
    assert packed == [1]
    lmm.prompt_mode = 'per_prompt'
    naive = lmm.forward_prompts(embeds, [0, 1], prompts)
    assert torch.allclose(shared.loc_states, naive.loc_states,
                          atol=1e-5)


def test_lora_only_on_the_language_model(tokenizer_dir):
    lmm = LlavaLMM(tokenizer=tokenizer_dir,
                   lora=dict(r=4, lora_alpha=8),
                   **dict(TINY, freeze_vision=True))
    trainable = [n for n, p in lmm.named_parameters() if p.requires_grad]
    assert trainable and all('language_model' in n for n in trainable)
    assert any('lora_A' in n and 'q_proj' in n for n in trainable)
    assert any('trainable_tokens' in n for n in trainable)
    assert not any('vision_tower' in n and 'lora' in n
                   for n, _ in lmm.named_parameters())


def test_loads_a_local_hugging_face_checkpoint(lmm, tmp_path):
    """The real loading path, on a tiny checkpoint written here."""
    lmm.hf_model.save_pretrained(tmp_path / 'llava')
    lmm.tokenizer.save_pretrained(tmp_path / 'llava')
    loaded = LlavaLMM(pretrained=str(tmp_path / 'llava'),
                      **{k: v for k, v in TINY.items()
                         if k not in ('vision_config', 'text_config')})
    assert any(tmp_path.joinpath('llava').glob('*.safetensors'))
    images = torch.randn(1, 3, 64, 64)
    prompt = [lmm.conversation.location_prompt('det', 'circle')]
    lmm.eval(), loaded.eval()
    with torch.no_grad():
        a = lmm.forward_prompts(lmm.encode_images(images)[0], [0], prompt)
        b = loaded.forward_prompts(loaded.encode_images(images)[0], [0],
                                   prompt)
    assert torch.allclose(a.loc_states, b.loc_states, atol=1e-5)


def test_missing_checkpoint_names_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='config.json'):
        LlavaLMM(pretrained=str(tmp_path / 'nowhere'), **{
            k: v for k, v in TINY.items()
            if k not in ('vision_config', 'text_config')})


def test_packed_suffixes_are_chunked_with_the_same_states(lmm):
    """A cap on the tokens packed behind one prefix splits the prompts into
    several LLM calls (memory linear in the number of prompts) and changes
    no [LOC] state or LM loss."""
    conv = lmm.conversation
    names = ['circle', 'the left-most red star', 'square', 'blue cross',
             'small green triangle']
    prompts = [conv.location_prompt('det', d) for d in names]
    embeds, _ = lmm.encode_images(torch.randn(2, 3, 64, 64))
    image = [0, 0, 1, 0, 1]
    whole = lmm.forward_prompts(embeds, image, prompts)
    calls = []
    run_shared = lmm._run_shared
    lmm._run_shared = lambda *a: calls.append(len(a[2])) or run_shared(*a)
    lmm.max_packed_tokens = 2 * max(
        len(p.input_ids) - p.prefix_len for p in prompts)
    try:
        chunked = lmm.forward_prompts(embeds, image, prompts)
    finally:
        del lmm._run_shared
        lmm.max_packed_tokens = 4096
    assert len(calls) > 1 and sum(calls) == len(prompts)
    assert torch.allclose(whole.loc_states, chunked.loc_states, atol=1e-5)
    assert torch.allclose(whole.loss_lm, chunked.loss_lm, atol=1e-5)
    assert whole.lm_tokens == chunked.lm_tokens


def test_text_limits(lmm):
    """Text longer than the LLM's positions, or not valid Unicode, is a
    clear error rather than an allocation failure or a tokenizer crash."""
    conv = lmm.conversation
    with pytest.raises(ValueError, match='reads at most'):
        conv.location_prompt('det', 'star ' * conv.max_length)
    with pytest.raises(ValueError, match='lone surrogate'):
        conv.location_prompt('det', 'star\ud800')
