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
import os
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from transformers import (AutoTokenizer, CLIPVisionConfig, LlamaConfig,
                          LlavaConfig, LlavaForConditionalGeneration)

from .conversation import (IGNORE_INDEX, IMAGE_TOKEN, LOC_TOKEN,
                           LUMEN_SPECIAL_TOKENS, ConversationTemplate,
                           TokenizedPrompt)
from .tokenizer import tokenizer_exists

HF_CHECKPOINT_FILES = ('config.json', )
# How forward_prompts runs the prompts through the LLM (see LlavaLMM).
PROMPT_MODES = ('shared', 'batched', 'per_prompt')


@dataclass
class PromptStates:
    """What the LLM gives Stage 1 for a batch of prompts.

    Attributes:
        loc_states: (P, D) hidden state at ``[LOC]`` per prompt (zeros for a
            prompt without one), in the order of the prompts.
        lm_loss_sum: summed next-token cross-entropy over the answers'
            tokens (None when not asked for).
        lm_tokens: how many tokens that sum is over.
    """
    loc_states: Tensor
    lm_loss_sum: Optional[Tensor] = None
    lm_tokens: int = 0

    @property
    def loss_lm(self) -> Tensor:
        """The LM loss of Eq. 5: the mean over every answer token."""
        return self.lm_loss_sum / max(self.lm_tokens, 1)


def prefix_groups(prompts: Sequence[TokenizedPrompt]) -> List[List[int]]:
    """Indices of the prompts that share a token prefix, one list per prefix
    in order of first appearance: :meth:`LlavaLMM.forward_prompts` runs the
    LLM once per list (location prompts share "...Please find the location
    of", VQA conversations less)."""
    groups = defaultdict(list)
    for i, p in enumerate(prompts):
        groups[tuple(p.input_ids[:p.prefix_len])].append(i)
    return list(groups.values())


