#!/usr/bin/env bash
# GPU check: one call on a GPU machine, in two stages that each fit one command's time limit.
#
#   bash scripts/gpu_check.sh            # stage 1 then stage 2
#   bash scripts/gpu_check.sh 1          # stage 1: build s2vc._C with CUDA kernels for this GPU + the CUDA tests
#   bash scripts/gpu_check.sh 2          # stage 2: GPU benchmarks (scripts/gpu_bench.py), needs stage 1's build
#   bash scripts/gpu_check.sh 1 -q tests/test_ext_ops.py -k cuda   # stage 1 with these pytest arguments
#
# Run from the repository root. Without a GPU it stops at once with one line (exit 2). Needs
# python3 with a CUDA build of torch, a C++ compiler, and a CUDA toolkit of torch's CUDA major
# (system, or the pip wheels: docs/INSTALL.md); no network. What the image lacks (PyAV,
# scikit-video, ONNX, pytest ...) is installed from the wheel folder $GPU_CHECK_WHEELS (default
# ./.whl) when it exists; fill it on a machine with network (docs/INSTALL.md, "GPU check"):
#   pip download --python-version 3.12 --only-binary=:all: -d .whl av scikit-video onnx onnxscript \
#       onnxruntime pytest pytest-benchmark tqdm
#
# Small files under $OUT (default ./gpu_out), at most 8: env.txt (s2vc info, installs), build.txt
# ([s2vc setup] lines, GPU code in the library), tests.txt (pytest's summary), bench.json and
# bench.md (stage 2), summary.md (one markdown table of the stages). Full logs stay in
# $GPU_CHECK_WORK (default /tmp/s2vc_gpu_check), outside $OUT. Time limits: stage 1 build+tests
# STAGE1_S (default 300 s), stage 2 STAGE2_S (default 420 s). Exit status 0 only when every
# stage run passed.
set -u
set -o pipefail

OUT="${OUT:-./gpu_out}"
WORK="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/s2vc_gpu_check}"
PY="${PYTHON:-python3}"
WHEELS="${GPU_CHECK_WHEELS:-./.whl}"
STAGE="${1:-all}"
[ "$#" -gt 0 ] && shift
case "$STAGE" in 1|2|all) ;; *) echo "gpu_check: the stage is 1, 2 or all, got '$STAGE'"; exit 2 ;; esac

# -- no GPU: one line, before anything is built or written -----------------------------------------
GATE="$("$PY" - 2>/dev/null <<'EOF'
import torch
if torch.cuda.is_available():
    print("ok", torch.cuda.get_device_name(0))
else:
    why = "torch is a CPU build" if torch.version.cuda is None else "no CUDA device visible (driver, CUDA_VISIBLE_DEVICES)"
    print(f"gpu_check: no GPU: torch {torch.__version__} sees none: {why}; nothing checked")
EOF
)"
case "$GATE" in
    ok*) ;;
    "") echo "gpu_check: no GPU: $PY cannot import torch; nothing checked"; exit 2 ;;
    *) echo "$GATE"; exit 2 ;;
esac

mkdir -p "$OUT" "$WORK"
ROWS=()                                        # summary.md rows: "stage | result | seconds | detail"
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); }
write_summary() {
    { echo "## s2vc gpu_check: ${GATE#ok }"; echo; echo "| stage | result | seconds | detail |"; echo "|---|---|---|---|"
      printf '%s\n' "${ROWS[@]}"; } >"$OUT/summary.md"
}

# -- what the image lacks, from the local wheel folder ---------------------------------------------
# module:package pairs; a module already importable is left alone
NEEDED="av:av skvideo:scikit-video onnx:onnx onnxscript:onnxscript onnxruntime:onnxruntime pytest:pytest pytest_benchmark:pytest-benchmark tqdm:tqdm"
missing=()
for pair in $NEEDED; do
    "$PY" -c "import ${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
INSTALL_NOTE="nothing missing"
if [ "${#missing[@]}" -gt 0 ]; then
    if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        # one package at a time: a wheel the folder lacks (onnxruntime where it holds onnxruntime-gpu)
        # must not keep the others out
        done_=() failed=()
        for pkg in "${missing[@]}"; do
            if "$PY" -m pip install --no-index --find-links "$WHEELS" "$pkg" >>"$WORK/install.log" 2>&1; then
                done_+=("$pkg")
            else
                failed+=("$pkg")
            fi
        done
        INSTALL_NOTE="installed from $WHEELS: ${done_[*]:-none}"
        [ "${#failed[@]}" -gt 0 ] && INSTALL_NOTE="$INSTALL_NOTE; not in it: ${failed[*]} (their tests skip)"
    else
        INSTALL_NOTE="missing ${missing[*]}, no wheel folder $WHEELS: their tests skip with a reason"
    fi
fi
echo "gpu_check: ${GATE#ok }; $INSTALL_NOTE"

