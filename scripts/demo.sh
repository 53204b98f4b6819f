#!/usr/bin/env bash
# The main job: set up, then train → export → quantize → bench on Fashion-MNIST (cpu target).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${EDGERES_VENV:-.venv}/bin/edgeres" run "$@"
