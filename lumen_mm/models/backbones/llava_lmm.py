"""The large multimodal model of Lumen: LLaVA from transformers (+ LoRA).

Stage 1 needs three things from the LMM (Sec. 3.1.2):

* the last hidden state at ``[LOC]`` for every prompt,
* the language-modelling loss on the assistant's answer,
* high-resolution patch features ``F = E_v(I_hr)`` (Eq. 1) from the same CLIP
  tower, with its position embeddings interpolated to the larger input.

One batch holds several images and, per image, several prompts (every class of
a detection image, say). The vision tower runs once per image at each
resolution; the prompts index into those features.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor
from transformers import (AutoTokenizer, CLIPVisionConfig, LlamaConfig,
                          LlavaConfig, LlavaForConditionalGeneration)

from lumen_mm.datasets.conversation import (IGNORE_INDEX, IMAGE_TOKEN,
                                            LUMEN_SPECIAL_TOKENS,
                                            ConversationTemplate,
                                            TokenizedPrompt)

HF_CHECKPOINT_FILES = ('config.json', )


def check_hf_dir(path: str) -> None:
    """Fail early, naming what a Hugging Face LLaVA directory must hold."""
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'LLaVA checkpoint directory {path!r} does not exist. Point '
            '`pretrained` at a local Hugging Face LLaVA directory (config.json, '
            'model*.safetensors, tokenizer files), e.g. one saved by '
            '`LlavaForConditionalGeneration.save_pretrained` (llava-hf '
            'checkpoints have this layout).')
    missing = [f for f in HF_CHECKPOINT_FILES
               if not osp.isfile(osp.join(path, f))]
    if missing:
        raise FileNotFoundError(
            f'LLaVA checkpoint directory {path!r} lacks {missing}; expected '
            'config.json, model*.safetensors and tokenizer files.')


@MODELS.register_module()
class LlavaLMM(BaseModule):
    """LLaVA as Lumen's LMM.

    Args:
        tokenizer: directory of a Hugging Face tokenizer (defaults to
            ``pretrained``).
        pretrained: local Hugging Face LLaVA directory; ``None`` builds a
            randomly initialised model from ``vision_config``/``text_config``.
        vision_config / text_config: kwargs of ``CLIPVisionConfig`` and
            ``LlamaConfig`` for a model built from scratch.
        image_size: input size of the LMM's own image tokens (224 for
            LLaVA-1.1); the images arrive at ``aligner_image_size`` and are
            resized down for the LMM.
        aligner_image_size: input size of the high-resolution features.
        vision_feature_layer: CLIP layer for the LMM's image tokens.
        aligner_feature_layer: CLIP layer(s) for the aligner's features; a
            list concatenates several layers' features.
        freeze_vision: keep CLIP (and the projector) frozen, as the paper.
        lora: kwargs of ``peft.LoraConfig`` for the language model; ``None``
            trains the whole language model (tiny models) or, with
            ``freeze_language_model=True``, none of it.
        conversation: kwargs of :class:`ConversationTemplate` (system...).
        gradient_checkpointing: trade compute for memory in the LLM.
        share_prefix: run the prompts' common prefix once per image and the
            suffixes on its KV cache; ``False`` runs every prompt in full
            (the reference path).
    """

    def __init__(self,
                 tokenizer: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 vision_config: Optional[dict] = None,
                 text_config: Optional[dict] = None,
                 image_size: int = 224,
                 aligner_image_size: int = 448,
                 vision_feature_layer: int = -2,
                 aligner_feature_layer: Union[int, Sequence[int]] = -2,
                 projector_hidden_act: str = 'gelu',
                 freeze_vision: bool = True,
                 freeze_language_model: bool = False,
                 lora: Optional[dict] = None,
                 conversation: Optional[dict] = None,
                 gradient_checkpointing: bool = False,
                 share_prefix: bool = True,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pretrained is not None:
            check_hf_dir(pretrained)
        tokenizer = tokenizer or pretrained
        if tokenizer is None:
            raise ValueError('LlavaLMM needs `tokenizer` (a directory) or '
                             '`pretrained`.')
        if not osp.isdir(tokenizer):
            raise FileNotFoundError(
                f'Tokenizer directory {tokenizer!r} does not exist. For '
                'Lumen-Shapes run `python tools/make_shapes.py --out '
                'data/lumen_shapes` (it writes data/lumen_shapes/tokenizer); '
                'otherwise point `tokenizer` or `pretrained` at a local '
                'Hugging Face directory.')
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer.add_tokens([IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS],
                                  special_tokens=True)
        if pretrained is not None:
            llava = LlavaForConditionalGeneration.from_pretrained(
                pretrained, use_safetensors=True)
        else:
            text_config = dict(
                dict(
                    vocab_size=len(self.tokenizer),
                    bos_token_id=self.tokenizer.bos_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    pad_token_id=self.tokenizer.pad_token_id),
                **(text_config or {}))
            llava = LlavaForConditionalGeneration(
                LlavaConfig(
                    vision_config=CLIPVisionConfig(**(vision_config or {})),
                    text_config=LlamaConfig(**text_config),
                    projector_hidden_act=projector_hidden_act))
        if llava.get_input_embeddings().num_embeddings < len(self.tokenizer):
            llava.resize_token_embeddings(len(self.tokenizer))
        llava.config.image_token_id = self.tokenizer.convert_tokens_to_ids(
            IMAGE_TOKEN)

        vcfg = llava.config.vision_config
        if image_size % vcfg.patch_size or aligner_image_size % vcfg.patch_size:
            raise ValueError(
                f'Input sizes {image_size} (LMM) and {aligner_image_size} '
                f'(aligner) must be multiples of the patch size '
                f'{vcfg.patch_size}.')
        self.image_size = image_size
        self.aligner_image_size = aligner_image_size
        self.vision_feature_layer = vision_feature_layer
        self.aligner_feature_layer = aligner_feature_layer
        self.patch_size = vcfg.patch_size
        num_layers = 1 if isinstance(aligner_feature_layer,
                                     int) else len(aligner_feature_layer)
        self.vision_dim = vcfg.hidden_size * num_layers
        self.text_dim = llava.config.text_config.hidden_size
        self.share_prefix = share_prefix
        self.conversation = ConversationTemplate(
            self.tokenizer, (image_size // vcfg.patch_size)**2,
            **(conversation or {}))

        if freeze_vision:
            for module in (llava.model.vision_tower,
                           llava.model.multi_modal_projector):
                module.requires_grad_(False)
        if freeze_language_model:
            llava.model.language_model.requires_grad_(False)
            llava.lm_head.requires_grad_(False)
        if gradient_checkpointing:
            llava.gradient_checkpointing_enable()
        self.llava = llava
        if lora is not None:
            self.llava = self._add_lora(llava, lora)

    def init_weights(self) -> None:
        """Nothing to do: the weights come from the checkpoint, or from
        Hugging Face's own initialisation when built from a config."""

    def _add_lora(self, llava, lora: dict):
        """LoRA on the language model only; new token rows train too."""
        from peft import LoraConfig, get_peft_model
        lora = dict(lora)
        # A plain list of names would also hit CLIP's q_proj/v_proj.
        targets = lora.pop('target_modules', ['q_proj', 'v_proj'])
        lora.setdefault(
            'target_modules',
            r'.*language_model.*\.(' + '|'.join(targets) + r')$')
        new_ids = self.tokenizer.convert_tokens_to_ids(LUMEN_SPECIAL_TOKENS)
        lora.setdefault('trainable_token_indices',
                        {'embed_tokens': list(new_ids)})
        return get_peft_model(llava, LoraConfig(**lora))

    # -- modules, whether LoRA-wrapped or not -------------------------------
    @property
    def hf_model(self) -> LlavaForConditionalGeneration:
        get_base = getattr(self.llava, 'get_base_model', None)
        return get_base() if get_base is not None else self.llava

    @property
    def loc_token_id(self) -> int:
        return self.conversation.token_id('[LOC]')

    # -- vision -------------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """CLIP once per image and resolution.

        Args:
            images: (B, 3, S, S) normalised images at ``aligner_image_size``.

        Returns:
            image_embeds: (B, n, D_text) projected tokens for the LLM.
            patch_feats: (B, D_vision, h, w) high-resolution features (Eq. 1).
        """
        model = self.hf_model.model
        if images.shape[-1] != self.aligner_image_size or images.shape[
                -2] != self.aligner_image_size:
            raise ValueError(
                f'Expected images of {self.aligner_image_size}x'
                f'{self.aligner_image_size}, got {tuple(images.shape[-2:])}; '
                'resize and pad them in the data pipeline.')
        hr = model.vision_tower(
            images, output_hidden_states=True, interpolate_pos_encoding=True)
        layers = self.aligner_feature_layer
        layers = [layers] if isinstance(layers, int) else layers
        patches = torch.cat([hr.hidden_states[i][:, 1:] for i in layers], -1)
        side = self.aligner_image_size // self.patch_size
        patch_feats = patches.transpose(1, 2).reshape(
            images.shape[0], -1, side, side)

        if self.image_size == self.aligner_image_size:
            low = hr
        else:
            low_images = F.interpolate(
                images, size=(self.image_size, self.image_size),
                mode='bilinear', align_corners=False, antialias=True)
            low = model.vision_tower(low_images, output_hidden_states=True)
        tokens = low.hidden_states[self.vision_feature_layer][:, 1:]
        image_embeds = model.multi_modal_projector(tokens)
        return image_embeds, patch_feats

    # -- language -----------------------------------------------------------
    def _pad(self, rows: Sequence[Sequence[int]], value: int,
             device) -> Tensor:
        out = torch.full((len(rows), max(len(r) for r in rows)), value,
                         dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        return out.to(device)

    def _embed(self, ids: Tensor, image_embeds: Tensor) -> Tensor:
        """Token embeddings with the image tokens replaced by ``image_embeds``
        (one row of image features per row of ``ids``)."""
        model = self.hf_model
        embeds = model.get_input_embeddings()(ids)
        image_mask = (ids == model.config.image_token_id)[..., None]
        return embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))

    def _run_full(self, image_embeds: Tensor, prompt_image: Tensor,
                  prompts: Sequence[TokenizedPrompt]):
        """Reference path: every prompt is a full sequence."""
        device = image_embeds.device
        ids = self._pad([p.input_ids for p in prompts], self.pad_id, device)
        labels = self._pad([p.labels for p in prompts], IGNORE_INDEX, device)
        mask = self._pad([[1] * len(p.input_ids) for p in prompts], 0, device)
        hidden = self.hf_model.model.language_model(
            inputs_embeds=self._embed(ids, image_embeds[prompt_image]),
            attention_mask=mask).last_hidden_state
        return hidden, ids, labels

    def _run_shared(self, image_embeds: Tensor, prompt_image: Tensor,
                    prompts: Sequence[TokenizedPrompt]):
        """The shared prefix (system, image, instruction start) runs once per
        image; every prompt's suffix then runs on a copy of its image's KV
        cache. Same result as :meth:`_run_full`, far fewer LLM tokens."""
        device = image_embeds.device
        n = prompts[0].prefix_len
        language_model = self.hf_model.model.language_model
        prefix = torch.as_tensor(
            prompts[0].input_ids[:n], device=device).expand(
                len(image_embeds), -1)
        cache = language_model(
            inputs_embeds=self._embed(prefix, image_embeds),
            use_cache=True).cache
        cache.reorder_cache(prompt_image)  # one cache row per prompt
        ids = self._pad([p.input_ids[n:] for p in prompts], self.pad_id,
                        device)
        labels = self._pad([p.labels[n:] for p in prompts], IGNORE_INDEX,
                           device)
        mask = self._pad([[1] * (len(p.input_ids) - n) for p in prompts], 0,
                         device)
        hidden = language_model(
            inputs_embeds=self.hf_model.get_input_embeddings()(ids),
            attention_mask=torch.cat([mask.new_ones(len(ids), n), mask], 1),
            position_ids=n + torch.arange(ids.shape[1], device=device)[None],
            cache=cache,
            use_cache=True).last_hidden_state
        return hidden, ids, labels

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    def forward_prompts(self, image_embeds: Tensor,
                        prompt_image: Sequence[int],
                        prompts: Sequence[TokenizedPrompt],
                        with_lm_loss: bool = True) -> Dict[str, Tensor]:
        """Run the LLM on every prompt of the batch.

        Args:
            image_embeds: (B, n, D) from :meth:`encode_images`.
            prompt_image: image index of every prompt.
            prompts: tokenised conversations.

        Returns:
            ``loc_states`` (P, D): hidden state at ``[LOC]`` (zeros for prompts
            without one), ``has_loc`` (P,) and, when asked, ``loss_lm``: the
            next-token CE over the answers' tokens.
        """
        prompt_image = torch.as_tensor(prompt_image, device=image_embeds.device)
        prefixes = {tuple(p.input_ids[:p.prefix_len]) for p in prompts}
        if self.share_prefix and len(prefixes) == 1:
            hidden, ids, labels = self._run_shared(image_embeds, prompt_image,
                                                   prompts)
        else:
            hidden, ids, labels = self._run_full(image_embeds, prompt_image,
                                                 prompts)
        loc = ids == self.loc_token_id
        has_loc = loc.any(1)
        # User text never holds a [LOC] id, so the first one is the answer's.
        loc_pos = loc.float().argmax(1)
        loc_states = hidden[torch.arange(len(ids)), loc_pos] * has_loc[:, None]
        out = dict(loc_states=loc_states, has_loc=has_loc)
        if with_lm_loss:
            shift_labels = labels[:, 1:]
            keep = shift_labels != IGNORE_INDEX
            # logits only where there is a label: the vocabulary is large
            logits = self.hf_model.lm_head(hidden[:, :-1][keep])
            out['loss_lm'] = F.cross_entropy(
                logits.float(),
                shift_labels[keep]) if keep.any() else hidden.sum() * 0
        return out
