"""Trainable-only checkpoints and export, on a tiny LoRA Lumen whose LLaVA
comes from a Hugging Face directory written here (as the paper's does): the
export loads back into plain transformers and peft with the same outputs."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import pseudo_collate

from lumen_mm.engine import filter_trainable, load_trainable_checkpoint


@pytest.fixture(scope='module')
def base_llava(shapes_root, tmp_path_factory):
    """A tiny pretrained LLaVA directory, the frozen base of the LoRA run:
    like a released LLaVA, its tokenizer and embeddings hold ``<image>``
    but not Lumen's tokens."""
    from conftest import SHAPES_CONFIG, tiny_config
    from transformers import AutoTokenizer

    from lumen_mm.models import LlavaLMM
    cfg = tiny_config(SHAPES_CONFIG, shapes_root,
                      tmp_path_factory.mktemp('unused'))
    backbone = dict(cfg.model.backbone)
    backbone.pop('type')
    torch.manual_seed(0)
    lmm = LlavaLMM(**backbone)
    tokenizer = AutoTokenizer.from_pretrained(backbone['tokenizer'])
    lmm.hf_model.resize_token_embeddings(len(tokenizer))
    # a base released for this LMM names the CLIP layer it reads
    lmm.hf_model.config.vision_feature_layer = lmm.vision_feature_layer
    out = tmp_path_factory.mktemp('base_llava')
    lmm.hf_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture
def lora_cfg(tiny_cfg, base_llava):
    """The tiny Shapes config on the pretrained base, with LoRA, trained 2
    iterations, saving trainable-only checkpoints."""
    cfg = tiny_cfg
    cfg.model.backbone.update(
        pretrained=base_llava, tokenizer=None, freeze_vision=True,
        lora=dict(r=4, lora_alpha=8))
    cfg.custom_hooks = [dict(type='TrainableCheckpointHook')]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=100)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    return cfg


def _runner(cfg):
    from lumen_mm.cli import build_runner
    return build_runner(copy.deepcopy(cfg))


def _state(model):
    model = getattr(model, 'module', model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_trainable_only_checkpoint_loads_back_and_resumes(lora_cfg):
    runner = _runner(lora_cfg)
    runner.train()
    trained = _state(runner.model)
    ckpt_file = f'{lora_cfg.work_dir}/iter_2.pth'
    ckpt = torch.load(ckpt_file, weights_only=False)
    keys = set(ckpt['state_dict'])
    assert ckpt['meta']['trainable_only']
    assert any('lora_A' in k for k in keys)
    assert any('trainable_tokens' in k for k in keys)
    assert any(k.startswith('neck.') for k in keys)
    assert not any('vision_tower' in k or 'base_layer' in k for k in keys)
    assert len(keys) < len(trained) / 2
    # every trainable parameter is there, and nothing frozen
    params = dict(runner.model.named_parameters())
    assert {k for k in keys if k in params} == {
        k for k, p in params.items() if p.requires_grad}

    # a fresh model (base from its pretrained files) gets the trained state
    fresh = _runner(dict(lora_cfg, load_from=ckpt_file))
    fresh.load_or_resume()
    loaded = _state(fresh.model)
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)

    # and training resumes from it, optimizer state included
    cfg = copy.deepcopy(lora_cfg)
    cfg.train_cfg.max_iters = 3
    cfg.resume = True
    cfg.load_from = ckpt_file
    resumed = _runner(cfg)
    resumed.train()
    assert resumed.iter == 3
    state = resumed.optim_wrapper.optimizer.state
    assert max(int(s['step']) for s in state.values()) == 3


def _outputs(model, batch):
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, training=False)
        return model._forward(**data)


