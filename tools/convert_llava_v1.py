"""Convert an original LLaVA-1.1 checkpoint into the Hugging Face layout.

    python tools/convert_llava_v1.py SRC OUT --vision-tower CLIP_DIR

SRC is the LLaVA repository's checkpoint directory as its ``apply_delta``
saves it (config.json with mm_* fields, pytorch_model-0000x-of-0000N.bin
shards, the SentencePiece tokenizer; needs the sentencepiece and protobuf
packages), CLIP_DIR a local copy of its ``mm_vision_tower`` as released
(openai/clip-vit-large-patch14: the whole CLIPModel). OUT then serves as
``pretrained`` of ``LlavaLMM`` (see
configs/lumen/_base_/models/lumen_llava-v1.1-7b.py).
"""
import argparse

from lumen_mm.converters import convert_llava_v1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='original LLaVA-1.1 checkpoint directory')
    parser.add_argument('out', help='output Hugging Face LLaVA directory')
    parser.add_argument(
        '--vision-tower',
        required=True,
        help='local CLIP directory named by mm_vision_tower in the '
        'checkpoint config (openai/clip-vit-large-patch14)')
    parser.add_argument(
        '--dtype',
        choices=['float16', 'bfloat16', 'float32'],
        help='dtype of the written weights (default: the checkpoint\'s)')
    parser.add_argument('--max-shard-size', default='5GB')
    args = parser.parse_args()
    out = convert_llava_v1(args.src, args.out, args.vision_tower, args.dtype,
                           args.max_shard_size)
    print(f'Wrote {out}; use it as `pretrained` of LlavaLMM with '
          "conversation=dict(image_start='<im_start>', image_end='<im_end>').")


if __name__ == '__main__':
    main()
