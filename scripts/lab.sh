#!/usr/bin/env bash
# Quickstart 1: set up, then run the main job on the lab datacenter with SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
controlplane validate
controlplane fleet show
