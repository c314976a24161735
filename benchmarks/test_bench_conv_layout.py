"""The generator on the CPU: its convolutions in NCHW (contiguous) against NHWC (channels_last),
at several chunk sizes (``chunk_frames``: frames encoded / decoded at once), side by side.

Flow: the bundled 32x32 flow (the architecture of the study's fitted flows: hidden 32, 10 conv
blocks), its calibrated alpha; strategies "zero" (the paper's key) and "topk" (the study's
variant). Input: the pretraining key batch of the study (16 clips of 3x16x64x64, a textured
background with a moving square per clip, ``test_bench_precision.moving_clips``) or a smaller one.
Backend "auto" (the compiled ops where loaded, as training runs it). Every variant (layout x
chunk) is timed in the same run, calls interleaved (a load change hits all alike), at each
thread count asked. Reported: median seconds per call, the speed as a ratio to the default's
(NCHW, 256-frame chunks: the whole key batch at once, the CPU's default until 2026-12-08), the
largest output difference and the mask agreement against it.

    python benchmarks/test_bench_conv_layout.py [--threads 1 2] [--chunks 32 64 256] [--strategies zero topk]
                                                [--clips 16] [--repeats 3]
    python -m pytest benchmarks/test_bench_conv_layout.py      # pytest-benchmark, numbers in extra_info
"""
from __future__ import annotations

import argparse
import statistics
import time

import pytest
import torch

from s2vc.engine import load_flow
from s2vc.engine.generator import MotionPreservingGenerator

from test_bench_precision import moving_clips

LAYOUTS = ("contiguous", "channels_last")
STRATEGIES = ("zero", "topk")
DEFAULT = ("contiguous", 256)          # the reference of each row: NCHW, the whole 256-frame batch at once
                                       # (the CPU default before 2026-12-08; it is 64 frames now)


def compare(threads: int, strategy: str, clips: int = 16, repeats: int = 3, chunks=(256,)) -> list[dict]:
    """One row per (layout, chunk): median seconds per call at ``threads`` intra-op threads, the
    speed against the default's, the largest |output difference| and the mask agreement with it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    variants = [DEFAULT] + [(lay, ch) for ch in chunks for lay in LAYOUTS if (lay, ch) != DEFAULT]
    try:
        video = moving_clips(batch=clips, t=16, size=64)
        flow = load_flow()
        gens = {v: MotionPreservingGenerator(flow, strategy=strategy, seed=0, conv_layout=v[0], chunk_frames=v[1],
                                             validate=False) for v in variants}
        outs = {v: gen(video) for v, gen in gens.items()}                 # also the warm-up
        times: dict[tuple, list[float]] = {v: [] for v in variants}
        for _ in range(repeats):
            for v, gen in gens.items():
                t0 = time.perf_counter()
                gen(video)
                times[v].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    ref, ref_stats = outs[DEFAULT]
    base = statistics.median(times[DEFAULT])
    return [dict(threads=threads, strategy=strategy, clips=clips, layout=v[0], chunk=v[1],
                 backend=gens[v].last_backend, seconds=statistics.median(times[v]),
                 speedup=base / statistics.median(times[v]), max_abs_diff=float((outs[v][0] - ref).abs().max()),
                 mask_agreement=float((outs[v][1].mask == ref_stats.mask).float().mean())) for v in variants]


def markdown(rows: list[dict]) -> str:
    lines = ["| threads | strategy | layout | chunk | backend | median / call | speed vs NCHW, 256 | max abs diff | "
             "mask agreement |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['strategy']} | {r['layout']} | {r['chunk']} | {r['backend']} "
                     f"| {r['seconds']:.2f} s | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} | {r['mask_agreement']:.4f} |")
    return "\n".join(lines)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_conv_layout(benchmark, strategy):
    rows = benchmark.pedantic(compare, args=(1, strategy, 4, 1, (64, 256)), rounds=1, iterations=1)
    benchmark.group = "conv layout"
    benchmark.extra_info.update(variant="conv layout", shape=f"4x3x16x64x64 {strategy}", rows=rows)
    assert all(r["mask_agreement"] >= 0.99 and r["max_abs_diff"] < 1e-3 for r in rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the generator's convolutions, NCHW against NHWC: time and agreement")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts (default 1 2)")
    ap.add_argument("--clips", type=int, default=16, help="clips per call (default 16: the study's key batch)")
    ap.add_argument("--chunks", type=int, nargs="+", default=[32, 64, 256], help="chunk_frames values (default 32 64 256)")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), help="strategies (default zero topk)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per layout (interleaved)")
    args = ap.parse_args()
    print(f"CPU; torch {torch.__version__}; {args.clips} clips of 3x16x64x64; the bundled 32x32 flow")
    print(markdown([row for t in args.threads for s in args.strategies
                    for row in compare(t, s, args.clips, args.repeats, tuple(args.chunks))]))
