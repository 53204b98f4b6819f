#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: a venv, CPU torch, edgeres, and Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGERES_VENV:-.venv}
TORCH_SPEC=${EDGERES_TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${EDGERES_TORCH_INDEX:-}  # e.g. https://download.pytorch.org/whl/cpu where PyPI would pull a CUDA build

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup: installing python3-venv" >&2
  as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv python3-pip >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# torch first and pinned: an unpinned torch pulls a CUDA build of several GB. Compiled at install (no --no-compile):
# where PYTHONDONTWRITEBYTECODE is set (Docker images, this project's CI) nothing is compiled later, and every
# `import torch` then took 2.4 s instead of 1.2 s.
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "setup: installing $TORCH_SPEC (CPU)" >&2
  "$PY" -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH_SPEC" 2>&1 | grep -v '^WARNING: Location' || true
fi
"$PY" -m pip install -q -e '.[workstation,test]' 2>&1 | grep -v '^WARNING: Location' || true
"$PY" -c 'import torch, onnx, onnxruntime, click' || { echo "setup: the core packages did not install" >&2; exit 1; }

# Fashion-MNIST: /usr/share/datasets/fashion-mnist, or apt-get download + dpkg-deb -x into ~/.cache.
if ! "$VENV/bin/edgeres" data fetch >/dev/null 2>&1; then
  as_root apt-get update -qq >/dev/null 2>&1 || true
  "$VENV/bin/edgeres" data fetch
fi
# Debian's openssh-server, unpacked into ~/.cache (not installed), for the remote-bench tests; they skip without it.
bash scripts/fetch-sshd.sh || true
echo "setup: ready ($("$PY" -c 'import torch, onnxruntime; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'))" >&2
