"""Export a trained Lumen: merged LLaVA (Hugging Face layout) + our weights.

    python tools/export.py CONFIG CHECKPOINT OUT_DIR

Writes OUT_DIR/llava (LoRA merged, tokenizer, processor with chat template:
AutoProcessor and LlavaForConditionalGeneration load it), OUT_DIR/adapter
(LoRA runs: the peft adapter with its tokenizer), OUT_DIR/lumen_heads.
safetensors and .pth (aligner, heads) and OUT_DIR/config.py; see
lumen_mm/export.py.
"""
import argparse

from lumen_mm.export import export_lumen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='training config')
    parser.add_argument('checkpoint', help='training checkpoint (full or '
                        'trainable-only)')
    parser.add_argument('out_dir', help='output directory')
    args = parser.parse_args()
    export_lumen(args.config, args.checkpoint, args.out_dir)
    print(f'Exported to {args.out_dir}: test it with '
          f'tools/test.py {args.out_dir}/config.py '
          f'{args.out_dir}/lumen_heads.pth; load {args.out_dir}/llava with '
          'AutoProcessor and LlavaForConditionalGeneration')


if __name__ == '__main__':
    main()
