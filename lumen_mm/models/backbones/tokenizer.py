"""A small tokenizer for tiny, randomly initialised LMMs.

No pretrained tokenizer can be downloaded here, so tiny models use a byte-level
BPE trained with Hugging Face ``tokenizers`` on the conversation template and
the dataset's own texts. Byte-level means any unicode text tokenises (no
``<unk>``), as with Llama's byte fallback. Lumen's own special tokens are *not*
part of it: the LMM adds them, exactly as it does for a real checkpoint.
"""
import os.path as osp
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .conversation import IMAGE_TOKEN, template_texts

BASE_SPECIAL_TOKENS = ['<unk>', '<s>', '</s>', '<pad>', IMAGE_TOKEN]


def train_tokenizer(texts: Iterable[str], out_dir: str,
                    vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on the template + ``texts``; save it HF-style."""
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=BASE_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    corpus = template_texts() + list(texts)
    tok.train_from_iterator(corpus, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token='<unk>',
        bos_token='<s>',
        eos_token='</s>',
        pad_token='<pad>')
    hf_tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    hf_tok.save_pretrained(out_dir)
    return hf_tok


def tokenizer_exists(path: str) -> bool:
    return osp.isfile(osp.join(path, 'tokenizer.json')) or osp.isfile(
        osp.join(path, 'tokenizer.model'))
