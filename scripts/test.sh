#!/usr/bin/env bash
# Set up, then run the test suite (TensorRT/CUDA tests skip with their reason on machines without them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${EDGERES_VENV:-.venv}/bin/python" -m pytest "$@"
