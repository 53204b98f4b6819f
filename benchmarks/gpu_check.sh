#!/usr/bin/env bash
# The GPU checks, as one short script for a lent CUDA machine without TensorRT: the needs_cuda tests, a GPU training
# run at the demo's settings, the PyTorch eager fp32/fp16 baseline (benchmarks/torch_cuda.py), and torchrun asking
# for more GPUs than there are. Writes its logs under $OUT (default /tmp/gpu-check).
#
#     bash benchmarks/gpu_check.sh            # in the repository root; PYTHON=python3 by default
#
# Needs torch with CUDA, onnx, onnxruntime, click, pillow, tqdm, matplotlib and pytest; edgeres runs from the checkout
# (PYTHONPATH). Fashion-MNIST from EDGERES_FASHION_MNIST_DIR, or ./.fm when it holds the four IDX files.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 EDGERES_QUIET=1
if [ -z "${EDGERES_FASHION_MNIST_DIR:-}" ] && [ -d .fm ]; then export EDGERES_FASHION_MNIST_DIR=$PWD/.fm; fi
PY=${PYTHON:-python3}
work=$(mktemp -d)
{ nvidia-smi -L; $PY -c "import torch, onnx, onnxruntime as o; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
torch.cuda.get_device_name(), 'onnx', onnx.__version__, 'onnxruntime', o.__version__)"; nproc; } 2>&1 | tee "$OUT/machine.txt"
echo "== tests/gpu" >&2
timeout 300 $PY -m pytest -q -p no:cacheprovider -rs tests/gpu --durations=5 2>&1 | tee "$OUT/tests_gpu.txt"
echo "== train on CUDA, the demo's settings (2 epochs, all 60,000 images)" >&2
SECONDS=0
EDGERES_QUIET=0 timeout 300 $PY -m edgeres train --device cuda --out "$work/m.pt" --json >"$OUT/train_cuda.json" \
  2>"$OUT/train_cuda.log"
echo "rc $? wall_s $SECONDS" >>"$OUT/train_cuda.log"
tail -3 "$OUT/train_cuda.log"
echo "== PyTorch eager baseline: CPU fp32, CUDA fp32, CUDA fp16" >&2
timeout 300 $PY benchmarks/torch_cuda.py "$work/m.pt" --cpu --json-out "$OUT/torch_cuda.json" 2>&1 | tee "$OUT/torch_cuda.txt"
echo "== torchrun with two processes on one GPU: refused in one line" >&2
timeout 120 $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m edgeres train --device cuda --epochs 1 \
  --limit-train 256 --out "$work/ddp.pt" >"$OUT/torchrun.txt" 2>&1
echo "rc $?" >>"$OUT/torchrun.txt"
grep -E "^Error|rc " "$OUT/torchrun.txt"
rm -rf "$work"
