#!/usr/bin/env bash
# Quick start 2: set up the environment, then run the test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/setup_env.sh)
exec "$py" -m pytest -q "$@" tests