FAILED=0
stage1() {
    local start arch rc
    start=$(date +%s)
    # machine code for this GPU only: the quickest build that runs here; GPU_CHECK_ARCH overrides
    arch="${GPU_CHECK_ARCH:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')}"
    S2VC_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="${MAX_JOBS:-16}" \
        timeout "${STAGE1_BUILD_S:-240}" "$PY" -m pip install --no-build-isolation --no-deps -v -e . >"$WORK/build.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && [ "${CXX:-}" != /usr/bin/g++ ] && [ -x /usr/bin/g++ ] && ! throw_ok; then
        # a C++ compiler whose library cannot unwind a C++ exception (an H200 image's default
        # CXX=/opt/gcc/bin/g++ did that): rebuild with the system's
        echo "=== rebuilding with CXX=/usr/bin/g++" >>"$WORK/build.log"
        CXX=/usr/bin/g++ CC=/usr/bin/gcc S2VC_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="${MAX_JOBS:-16}" \
            timeout "${STAGE1_BUILD_S:-240}" "$PY" -m pip install --no-build-isolation --no-deps -v -e . \
            >>"$WORK/build.log" 2>&1
        rc=$?
        throw_ok || rc=90
    fi
    local build_s=$(( $(date +%s) - start ))
    { grep '\[s2vc setup\]' "$WORK/build.log" | sort -u; tail -n 15 "$WORK/build.log"
      so="$(ls s2vc/_C*.so 2>/dev/null | head -1)"
      if [ -n "$so" ] && command -v cuobjdump >/dev/null; then
          echo "GPU code in $so: $(cuobjdump --list-elf "$so" 2>/dev/null | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')"
      fi; } >"$OUT/build.txt"
    "$PY" -m s2vc.cli info >"$WORK/info.txt" 2>&1
    { echo "$INSTALL_NOTE"; cat "$WORK/info.txt"; } >"$OUT/env.txt"
    if [ $rc -ne 0 ]; then
        row "1 build" "FAILED (rc $rc)" "$build_s" "arch $arch; see build.txt"
        FAILED=1
        return
    fi
    row "1 build" "ok" "$build_s" "arch $arch; $(grep -c . "$OUT/build.txt") lines in build.txt"
    local left=$(( ${STAGE1_S:-300} - build_s )) args
    [ $left -lt 60 ] && left=60
    if [ "$#" -gt 0 ]; then args=("$@"); else
        args=(-q tests/test_build.py tests/test_info.py tests/test_ext_ops.py tests/test_ext_temporal_std.py
              tests/test_suppression.py tests/test_generator.py tests/test_runtime_onnx.py tests/test_export_onnx.py
              tests/test_tensorrt.py)
    fi
    start=$(date +%s)
    S2VC_REQUIRE_EXT=cuda PYTHONUNBUFFERED=1 timeout "$left" "$PY" -m pytest -rfEs -p no:cacheprovider "${args[@]}" \
        >"$WORK/tests.log" 2>&1
    rc=$?
    # the short summary (failures, errors, skips with reasons) and the last line, not the whole log
    { sed -n '/short test summary info/,$p' "$WORK/tests.log" | head -n 150; tail -n 3 "$WORK/tests.log"; } >"$OUT/tests.txt"
    local line
    line="$(grep -E '[0-9]+ (passed|failed|error|skipped)|no tests ran' "$WORK/tests.log" | tail -1)"
    [ $rc -eq 124 ] && line="stopped at ${left}s; ${line:-no summary}"
    row "1 tests" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc)")" "$(( $(date +%s) - start ))" "${line:-no summary line}"
    [ $rc -eq 0 ] || FAILED=1
}

# 0: a TORCH_CHECK failure in the extension arrives as a RuntimeError; anything else (a signal) fails
throw_ok() {
    ( "$PY" -c "import sys, torch, s2vc.engine.extension as e
if not e.EXT_AVAILABLE: sys.exit(0)
try: torch.ops.s2vc.affine_coupling_inverse(torch.zeros(1, 1), torch.zeros(1, 1), 1.0)
except RuntimeError: sys.exit(0)
sys.exit(1)"; exit $? ) >/dev/null 2>&1
}

stage2() {
    local start rc
    start=$(date +%s)
    PYTHONUNBUFFERED=1 timeout "${STAGE2_S:-420}" "$PY" scripts/gpu_bench.py --out "$OUT" \
        --limit-s $(( ${STAGE2_S:-420} - 60 )) >"$WORK/bench.log" 2>&1
    rc=$?
    local timed
    timed="$(grep -c '| [0-9.]* |' "$OUT/bench.md" 2>/dev/null || echo 0)"
    row "2 benchmarks" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc)")" "$(( $(date +%s) - start ))" \
        "bench.md: $timed rows; $(tail -n 1 "$WORK/bench.log")"
    [ $rc -eq 0 ] || FAILED=1
}

case "$STAGE" in
    1) stage1 "$@" ;;
    2) stage2 ;;
    all) stage1 "$@"; stage2 ;;
esac
write_summary
cat "$OUT/summary.md"
exit $FAILED
