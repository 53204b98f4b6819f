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
# The integration stage runs one pytest worker per core, each pinned to its own (tests/conftest.py), each test file on
# one worker (EDGERES_TEST_WORKERS=N sets how many; 0 runs it in this process). Many of its tests wait on child
# processes, ssh and files more than they compute: on 2 cores it took 665 s, where one process took 1,048 s.
echo "test: integration stage" >&2
exec "$BIN/python" -m pytest -n "${EDGERES_TEST_WORKERS:-auto}" --dist loadfile tests/integration tests/conformance tests/gpu "$@"
