#!/usr/bin/env bash
# One prepared GPU benchmark run (random weights, no network), under 10 minutes on an H200:
#   1. ViT-H-14 DQU training step, ours (bf16 autocast, fused AdamW; grad checkpointing above
#      batch 64) at batch 16/64/256 vs the official style (fp32 weights + fp16 autocast,
#      CUDA_LAUNCH_BLOCKING=1, in its own process) at batch 16; samples/s and peak memory.
#   2. BLIP-2 opt-2.7b captioning in fp16, batch 32 and 64, 30 new tokens; images/s.
# Usage, from anywhere, with the project installed (pip install -e .):
#   bench/gpu.sh            # on the GPU machine
#   bench/gpu.sh --tiny     # tiny models on CPU: checks the script end to end
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"

if [[ "${1:-}" == "--tiny" ]]; then
  "$PYTHON" -m bench.gpu_train --tiny
  "$PYTHON" bench/gpu_blip2.py --tiny --batch-sizes 2 --iters 1 --max-new-tokens 4
  exit 0
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# Budgets keep the whole script under 10 minutes even if one part stalls.
timeout 390 "$PYTHON" -m bench.gpu_train
timeout 180 "$PYTHON" bench/gpu_blip2.py --batch-sizes 32 64 --max-new-tokens 30
