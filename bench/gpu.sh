#!/usr/bin/env bash
# One prepared GPU benchmark run (random weights, no network), under 10 minutes on an H200:
#   1. ViT-H-14 DQU training step, ours (bf16 autocast, fused AdamW; activation checkpointing
#      only where a batch does not fit without) at batch 16/64/128/256 vs the official style
#      (fp32 weights + fp16 autocast, CUDA_LAUNCH_BLOCKING=1, in its own process) at batch 16;
#      samples/s and peak memory. Then the same with train.compile (each block compiled).
#   2. BLIP-2 opt-2.7b captioning in fp16, 30 new tokens, images/s at batch 32/64/128/256; then
#      with caption.blip2.compile (static KV cache, compiled decode step) at batch 64/128.
# Each part runs in its own process under its own time limit, so one stalled part (a long
# compile, say) costs only its own lines; every line is also appended to $OUT/gpu-bench.log.
# Usage, from anywhere, with the project's packages importable (pip install -e ., or PYTHONPATH):
#   bench/gpu.sh            # on the GPU machine
#   bench/gpu.sh --tiny     # tiny models on CPU: checks the script end to end
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# Fewer fragmentation OOMs when the largest batches nearly fill the card.
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"
OUT_DIR="${OUT:-$(mktemp -d)}"
LOG="$OUT_DIR/gpu-bench.log"
OFFICIAL="$OUT_DIR/official-train.json"   # the official step, measured once, compared by both
rm -f "$OFFICIAL"

part() {  # part SECONDS COMMAND...: run one part under a time limit, keep going on failure
  local limit="$1"; shift
  echo "== $* (limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local status="${PIPESTATUS[0]}"
  [[ "$status" == 0 ]] || echo "== exit $status" | tee -a "$LOG"
}

if [[ "${1:-}" == "--tiny" ]]; then
  part 300 "$PYTHON" -m bench.gpu_train --tiny --official-json "$OFFICIAL"
  part 300 "$PYTHON" -m bench.gpu_train --tiny --compile --official-json "$OFFICIAL"
  part 300 "$PYTHON" bench/gpu_blip2.py --tiny --batch-sizes 2 --iters 1 --max-new-tokens 4
  part 300 "$PYTHON" bench/gpu_blip2.py --tiny --compile --batch-sizes 2 --iters 1 \
    --max-new-tokens 4
  exit 0
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
"$PYTHON" -c "import torch, transformers, open_clip; print('torch', torch.__version__, 'cuda',
torch.version.cuda, 'transformers', transformers.__version__, 'open_clip', open_clip.__version__)" \
  | tee -a "$LOG"
# Budgets keep the whole script under 10 minutes even if a part stalls.
part 170 "$PYTHON" -m bench.gpu_train --official-json "$OFFICIAL" --batch-sizes 16 64 128 256
part 110 "$PYTHON" bench/gpu_blip2.py --batch-sizes 32 64 128 256 --max-new-tokens 30
part 160 "$PYTHON" -m bench.gpu_train --compile --official-json "$OFFICIAL" --batch-sizes 64 128
part 130 "$PYTHON" bench/gpu_blip2.py --compile --warmup 2 --batch-sizes 64 128 \
  --max-new-tokens 30
grep '^bench ' "$LOG"
