#!/usr/bin/env bash
# Set up a virtual environment in the repo and run the whole suite: lint, types, tests.
# Everything (venv, pip's cache, converted models) stays inside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
[ -x .venv/bin/python ] || "$PYTHON_BIN" -m venv .venv
export PIP_CACHE_DIR="$PWD/.cache/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
# The web page tests drive Debian's chromium with Playwright (playwright cannot download browsers here).
if [ ! -x /usr/lib/chromium/chromium ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; the web page tests will skip" >&2
fi
.venv/bin/python -m pip install --quiet -e '.[dev]'
export FACEPRINT_MODEL_DIR="$PWD/.cache/models" MPLBACKEND=Agg
echo "== ruff";  .venv/bin/ruff check src tests benchmarks
echo "== mypy";  .venv/bin/mypy src
echo "== pytest"; .venv/bin/python -m pytest "$@"
