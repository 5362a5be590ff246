#!/usr/bin/env bash
# Issue 6 on one CUDA GPU (the goals name an H200): the LLaVA-1.1-7B-shaped
# paper config with random weights, bf16. Needs the lumen_mm environment
# (`make env`) and the paper config; writes four JSONs next to this script.
#   bash docs/benchmarks/run_h200.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
CFG=${CFG:-configs/lumen/lumen_llava-v1.1-7b_lora_448_multitask_50k.py}
TOK=${TOK:-/tmp/lumen_bench_tokenizer}
OUT=${OUT:-docs/benchmarks}

# No LLaMA tokenizer on such a machine: a byte-level BPE trained on the
# conversation template and COCO's class names, with LLaVA-1.1's image
# tokens, stands in (token counts then differ a little from LLaMA's).
if [ ! -f "$TOK/tokenizer.json" ]; then
  "$PY" -c "from mmdet.datasets import CocoDataset
from lumen_mm.datasets.tokenizer import train_tokenizer
tok = train_tokenizer(CocoDataset.METAINFO['classes'], '$TOK')
tok.add_tokens(['<im_patch>', '<im_start>', '<im_end>'], special_tokens=True)
tok.save_pretrained('$TOK')"
fi

BENCH=("$PY" tools/benchmark.py "$CFG" --random-init --tokenizer "$TOK"
       --device cuda --dtype bf16)
# 80-class detection at 448: goal >= 12 images/s and >= 12x the naive loop
"${BENCH[@]}" --classes 80 --images 32 --warmup 2 --mode shared \
  --json "$OUT/h200_7b_shared.json"
"${BENCH[@]}" --classes 80 --images 4 --mode naive \
  --json "$OUT/h200_7b_naive.json"
# training, batch 20 (one prompt each), LoRA as the config sets it:
# goal >= 35 samples/s at <= 50 GiB, or >= 25 samples/s at <= 20 GiB with
# gradient checkpointing
"${BENCH[@]}" --train --classes 1 --batch-size 20 --images 200 --warmup 2 \
  --no-grad-checkpointing --json "$OUT/h200_7b_train.json"
"${BENCH[@]}" --train --classes 1 --batch-size 20 --images 200 --warmup 2 \
  --grad-checkpointing --json "$OUT/h200_7b_train_gc.json"
