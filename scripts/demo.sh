#!/usr/bin/env bash
# Quick start 1: set up the environment, then run the main job on the built-in default data.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/setup_env.sh)
exec "$(dirname "$py")/s2vc" demo "$@"
