#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs what is missing:
# the pinned dependencies, then s2vc itself in editable mode with its compiled ops. The build is
# skipped when the extension is already built from the same sources against the same torch.
# Usage: source-free; run as `bash scripts/setup_env.sh`; prints the venv's python on success.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${S2VC_VENV:-.venv}
py=$venv/bin/python
if [ ! -x "$py" ]; then
  echo "[setup] creating $venv" >&2
  python3 -m venv "$venv"
fi
# torch first and alone: with torch present, the build needs no isolation (which would fetch
# another multi-GB torch), and the pins below are satisfied from the local wheel files.
log=$venv/setup.log
pip_install() {   # quiet unless it fails: pip's index warnings would drown the test output
  if ! "$py" -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "[setup] pip install $* failed (log: $log)" >&2
    exit 1
  fi
}
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  echo "[setup] installing torch and torchvision" >&2
  pip_install torch==2.14.1 torchvision==0.29.1
fi
stamp=$venv/.s2vc-build-stamp
want=$( (cat setup.py requirements.txt cpp_ext/*.* cpp_ext/*/* 2>/dev/null; "$py" -c "import torch; print(torch.__version__)"; echo "${S2VC_CUDA:-auto}") | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$py" -c "import s2vc._C" 2>/dev/null; then
  echo "[setup] installing dependencies" >&2
  pip_install -r requirements.txt
  echo "[setup] building s2vc and its compiled ops (about a minute)" >&2
  pip_install -e . --no-build-isolation --no-deps
  echo "$want" > "$stamp"
fi
echo "$py"