def _trained_checkpoint(lora_cfg, tmp_path):
    """The LoRA Lumen with trained-looking weights (LoRA and the new token
    rows away from zero), and its trainable-only checkpoint."""
    from lumen_mm.export import build_model
    torch.manual_seed(1)
    model = build_model(lora_cfg)
    for name, p in model.named_parameters():
        trained = 'lora_B' in name or 'trainable_tokens' in name
        if p.requires_grad and trained:
            p.data.normal_(0, 0.5)
    ckpt = tmp_path / 'trained.pth'
    torch.save(dict(state_dict=filter_trainable(model, model.state_dict()),
                    meta=dict(trainable_only=True)), ckpt)
    return model.eval(), ckpt


def _test_batch(cfg, indices=(0, -1)):
    from mmdet.registry import DATASETS
    dataset = DATASETS.build(copy.deepcopy(cfg.test_dataloader.dataset))
    return pseudo_collate([dataset[i % len(dataset)] for i in indices])


def test_export_merges_lora_and_keeps_the_outputs(lora_cfg, tmp_path):
    from mmengine.config import Config

    from lumen_mm.export import build_model, export_lumen
    model, ckpt = _trained_checkpoint(lora_cfg, tmp_path)
    batch = _test_batch(lora_cfg)
    before = _outputs(model, batch)

    out = tmp_path / 'export'
    export_lumen(lora_cfg, str(ckpt), str(out))
    assert (out / 'llava' / 'config.json').is_file()
    assert not (out / 'llava' / 'adapter_config.json').exists()
    exported_cfg = Config.fromfile(str(out / 'config.py'))
    assert exported_cfg.model.backbone.lora is None
    exported = build_model(exported_cfg)
    assert not any('lora' in k for k in exported.state_dict())
    load_trainable_checkpoint(exported, exported_cfg.load_from)
    after = _outputs(exported, batch)
    for key in before:
        assert torch.allclose(before[key], after[key], atol=1e-4), key

    # the merge mattered: the exported LLM differs from the base
    base_cfg = copy.deepcopy(lora_cfg)
    base_cfg.model.backbone.lora = None
    base = build_model(base_cfg)
    name = 'model.language_model.layers.0.self_attn.q_proj.weight'
    assert not torch.allclose(
        base.backbone.hf_model.state_dict()[name],
        exported.backbone.hf_model.state_dict()[name])


