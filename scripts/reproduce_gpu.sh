#!/usr/bin/env bash
# The reproduction (s2vc reproduce: MoCo / S²VC / TFD / oracle for every seed) on a GPU machine, in
# stages that each fit one 8-minute command and resume where the last one stopped.
#
#   bash scripts/reproduce_gpu.sh install    # build s2vc._C with CUDA kernels for this GPU (1-2 min)
#   bash scripts/reproduce_gpu.sh train      # train for LIMIT_S (default 420 s), then stop; run again to go on
#   bash scripts/reproduce_gpu.sh report     # evaluate what exists (runs cut short count with their last
#                                            # snapshot); copy the small results to $OUT
#   bash scripts/reproduce_gpu.sh            # install when the CUDA kernels are not built yet, else train
#
#   STEPS=2000 SEEDS="0 1 2" LIMIT_S=420 bash scripts/reproduce_gpu.sh train
#
# Run folders, checkpoints and the decoded-video cache live in $RUNS (default /tmp/s2vc_repro_gpu),
# outside $OUT: only results.md, results.json, curves.png, summary.txt and the logs' tails come
# back in $OUT (default ./gpu_out). A stage is resumable because `s2vc reproduce` is: every
# ckpt_every steps a checkpoint, and a finished run is reused. STEPS must be a multiple of 5
# (snapshots every STEPS/5). Without a GPU it stops at once with one line (exit 2). Budget figures
# are estimates until a GPU run measures them (docs/RESULTS.md says which were measured).
set -u
set -o pipefail
OUT="${OUT:-./gpu_out}"
RUNS="${RUNS:-${TMPDIR:-/tmp}/s2vc_repro_gpu}"
PY="${PYTHON:-python3}"
STEPS="${STEPS:-1500}"
SEEDS="${SEEDS:-0 1 2}"
LIMIT_S="${LIMIT_S:-420}"
REPORT_S="${REPORT_S:-420}"
DEVICE="${DEVICE:-cuda}"
STAGE="${1:-auto}"
case "$STAGE" in install|train|report|auto) ;;
    *) echo "reproduce_gpu: the stage is install, train, report (or none), got '$STAGE'"; exit 2 ;; esac

GATE="$("$PY" - 2>/dev/null <<'EOF'
import torch
print("ok" if torch.cuda.is_available() else f"reproduce_gpu: no GPU: torch {torch.__version__} sees none; nothing run")
EOF
)"
case "$GATE" in
    ok*) ;;
    "") echo "reproduce_gpu: no GPU: $PY cannot import torch; nothing run"; exit 2 ;;
    *) echo "$GATE"; exit 2 ;;
esac
case "$(realpath -m "$RUNS")/" in
    "$(realpath -m "$OUT")"/*)
        echo "reproduce_gpu: RUNS=$RUNS is inside OUT=$OUT; keep run folders outside it"; exit 2 ;;
esac
mkdir -p "$OUT" "$RUNS"
export S2VC_CACHE="$RUNS/cache"

install() {
    local arch
    arch="${ARCH:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')}"
    CXX="${CXX_OVERRIDE:-/usr/bin/g++}" S2VC_CUDA="${S2VC_CUDA:-1}" TORCH_CUDA_ARCH_LIST="$arch" \
        MAX_JOBS="${MAX_JOBS:-16}" "$PY" -m pip install --no-build-isolation --no-deps -e . >"$RUNS/build.log" 2>&1
    local rc=$?
    tail -n 20 "$RUNS/build.log" >"$OUT/build_tail.txt"
    [ $rc -eq 0 ] || { echo "reproduce_gpu: install failed (rc $rc), see $OUT/build_tail.txt"; exit 1; }
    "$PY" -m s2vc.cli info | tee "$OUT/info.txt"
}

# shellcheck disable=SC2206
COMMON=(--out "$RUNS/repro" --seeds $SEEDS --steps "$STEPS" --snapshot-every $((STEPS / 5)) --ckpt-every 100
        --batch-size 32 --queue 64 --workers 6 --device "$DEVICE" --no-progress ${EXTRA_ARGS:-})

train() {
    local start rc
    start=$(date +%s)
    timeout --signal=INT "$LIMIT_S" "$PY" -m s2vc.cli reproduce "${COMMON[@]}" >>"$RUNS/reproduce.log" 2>&1
    rc=$?
    echo "reproduce_gpu train: rc $rc after $(( $(date +%s) - start )) s (124: stopped at LIMIT_S=$LIMIT_S;" \
         "run the train stage again to continue, then report)" | tee "$OUT/summary.txt"
    tail -n 20 "$RUNS/reproduce.log" >"$OUT/reproduce_tail.txt"
    [ $rc -eq 0 ] || [ $rc -eq 124 ]
}

report() {
    local rc
    timeout --signal=INT "$REPORT_S" "$PY" -m s2vc.cli reproduce "${COMMON[@]}" --eval-only >>"$RUNS/reproduce.log" 2>&1
    rc=$?
    for f in results.md results.json curves.png; do
        [ -f "$RUNS/repro/$f" ] && cp "$RUNS/repro/$f" "$OUT/$f"
    done
    echo "reproduce_gpu report: rc $rc" >>"$OUT/summary.txt"
    [ -f "$OUT/results.md" ] && cat "$OUT/results.md" >>"$OUT/summary.txt"
    tail -n 30 "$OUT/summary.txt"
    return $rc
}

case "$STAGE" in
    install) install ;;
    train) train ;;
    report) report ;;
    auto)
        if "$PY" -c 'import sys, s2vc.engine.extension as e; sys.exit(0 if e.ext_has_cuda() else 1)' >/dev/null 2>&1; then
            train
        else
            install
        fi ;;
esac
