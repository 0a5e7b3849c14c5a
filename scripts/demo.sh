#!/usr/bin/env bash
# Set up a virtual environment in the repo and run the main job (batch pair scoring) on a demo dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
[ -x .venv/bin/python ] || "$PYTHON_BIN" -m venv .venv
export PIP_CACHE_DIR="$PWD/.cache/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install --quiet -e '.[eval]'
export FACEPRINT_MODEL_DIR="${FACEPRINT_MODEL_DIR:-$PWD/.cache/models}"
.venv/bin/faceprint demo "$@"
