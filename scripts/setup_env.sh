#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs what is missing:
# the pinned dependencies (requirements.txt: the core install and the extras [export], [demo] and
# [test] that the README's two commands need, the demo's sample clips and the tests' onnx,
# onnxruntime and lightning; not [gpu] / [tensorrt]), then s2vc itself in editable mode with its compiled ops, by the
# README's `pip install -e .` (build isolation; the build compiles against this venv's torch, see
# build_support/s2vc_backend.py). The build is skipped when the extension is already built from
# the same sources against the same torch and loads.
# Usage: source-free; run as `bash scripts/setup_env.sh`; prints the venv's python on success.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${S2VC_VENV:-.venv}
py=$venv/bin/python
if [ ! -x "$py" ]; then
  echo "[setup] creating $venv" >&2
  python3 -m venv "$venv"
fi
log=$venv/setup.log
free_gb() {   # GB free on the file system of folder $1
  df -Pk "$1" | awk 'NR == 2 {printf "%.1f", $4 / 1048576}'
}
pip_install() {   # quiet unless it fails: pip's index warnings would drown the test output
  if ! "$py" -m pip install ${PIP_VERBOSITY:--q} "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "[setup] pip install $* failed (log: $log)" >&2
    if grep -q "No space left on device" "$log"; then
      echo "[setup] the disk is full: $(free_gb "$venv") GB free where $venv is, $(free_gb "${TMPDIR:-/tmp}") GB in" \
           "${TMPDIR:-/tmp} (pip unpacks there); torch and torchvision take about 6 GB: free some space" \
           "(or set TMPDIR / S2VC_VENV to a larger disk) and run this again" >&2
    fi
    exit 1
  fi
}
# torch first: the build compiles the extension against the venv's torch
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  echo "[setup] installing torch and torchvision" >&2
  free=$(free_gb "$venv" | cut -d. -f1)
  if [ -n "$free" ] && [ "$free" -lt 7 ]; then
    echo "[setup] warning: $(free_gb "$venv") GB free where $venv is; torch and torchvision take about 6 GB" >&2
  fi
  pip_install torch==2.14.1 torchvision==0.29.1
fi
stamp=$venv/.s2vc-build-stamp
want=$( (cat setup.py pyproject.toml build_support/*.py requirements.txt cpp_ext/*.* cpp_ext/*/* 2>/dev/null
         "$py" -c "import torch; print(torch.__version__)"
         echo "${S2VC_CUDA:-auto} ${TORCH_CUDA_ARCH_LIST:-default} ${CC:-} ${CXX:-}") | sha256sum | cut -c1-16)
loads() { "$py" -c "import sys, s2vc.engine.extension as e; sys.exit(0 if e.EXT_AVAILABLE else 1)" 2>/dev/null; }
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! loads; then
  echo "[setup] installing dependencies" >&2
  pip_install -r requirements.txt
  echo "[setup] building s2vc and its compiled ops (a few minutes with the CUDA kernels)" >&2
  PIP_VERBOSITY=-v pip_install -e . --no-deps     # -v: the log keeps setup.py's decisions
  grep -F '[s2vc setup]' "$log" | sed 's/^ *//' | sort -u >&2 || true
  echo "$want" > "$stamp"
fi
echo "$py"
