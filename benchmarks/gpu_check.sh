#!/usr/bin/env bash
# The GPU checks of the training engines, in one go (about 8 minutes on one H200):
#   1. the engine equivalence tests on CUDA (float64: packed == sequential, resume == uninterrupted);
#   2. model-only training steps, K RimNets (authors' widths) one after the other vs packed, bf16;
#   3. one configuration's nested CV (protocol=cv) under each engine, end to end, default cohort;
#   4. the packed step inside Lightning at K = 1 and 12 (authors' widths) against a bare loop.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (logs go to OUT_DIR, default ./gpu-check)
set -u -o pipefail
out=${1:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
  | tee -a "$out/gpu.txt"
echo "== 1. engine equivalence on CUDA"
RIMNET_TEST_TRAINER=gpu timeout 240 python3 -m pytest -x -q -p no:cacheprovider \
  tests/test_engines.py 2>&1 | tee "$out/engines_test.log" | tail -15
echo "== 2. model-only throughput"
timeout 150 python3 benchmarks/train_throughput.py --packed-only --device cuda --amp bf16 \
  --widths 32 64 128 --packed-k 1 4 8 12 16 --steps 20 2>&1 | tee "$out/throughput.log"
echo "== 3. protocol=cv, both engines"
timeout 330 python3 benchmarks/protocol.py --scale default --model rimnet_paper --epochs 2 \
  --trainer gpu --engines packed sequential 2>&1 | tee "$out/protocol.log"
echo "== 4. packed step in Lightning vs a bare loop, K = 1 and 12"
timeout 240 python3 benchmarks/packed_host_cost.py --device gpu --widths 32 64 128 --k 1 12 \
  --steps 30 2>&1 | tee "$out/host_cost.log"
