#!/usr/bin/env bash
# Runs every test: unit tests and the integration tests that boot real instances.
# The integration tests need the Docker daemon, so the setup runs first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --workspace --release