def check_hf_dir(path: str, need_tokenizer: bool = True) -> None:
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
    files = os.listdir(path)
    # weights load through safetensors only: a pickle could run code
    if not any(f.endswith('.safetensors') for f in files):
        pickles = [f for f in files if f.endswith(('.bin', '.pt', '.pth'))]
        missing.append('model*.safetensors' + (
            f' (pickled weights {pickles} are not loaded: convert them, e.g. '
            'load with transformers and `save_pretrained(dir)`, which writes '
            'safetensors)' if pickles else ''))
    if need_tokenizer and not tokenizer_exists(path):
        missing.append('tokenizer.json or tokenizer.model (or set '
                       '`tokenizer` to a tokenizer directory)')
    if missing:
        raise FileNotFoundError(
            f'LLaVA checkpoint directory {path!r} is incomplete: it lacks '
            f'{"; ".join(missing)}. A Hugging Face LLaVA directory holds '
            'config.json, model*.safetensors and the tokenizer files, as '
            '`save_pretrained` of the model and its tokenizer writes them.')


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
            trains the whole language model (tiny models).
        conversation: kwargs of :class:`ConversationTemplate` (system...).
        gradient_checkpointing: trade compute for memory in the LLM.
        prompt_mode: how the prompts run through the LLM. ``'shared'``: the
            prompts' common prefix once per image, their suffixes packed on
            its KV cache (batches with one prompt per image, or no common
            prefix, run as ``'batched'``); ``'batched'``: one padded batch
            of full prompts;
            ``'per_prompt'``: every prompt alone, a full pass each (the naive
            reference). All three give the same ``[LOC]`` states.
        max_packed_tokens: ``'shared'`` packs at most this many suffix
            tokens behind an image's prefix per LLM call, which bounds the
            packed attention mask (its memory grows with the square).
        attn_implementation: Hugging Face's attention of CLIP and the LLM
            (``'sdpa'``, ``'eager'``...); None: the transformers default.
            Under CPU bfloat16 autocast (:class:`CpuAmpOptimWrapper`)
            ``'eager'`` is the faster: on the AVX-512 CPU of the README,
            torch's bfloat16 SDPA took 1.5-4x as long as its float32 one
            (forward and backward), bfloat16 ``'eager'`` no longer.
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
                 lora: Optional[dict] = None,
                 conversation: Optional[dict] = None,
                 gradient_checkpointing: bool = False,
                 prompt_mode: str = 'shared',
                 max_packed_tokens: int = 4096,
                 attn_implementation: Optional[str] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if prompt_mode not in PROMPT_MODES:
            raise ValueError(f'prompt_mode={prompt_mode!r} is unknown; use '
                             f'one of {PROMPT_MODES}.')
        if pretrained is not None:
            check_hf_dir(pretrained, need_tokenizer=tokenizer is None)
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
        if not tokenizer_exists(tokenizer):
            raise FileNotFoundError(
                f'Tokenizer directory {tokenizer!r} has no tokenizer.json or '
                'tokenizer.model: point `tokenizer` at a directory written by '
                '`tokenizer.save_pretrained` (for Lumen-Shapes, the '
                'tokenizer/ folder that tools/make_shapes.py writes).')
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        base_vocab = len(self.tokenizer)  # before Lumen's tokens
        self.tokenizer.add_tokens([IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS],
                                  special_tokens=True)
        if pretrained is not None:
            llava = LlavaForConditionalGeneration.from_pretrained(
                pretrained, use_safetensors=True)
        else:
            # LLaVA-1.1's <im_start> / <im_end> come with its checkpoint's
            # tokenizer; built from scratch with another, they are new tokens
            marks = [(conversation or {}).get(k)
                     for k in ('image_start', 'image_end')]
            self.tokenizer.add_tokens([m for m in marks if m],
                                      special_tokens=True)
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
        rows = llava.get_input_embeddings().num_embeddings
        if pretrained is not None and base_vocab > rows:
            raise ValueError(
                f'The tokenizer {tokenizer!r} has {base_vocab} tokens but the '
                f'checkpoint {pretrained!r} embeds only {rows}: it is not '
                'the tokenizer this LLaVA was trained with. Use the '
                "checkpoint's own tokenizer (leave `tokenizer` unset).")
        if llava.get_input_embeddings().num_embeddings < len(self.tokenizer):
            llava.resize_token_embeddings(len(self.tokenizer))
        llava.config.image_token_id = self.tokenizer.convert_tokens_to_ids(
            IMAGE_TOKEN)

        vcfg = llava.config.vision_config
        if image_size % vcfg.patch_size or aligner_image_size % vcfg.patch_size:
            raise ValueError(
                f'Input sizes {image_size} (LMM) and {aligner_image_size} '
                f'(aligner) must be multiples of the patch size '
                f'{vcfg.patch_size}: set `image_size` and '
                f'`aligner_image_size` to multiples of it (and the data '
                f'pipeline\'s Resize/Pad to `aligner_image_size`).')
        self.image_size = image_size
        self.aligner_image_size = aligner_image_size
        self.vision_feature_layer = vision_feature_layer
        self.aligner_feature_layer = aligner_feature_layer
        self.patch_size = vcfg.patch_size
        num_layers = 1 if isinstance(aligner_feature_layer,
                                     int) else len(aligner_feature_layer)
        self.vision_dim = vcfg.hidden_size * num_layers
        self.text_dim = llava.config.text_config.hidden_size
        self.prompt_mode = prompt_mode
        self.max_packed_tokens = max_packed_tokens
        self.conversation = ConversationTemplate(
            self.tokenizer, (image_size // vcfg.patch_size)**2,
            **dict(dict(max_length=llava.config.text_config
                        .max_position_embeddings), **(conversation or {})))

        if freeze_vision:
            for module in (llava.model.vision_tower,
                           llava.model.multi_modal_projector):
                module.requires_grad_(False)
        if attn_implementation is not None:
            llava.set_attn_implementation(attn_implementation)
        if gradient_checkpointing:
            llava.gradient_checkpointing_enable()
        self.llava = llava
        if lora is not None:
            self.llava = self._add_lora(llava, lora)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args,
                              **kwargs) -> None:
        """Refuse a checkpoint whose token embedding does not fit the
        tokenizer: mmengine loads non-strictly and would only log the size
        mismatch, leaving the embedding untrained."""
        # the nn.Embedding itself, also inside peft's trainable-tokens wrapper
        embedding = next(
            m for m in self.hf_model.get_input_embeddings().modules()
            if isinstance(m, torch.nn.Embedding)).weight
        name = next((n for n, p in self.named_parameters(
            remove_duplicate=False) if p is embedding), None)
        saved = state_dict.get(prefix + name) if name else None
        if saved is not None and saved.shape[0] != embedding.shape[0]:
            raise ValueError(
                f'The checkpoint\'s token embedding has {saved.shape[0]} '
                f'rows but this model has {embedding.shape[0]} for its '
                f'tokenizer {self.tokenizer.name_or_path!r} '
                f'({len(self.tokenizer)} tokens with Lumen\'s): the '
                'checkpoint was trained with another tokenizer. Point '
                '`tokenizer` (model.backbone.tokenizer) at the one it was '
                'trained with (for Lumen-Shapes, the tokenizer/ folder '
                'written with the training data).')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        return self.conversation.token_id(LOC_TOKEN)

    @property
    def feat_dim(self) -> int:
        """Channels of the aligner's features (:meth:`encode_images`)."""
        return self.vision_dim

    def feat_stride(self, input_size: int) -> float:
        """Input pixels per cell of the aligner's features: one CLIP patch
        (``input_size`` is the side of the image batch; CLIP's position
        embeddings are interpolated to it)."""
        return float(self.patch_size)

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
            # in float32: antialiased resizing has no bfloat16 CPU kernel
            # (FSDP's mixed precision hands the model bfloat16 images)
            low_images = F.interpolate(
                images.float(), size=(self.image_size, self.image_size),
                mode='bilinear', align_corners=False,
                antialias=True).to(images.dtype)
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

    def _run_per_prompt(self, image_embeds: Tensor, prompt_image: Tensor,
                        prompts: Sequence[TokenizedPrompt]):
        """Naive reference: every prompt alone, one full LLM pass each."""
        hidden = [
            self._run_full(image_embeds, prompt_image[i:i + 1], [p])[0][0]
            for i, p in enumerate(prompts)
        ]
        device = image_embeds.device
        ids = self._pad([p.input_ids for p in prompts], self.pad_id, device)
        labels = self._pad([p.labels for p in prompts], IGNORE_INDEX, device)
        return pad_sequence(hidden, batch_first=True), ids, labels

    def _packed_attention_mask(self, segment: Tensor,
                               dtype: torch.dtype) -> Tensor:
        """4D attention mask of a packed row ``[prefix | suffix 1 | suffix 2
        ...]``: each token sees the earlier tokens of the prefix and of its
        own suffix. ``segment`` (B, L): -2 on the prefix, the prompt index on
        a suffix, -1 on padding (which sees the prefix and padding only)."""
        length = segment.shape[1]
        causal = torch.ones(
            length, length, dtype=torch.bool, device=segment.device).tril()
        sees = (segment[:, None, :] == -2) | (
            segment[:, :, None] == segment[:, None, :])
        mask = (sees & causal)[:, None]
        impl = self.hf_model.config.text_config._attn_implementation
        if impl == 'eager':  # eager attention adds the mask to its logits
            return torch.zeros(mask.shape, dtype=dtype,
                               device=mask.device).masked_fill(
                                   ~mask, torch.finfo(dtype).min)
        if impl != 'sdpa':
            raise ValueError(
                f"prompt_mode='shared' packs suffixes with a custom attention "
                f"mask, which {impl!r} attention does not take; use sdpa or "
                f"eager attention, or prompt_mode='batched'.")
        return mask

    def _run_shared(self, image_embeds: Tensor, prompt_image: Tensor,
                    prompts: Sequence[TokenizedPrompt]):
        """The shared prefix (system, image, instruction start) runs once per
        image; the suffixes of an image's prompts run packed into one row
        behind it, each seeing the prefix and itself only (a 4D attention
        mask). Same result as :meth:`_run_full`, with every LLM token computed
        once: no prefix recomputed, no padding between suffixes, no copy of
        the prefix's KV cache per prompt.

        The prefix runs first and the suffixes on its KV cache (transformers'
        cache API); with gradient checkpointing in training, where
        transformers drops the cache, prefix and suffixes run as one
        sequence (same tokens, same result).
        """
        device = image_embeds.device
        n = prompts[0].prefix_len
        model = self.hf_model
        language_model = model.model.language_model
        # pack: one row per image that has prompts, its suffixes in a line
        images, prompt_row = prompt_image.unique(return_inverse=True)
        prefix = torch.as_tensor(
            prompts[0].input_ids[:n], device=device).expand(len(images), -1)
        rows = [[] for _ in range(len(images))]
        segments = [[-2] * n for _ in range(len(images))]
        positions = [list(range(n)) for _ in range(len(images))]
        starts = []
        for p, (prompt, row) in enumerate(zip(prompts, prompt_row.tolist())):
            suffix = prompt.input_ids[n:]
            starts.append(len(rows[row]))
            rows[row] += suffix
            segments[row] += [p] * len(suffix)
            positions[row] += range(n, n + len(suffix))
        suffix_embeds = model.get_input_embeddings()(
            self._pad(rows, self.pad_id, device))
        prefix_embeds = self._embed(prefix, image_embeds[images])
        mask = self._packed_attention_mask(
            self._pad(segments, -1, device), prefix_embeds.dtype)
        positions = self._pad(positions, n, device)
        if (language_model.gradient_checkpointing and language_model.training
                and torch.is_grad_enabled()):
            hidden = language_model(
                inputs_embeds=torch.cat([prefix_embeds, suffix_embeds], 1),
                attention_mask=mask,
                position_ids=positions,
                use_cache=False).last_hidden_state[:, n:]
        else:
            cache = language_model(
                inputs_embeds=prefix_embeds, use_cache=True).cache
            hidden = language_model(
                inputs_embeds=suffix_embeds,
                attention_mask=mask[:, :, n:],
                position_ids=positions[:, n:],
                cache=cache,
                use_cache=True).last_hidden_state
        # unpack to one row per prompt (padding gathers a copy, unused)
        ids = self._pad([p.input_ids[n:] for p in prompts], self.pad_id,
                        device)
        labels = self._pad([p.labels[n:] for p in prompts], IGNORE_INDEX,
                           device)
        lengths = torch.as_tensor([len(p.input_ids) - n for p in prompts],
                                  device=device)
        offsets = torch.arange(ids.shape[1], device=device)[None]
        columns = torch.as_tensor(starts, device=device)[:, None] + \
            torch.minimum(offsets, lengths[:, None] - 1)
        hidden = hidden[prompt_row[:, None], columns]
        return hidden, ids, labels

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    def prompt_group_mode(self, prompt_image: Tensor,
                          prompts: Sequence[TokenizedPrompt]) -> str:
        """How one group of prompts with a common prefix runs: the
        configured ``prompt_mode``, except that ``'shared'`` runs as
        ``'batched'`` when each image has one prompt (nothing to share)."""
        if (self.prompt_mode == 'shared'
                and prompt_image.unique().numel() == len(prompts)):
            # full prompts then run with a padding mask only, which keeps
            # attention on the fused causal kernels (7B LoRA training at
            # batch 20 on one H200: 36.6 samples/s against 32.0 with the
            # packed 4D mask)
            return 'batched'
        return self.prompt_mode

    def run_prompt_group(self, image_embeds: Tensor, prompt_image: Tensor,
                         prompts: Sequence[TokenizedPrompt]):
        """The LLM on prompts that share one prefix: (P, L, D) hidden
        states with the ids and labels of the positions they are at.

        ``'shared'`` packs at most ``max_packed_tokens`` suffix tokens
        behind each image's prefix per call; more prompts run in further
        calls (the prefix computed again), so that memory grows linearly,
        not quadratically, with the number of prompts (1000 class names).
        """
        mode = self.prompt_group_mode(prompt_image, prompts)
        run = dict(
            shared=self._run_shared,
            batched=self._run_full,
            per_prompt=self._run_per_prompt)[mode]
        chunks = (self.packed_chunks(prompt_image, prompts)
                  if mode == 'shared' else [list(range(len(prompts)))])
        if len(chunks) == 1:
            return run(image_embeds, prompt_image, prompts)
        outs = [
            run(image_embeds, prompt_image[c], [prompts[i] for i in c])
            for c in chunks
        ]
        order = torch.as_tensor([i for c in chunks for i in c])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        inverse = inverse.to(image_embeds.device)

        def merged(k: int, fill: float) -> Tensor:
            """Part ``k`` of every call, padded to one length, in the
            prompts' order."""
            length = max(o[k].shape[1] for o in outs)
            parts = [
                F.pad(o[k].transpose(1, -1), (0, length - o[k].shape[1]),
                      value=fill).transpose(1, -1) for o in outs
            ]
            return torch.cat(parts)[inverse]

        return (merged(0, 0.), merged(1, self.pad_id),
                merged(2, IGNORE_INDEX))

    def packed_chunks(self, prompt_image: Tensor,
                       prompts: Sequence[TokenizedPrompt]) -> List[List[int]]:
        """Prompt indices per call, each image's packed suffixes within
        ``max_packed_tokens`` (a longer single suffix goes alone)."""
        chunks, used = [[]], {}
        for i, (prompt, image) in enumerate(zip(prompts,
                                                prompt_image.tolist())):
            length = len(prompt.input_ids) - prompt.prefix_len
            if chunks[-1] and used.get(image, 0) + length > \
                    self.max_packed_tokens:
                chunks.append([])
                used = {}
            chunks[-1].append(i)
            used[image] = used.get(image, 0) + length
        return chunks

    def forward_prompts(self,
                        image_embeds: Tensor,
                        prompt_image: Sequence[int],
                        prompts: Sequence[TokenizedPrompt],
                        with_lm_loss: bool = True) -> PromptStates:
        """Run the LLM on every prompt of the batch.

        Prompts are grouped by their shared prefix (location prompts share
        "...Please find the location of", VQA conversations less), one LLM
        call per group.

        Args:
            image_embeds: (B, n, D) from :meth:`encode_images`.
            prompt_image: image index of every prompt.
            prompts: tokenised conversations.
            with_lm_loss: also sum the next-token loss of the answers.
        """
        device = image_embeds.device
        order, states = [], []
        loss_sum, num_tokens = None, 0
        for members in prefix_groups(prompts):
            hidden, ids, labels = self.run_prompt_group(
                image_embeds,
                torch.as_tensor([int(prompt_image[i]) for i in members],
                                device=device), [prompts[i] for i in members])
            loc = ids == self.loc_token_id
            has_loc = loc.any(1)
            # user text never holds a [LOC] id: the first one is the answer's
            loc_pos = loc.float().argmax(1)
            states.append(hidden[torch.arange(len(ids)), loc_pos] *
                          has_loc[:, None])
            order += members
            if with_lm_loss:
                shift_labels = labels[:, 1:]
                keep = shift_labels != IGNORE_INDEX
                # logits only where there is a label: the vocabulary is large
                logits = self.hf_model.lm_head(hidden[:, :-1][keep])
                group_sum = F.cross_entropy(
                    logits.float(), shift_labels[keep], reduction='sum'
                ) if keep.any() else hidden.sum() * 0
                loss_sum = group_sum if loss_sum is None else (loss_sum +
                                                               group_sum)
                num_tokens += int(keep.sum())
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.as_tensor(order)] = torch.arange(len(order))
        return PromptStates(
            torch.cat(states)[inverse.to(device)], loss_sum, num_tokens)

    @torch.no_grad()
    def generate(self, image_embeds: Tensor, prompt_image: Sequence[int],
                 prompts: Sequence[TokenizedPrompt],
                 max_new_tokens: int = 32) -> List[dict]:
        """Greedy answers to free-form prompts (VQA, instructions).

        Returns, per prompt, ``ids``: the generated token ids (without the
        final ``</s>``) and ``loc_state``: the hidden state at the generated
        ``[LOC]`` (the same state :meth:`forward_prompts` returns when
        ``[LOC]`` is in the input), or ``None`` when the answer has none.
        """
        eos = self.tokenizer.eos_token_id
        results = []
        for prompt, image in zip(prompts, prompt_image):
            ids = torch.as_tensor([prompt.input_ids], device=image_embeds.device)
            out = self.hf_model.generate(
                inputs_embeds=self._embed(ids, image_embeds[[int(image)]]),
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=self.pad_id,
                output_hidden_states=True,
                return_dict_in_generate=True)
            new = out.sequences[0, -len(out.hidden_states):].tolist()
            loc_state = None
            if self.loc_token_id in new:
                # hidden_states[t] is the step whose *input* is token t - 1
                step = new.index(self.loc_token_id) + 1
                if step < len(out.hidden_states):
                    loc_state = out.hidden_states[step][-1][0, -1]
            if eos in new:
                new = new[:new.index(eos)]
            results.append(dict(ids=new, loc_state=loc_state))
        return results