def test_export_loads_back_with_transformers_and_peft(lora_cfg, base_llava,
                                                      tmp_path):
    """The processor, the merged LLaVA, the peft adapter and the heads, each
    loaded with plain transformers / peft / safetensors, give Lumen's
    outputs."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import (AutoProcessor, AutoTokenizer,
                              LlavaForConditionalGeneration)

    from lumen_mm.export import export_lumen
    model, ckpt = _trained_checkpoint(lora_cfg, tmp_path)
    out = tmp_path / 'export'
    export_lumen(lora_cfg, str(ckpt), str(out))

    # Lumen: the [LOC] state of a detection prompt on a test image
    lmm = model.backbone
    batch = _test_batch(lora_cfg, indices=(0, ))
    image = batch['inputs'][0]  # uint8 BGR, square: no letterbox padding
    prompt = lmm.conversation.location_prompt('det', 'circle', False)
    with torch.no_grad():
        inputs = model.data_preprocessor(batch, False)['inputs']
        embeds, _ = lmm.encode_images(inputs)
        loc = lmm.forward_prompts(embeds, [0], [prompt],
                                  with_lm_loss=False).loc_states[0]
        logits = lmm.hf_model.lm_head(loc)
        # the LMM's own input: the image resized to its input size inside
        pixels = F.interpolate(inputs, size=(lmm.image_size, ) * 2,
                               mode='bilinear', align_corners=False,
                               antialias=True)

    # the processor: Lumen's prompt ids, and its pixels up to the resize
    processor = AutoProcessor.from_pretrained(out / 'llava')
    messages = [
        dict(role='user', content=[
            dict(type='image'),
            dict(type='text', text='Please find the location of circle. '
                 'Respond with boxes.')]),
        dict(role='assistant', content='Sure, the location is[LOC]'),
    ]
    text = processor.apply_chat_template(messages,
                                         continue_final_message=True)
    encoded = processor(text=text, images=[image.flip(0)],
                        return_tensors='pt')
    assert encoded['input_ids'][0].tolist() == prompt.input_ids
    # PIL's bilinear on uint8 vs torch's antialiased bilinear on floats
    # (measured: at most 0.015, 1/18 of a grey level over CLIP's std)
    assert (encoded['pixel_values'] - pixels).abs().max() < 0.03

    def last_state(llava, pixel_values):
        with torch.no_grad():
            result = llava(input_ids=encoded['input_ids'],
                           pixel_values=pixel_values,
                           output_hidden_states=True)
        return result.hidden_states[-1][0, -1], result.logits[0, -1]

    merged = LlavaForConditionalGeneration.from_pretrained(
        out / 'llava').eval()
    state, merged_logits = last_state(merged, pixels)
    assert torch.allclose(state, loc, atol=1e-4)
    assert torch.allclose(merged_logits, logits, atol=1e-4)
    # end to end with the processor's pixels: within the resize difference
    state, _ = last_state(merged, encoded['pixel_values'])
    assert torch.allclose(state, loc, atol=1e-3 * loc.abs().max())

    # peft: the adapter on the base, resized to the adapter's tokenizer
    tokenizer = AutoTokenizer.from_pretrained(out / 'adapter')
    assert tokenizer.get_vocab() == lmm.tokenizer.get_vocab()
    base = LlavaForConditionalGeneration.from_pretrained(base_llava)
    assert base.get_input_embeddings().num_embeddings < len(tokenizer)
    base.resize_token_embeddings(len(tokenizer))
    adapted = PeftModel.from_pretrained(base, str(out / 'adapter')).eval()
    state, adapted_logits = last_state(adapted, pixels)
    assert torch.allclose(state, loc, atol=1e-4)
    # the new tokens' lm_head rows: a fresh mean resize, as in Lumen
    assert torch.allclose(adapted_logits, logits, atol=1e-4)

    # aligner and heads
    heads = load_file(out / 'lumen_heads.safetensors')
    own = model.state_dict()
    assert heads and all(not k.startswith('backbone.') for k in heads)
    assert all(torch.equal(v, own[k]) for k, v in heads.items())
    assert {k for k in own if not k.startswith('backbone.')} == set(heads)


def test_chat_template_writes_lumen_conversations(base_llava, tiny_cfg):
    """Multi-turn conversations and a system message, rendered by the
    exported chat template and tokenised by the processor, are the ids of
    Lumen's ConversationTemplate."""
    from lumen_mm.export import build_processor
    from lumen_mm.models import LlavaLMM
    from lumen_mm.models.backbones.llava_lmm import ConversationTemplate
    backbone = dict(tiny_cfg.model.backbone, pretrained=base_llava)
    backbone.pop('type')
    lmm = LlavaLMM(**backbone)
    processor = build_processor(lmm, tiny_cfg.model.data_preprocessor)
    turns = [('What is left of the circle?', 'A red square.'),
             ('And right of it?', 'Nothing.')]
    messages = []
    for i, (question, answer) in enumerate(turns):
        content = [dict(type='text', text=question)]
        messages += [
            dict(role='user',
                 content=[dict(type='image')] * (i == 0) + content),
            dict(role='assistant', content=answer)
        ]
    image = [torch.zeros(3, lmm.image_size, lmm.image_size, dtype=torch.uint8)]

    def ids(messages, **kwargs):
        text = processor.apply_chat_template(messages, **kwargs)
        return processor(text=text, images=image)['input_ids'][0]

    assert ids(messages) == lmm.conversation.chat_prompt(turns).input_ids
    assert ids(messages[:1], add_generation_prompt=True) == \
        lmm.conversation.instruction_prompt(turns[0][0]).input_ids
    brief = ConversationTemplate(lmm.tokenizer,
                                 lmm.conversation.num_image_tokens,
                                 system='Answer briefly.')
    assert ids([dict(role='system', content='Answer briefly.')] +
               messages) == brief.chat_prompt(turns).input_ids
