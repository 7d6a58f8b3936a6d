#!/usr/bin/env bash
# Quickstart 1: set up, then run the main job on the lab datacenter with SQLite:
# provision all four members' stacks and report each app instance answering on its port.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
controlplane validate
controlplane provision "$@"
