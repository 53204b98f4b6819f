#!/usr/bin/env bash
# Set up, then the house rules (ruff, mypy) and the test suite: a fast unit stage, then the integration stage
# (TensorRT conformance against stand-ins included; TensorRT/CUDA tests skip with their reason without them).
# Arguments go to pytest; naming test files or folders runs just those, in one stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN=${EDGERES_VENV:-.venv}/bin
for a in "$@"; do
  case "$a" in tests*|*.py|*::*) exec "$BIN/python" -m pytest "$@" ;; esac
done
echo "test: ruff check" >&2
"$BIN/ruff" check edgeres tests benchmarks
echo "test: mypy edgeres" >&2
"$BIN/mypy" edgeres
echo "test: unit stage" >&2
"$BIN/python" -m pytest tests/unit "$@"
echo "test: integration stage" >&2
exec "$BIN/python" -m pytest tests/integration tests/conformance tests/gpu "$@"
