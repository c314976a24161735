#!/usr/bin/env bash
# GPU check: build s2vc._C with its CUDA kernels on a GPU machine and run the tests there.
#
#   bash scripts/gpu_check.sh                   # the build, extension, suppression, generator,
#                                               # ONNX and TensorRT tests (skips listed with reasons)
#   bash scripts/gpu_check.sh -q tests/ -k cuda # any pytest arguments instead
#
# Run from the repository root. Needs python3 with torch (CUDA build), nvcc, setuptools, pytest;
# no network. Logs and a summary go to $OUT (default ./gpu_out): build.log, tests.log,
# cuobjdump.txt, summary.txt. Every step runs even if an earlier one failed; the exit status is
# 0 only when the build and the tests passed.
set -u
set -o pipefail

OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ "$#" -gt 0 ]; then
    PYTEST_ARGS=("$@")
else
    PYTEST_ARGS=(-q tests/test_build.py tests/test_ext_ops.py tests/test_ext_temporal_std.py tests/test_generator.py
                 tests/test_suppression.py tests/test_export_onnx.py tests/test_tensorrt.py)
fi

step() { echo; echo "=== $* ==="; }

step "environment"
DEVICE="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
TORCH="$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
NVCC="$(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
HAS_AV="$("$PY" -c 'import av' >/dev/null 2>&1 && echo yes || echo 'no (tests importing it fail)')"
echo "device: ${DEVICE:-unknown}"; echo "torch: $TORCH"; echo "nvcc: $NVCC"; echo "PyAV: $HAS_AV"

step "build (log: $OUT/build.log)"
build() {
    # sm_90 (H100/H200) on purpose, whatever the machine's environment sets; GPU_CHECK_ARCH overrides
    S2VC_CUDA=1 TORCH_CUDA_ARCH_LIST="${GPU_CHECK_ARCH:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
        "$PY" -m pip install --no-build-isolation --no-deps -v -e . >>"$OUT/build.log" 2>&1
}
# 0: a TORCH_CHECK failure in the extension arrives as a RuntimeError; 3: extension not loaded;
# a signal: the library cannot unwind a C++ exception (seen on the H200 image with its
# CXX=/opt/gcc/bin/g++ wrapper, where /usr/bin/g++ works; a tiny library without torch passed)
throw_ok() {
    # in a subshell, so that the shell's own "Segmentation fault" line is silenced too
    ( "$PY" -c "import sys, torch, s2vc.engine.extension as e
if not e.EXT_AVAILABLE: sys.exit(3)
try: torch.ops.s2vc.affine_coupling_inverse(torch.zeros(1, 1), torch.zeros(1, 1), 1.0)
except RuntimeError: sys.exit(0)
sys.exit(1)"; exit $? ) >/dev/null 2>&1
}
start=$(date +%s)
: >"$OUT/build.log"
build
BUILD_RC=$?
CXX_NOTE="${CXX:-c++}"
if [ $BUILD_RC -eq 0 ]; then
    throw_ok
    THROW_RC=$?
    if [ $THROW_RC -ne 0 ] && [ $THROW_RC -ne 3 ]; then
        CXX_NOTE="${CXX:-c++} built an extension that crashed on a C++ exception (rc $THROW_RC)"
        for alt in /usr/bin/g++ /usr/bin/clang++; do
            [ "$alt" = "${CXX:-}" ] || [ ! -x "$alt" ] && continue
            case "${alt##*/}" in g++) cc="${alt%g++}gcc" ;; *) cc="${alt%++}" ;; esac
            export CXX="$alt" CC="$cc"
            echo "=== rebuilding with CXX=$CXX CC=$CC" >>"$OUT/build.log"
            build
            BUILD_RC=$?
            if [ $BUILD_RC -eq 0 ] && throw_ok; then
                CXX_NOTE="$CXX_NOTE; rebuilt with $alt: ok"
                break
            fi
            CXX_NOTE="$CXX_NOTE; $alt did not help"
        done
    fi
