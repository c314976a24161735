#!/usr/bin/env bash
# The reproduction (s2vc reproduce) sized for one GPU session of the device machine.
#
#   OUT=/some/dir bash scripts/reproduce_gpu.sh            # on the GPU machine, from the repo root
#   STEPS=2000 SEEDS="0 1 2" LIMIT_S=480 bash scripts/reproduce_gpu.sh
#
# STEPS must be a multiple of 5 (snapshots every STEPS/5). The install (about a minute) and the
# final evaluation pass come on top of LIMIT_S: keep LIMIT_S a few minutes under the command limit.
# Installs the package (builds s2vc._C with its CUDA kernels for sm_90, /usr/bin/g++ as the H200
# image needs), then runs MoCo / S²VC / TFD / oracle for every seed under a wall-clock limit.
# `s2vc reproduce` is resumable: a run cut by the limit continues when the script is started again
# with the same OUT. Writes $OUT/repro/{results.md,results.json,curves.png}, $OUT/build.log,
# $OUT/reproduce.log and $OUT/summary.txt (the table). Budget numbers are estimates until a GPU
# run has measured them (docs/RESULTS.md says which were measured).
set -u
set -o pipefail
OUT="${OUT:-./gpu_out}"
PY="${PYTHON:-python3}"
STEPS="${STEPS:-1500}"
SEEDS="${SEEDS:-0 1 2}"
LIMIT_S="${LIMIT_S:-480}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
export S2VC_CACHE="$OUT/cache"

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    CXX="${CXX_OVERRIDE:-/usr/bin/g++}" S2VC_CUDA="${S2VC_CUDA:-1}" TORCH_CUDA_ARCH_LIST="${ARCH:-9.0}" \
        MAX_JOBS="${MAX_JOBS:-16}" "$PY" -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1 \
        || { echo "install failed, see $OUT/build.log"; exit 1; }
fi
"$PY" -c 'import torch, s2vc.engine.extension as e; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "ext", e.EXT_AVAILABLE)'

start=$(date +%s)
# shellcheck disable=SC2206
COMMON=(--out "$OUT/repro" --seeds $SEEDS --steps "$STEPS" --snapshot-every $((STEPS / 5)) --ckpt-every 100
        --batch-size 32 --queue 64 --workers 6 --device "$DEVICE" --no-progress ${EXTRA_ARGS:-})
timeout --signal=INT "$LIMIT_S" "$PY" -m s2vc.cli reproduce "${COMMON[@]}" >"$OUT/reproduce.log" 2>&1
rc=$?
echo "reproduce: rc $rc after $(( $(date +%s) - start )) s (124: stopped at the time limit; start again to continue)" | tee "$OUT/summary.txt"
# tabulate what exists (runs cut by the limit count with their last snapshot); trains nothing
"$PY" -m s2vc.cli reproduce "${COMMON[@]}" --eval-only >>"$OUT/reproduce.log" 2>&1
[ -f "$OUT/repro/results.md" ] && cat "$OUT/repro/results.md" >>"$OUT/summary.txt"
tail -n 30 "$OUT/summary.txt"
exit $rc
