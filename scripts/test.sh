#!/usr/bin/env bash
# Quickstart 2: set up, then run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
pytest "$@"
