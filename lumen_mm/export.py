"""Export a trained Lumen as a standalone Hugging Face LLaVA plus our weights.

Training leaves a config (whose LMM comes from pretrained files, with LoRA on
top) and a trainable-only checkpoint. :func:`export_lumen` loads both, merges
LoRA and the trained token rows into the language model (peft's
``merge_and_unload``) and writes::

    OUT/llava/            LlavaForConditionalGeneration + tokenizer (with
                          Lumen's special tokens), loadable by transformers
    OUT/lumen_heads.pth   the rest of Lumen (aligner, heads), an mmengine
                          checkpoint marked trainable-only
    OUT/config.py         the config, pointing at OUT/llava without LoRA and
                          loading OUT/lumen_heads.pth

so that ``tools/test.py OUT/config.py OUT/lumen_heads.pth`` evaluates the
exported model, and the LMM can be shared on its own.
"""
import copy
import os
import os.path as osp
from typing import Union

import torch
from mmengine.config import Config

from lumen_mm.engine.checkpoint import (TRAINABLE_ONLY,
                                        load_trainable_checkpoint)

HEADS_FILE = 'lumen_heads.pth'
LLAVA_DIR = 'llava'


def build_model(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in mmdet's scope, with lumen_mm registered."""
    import lumen_mm  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model)


def export_lumen(config: Union[str, Config], checkpoint: str,
                 out_dir: str) -> Config:
    """Write the standalone model of ``config`` + ``checkpoint`` to
    ``out_dir``; returns the config of the exported model."""
    cfg = (Config.fromfile(config)
           if isinstance(config, str) else copy.deepcopy(config))
    model = build_model(cfg)
    load_trainable_checkpoint(model, checkpoint)
    model.eval()

    lmm = model.backbone
    llava = lmm.llava
    if hasattr(llava, 'merge_and_unload'):  # LoRA-wrapped (peft)
        llava = llava.merge_and_unload()
    llava_dir = osp.join(out_dir, LLAVA_DIR)
    os.makedirs(llava_dir, exist_ok=True)
    llava.save_pretrained(llava_dir)
    lmm.tokenizer.save_pretrained(llava_dir)

    heads = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if not k.startswith('backbone.')}
    heads_file = osp.join(out_dir, HEADS_FILE)
    torch.save(dict(state_dict=heads, meta={TRAINABLE_ONLY: True}),
               heads_file)

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
