#!/usr/bin/env bash
# How to spend 2 cores on the CPU study (scripts/reproduce_cpu.sh): one pretraining run at 2 threads,
# against two runs at once at 1 thread each (parts still and pan side by side). Same settings as
# the study's runs (moco, 16 frames every 2, batch 16, queue 64, videos cached in memory); seconds per
# step over steps 11-40 from each run's checkpoint history (data + key + backbone). Run on an idle machine:
#   bash benchmarks/bench_study_layout.sh [OUT]          # from the repo root, after setup
set -eu
OUT="${1:-/tmp/bench_study_layout}"
PY="${PYTHON:-.venv/bin/python}"
common=(pretrain --mode moco --seed 0 --frames 16 --stride 2 --batch-size 16 --queue 64 --lr 0.001 --max-steps 40
        --synthetic-val-per-class 10 --cache-videos --no-progress --flow bundled)
rm -rf "$OUT"; mkdir -p "$OUT"
"$PY" -m s2vc.cli "${common[@]}" --threads 2 --out "$OUT/two" > "$OUT/two.log" 2>&1
"$PY" -m s2vc.cli "${common[@]}" --threads 1 --out "$OUT/one_a" > "$OUT/one_a.log" 2>&1 &
"$PY" -m s2vc.cli "${common[@]}" --threads 1 --seed 1 --out "$OUT/one_b" > "$OUT/one_b.log" 2>&1 &
wait
"$PY" - "$OUT" <<'PY'
import sys
import torch
out = sys.argv[1]
per_step = {}
for name in ("two", "one_a", "one_b"):
    history = torch.load(f"{out}/{name}/checkpoint.pt", weights_only=True)["history"][10:]
    per_step[name] = sum(h["t_data"] + h["t_gen"] + h["t_model"] for h in history) / len(history)
    print(f"{name}: {per_step[name]:.3f} s/step over steps 11-40")
one = 1 / per_step["two"]
both = 1 / per_step["one_a"] + 1 / per_step["one_b"]
print(f"steps per second: one run at 2 threads {one:.3f}, two runs at 1 thread {both:.3f} ({both / one:.2f}x)")
PY