fi
BUILD_S=$(( $(date +%s) - start ))
grep '\[s2vc setup\]' "$OUT/build.log" | sort -u
tail -n 5 "$OUT/build.log"
echo "build exit status $BUILD_RC in ${BUILD_S}s; C++ compiler: $CXX_NOTE"

step "compiled GPU code"
SO="$(ls s2vc/_C*.so 2>/dev/null | head -1)"
EXT="$("$PY" -c 'import s2vc.engine.extension as e; print(e.EXT_AVAILABLE, "cuda kernels:", e.ext_has_cuda(), e.EXT_ERROR or "")' 2>&1 | tail -1)"
RECORD="$("$PY" -c 'import json, s2vc.engine.extension as e; print(json.dumps(e.BUILD_INFO))' 2>&1 | tail -1)"
TRT="$("$PY" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || echo 'not installed (TensorRT tests skip)')"
echo "build record: $RECORD"; echo "tensorrt: $TRT"
echo "extension: $EXT"
if [ -n "$SO" ] && command -v cuobjdump >/dev/null; then
    { cuobjdump --list-elf "$SO"; cuobjdump --list-ptx "$SO"; } >"$OUT/cuobjdump.txt" 2>&1
    ARCHS="$(grep -o 'sm_[0-9a-z]*' "$OUT/cuobjdump.txt" | sort -u | tr '\n' ' ')"
else
    ARCHS="(no .so or no cuobjdump)"
fi
echo "$SO: $ARCHS"

step "tests: pytest ${PYTEST_ARGS[*]} (log: $OUT/tests.log)"
start=$(date +%s)
S2VC_REQUIRE_EXT=cuda PYTHONUNBUFFERED=1 "$PY" -m pytest -rfEs "${PYTEST_ARGS[@]}" 2>&1 \
    | tee "$OUT/tests.log"
TEST_RC=$?
TEST_S=$(( $(date +%s) - start ))
TEST_LINE="$(grep -E '[0-9]+ (passed|failed|error|skipped)|no tests ran' "$OUT/tests.log" | tail -1)"

BENCH_LINE="skipped (GPU_CHECK_BENCH=0)"
if [ "${GPU_CHECK_BENCH:-1}" != "0" ]; then
    step "benchmarks on cuda (log: $OUT/bench.log, table: $OUT/bench.txt)"
    start=$(date +%s)
    PYTHONUNBUFFERED=1 "$PY" -m pytest -q benchmarks -k cuda --benchmark-json "$OUT/bench.json" \
        >"$OUT/bench.log" 2>&1
    BENCH_RC=$?
    "$PY" scripts/bench_table.py "$OUT/bench.json" --markdown >"$OUT/bench.txt" 2>&1
    cat "$OUT/bench.txt"
    BENCH_LINE="$([ $BENCH_RC -eq 0 ] && echo ok || echo "FAILED (rc $BENCH_RC)") in $(( $(date +%s) - start ))s"
fi

step "summary"
{
    printf '%-12s %s\n' "device" "${DEVICE:-unknown}"
    printf '%-12s %s\n' "torch" "$TORCH"
    printf '%-12s %s\n' "nvcc" "$NVCC"
    printf '%-12s %s\n' "c++" "$CXX_NOTE"
    printf '%-12s %s\n' "build" "$([ $BUILD_RC -eq 0 ] && echo ok || echo "FAILED (rc $BUILD_RC)") in ${BUILD_S}s"
    printf '%-12s %s\n' "extension" "$EXT"
    printf '%-12s %s\n' "record" "$RECORD"
    printf '%-12s %s\n' "tensorrt" "$TRT"
    printf '%-12s %s\n' "gpu code" "$ARCHS"
    printf '%-12s %s\n' "tests" "$([ $TEST_RC -eq 0 ] && echo ok || echo "FAILED (rc $TEST_RC)"): ${TEST_LINE:-no summary line} in ${TEST_S}s"
    printf '%-12s %s\n' "benchmarks" "$BENCH_LINE"
} | tee "$OUT/summary.txt"

[ $BUILD_RC -eq 0 ] && [ $TEST_RC -eq 0 ]
