#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, then run a scenario.
# Usage: scripts/run.sh [SCENARIO]   (default scenarios/quick.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release -p deploybench -- run "${1:-scenarios/quick.toml}"
