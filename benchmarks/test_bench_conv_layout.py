"""The generator's convolutions in NCHW (contiguous) against NHWC (channels_last), side by side.

Flow: the bundled 32x32 flow (the architecture of the study's fitted flows: hidden 32, 10 conv
blocks), its calibrated alpha; strategies "zero" (the paper's key) and "topk" (the study's
variant). Input: the pretraining key batch of the study (16 clips of 3x16x64x64, a textured
background with a moving square per clip, ``test_bench_precision.moving_clips``) or a smaller one.
Backend "auto" (the compiled ops where loaded, as training runs it). Both layouts are timed in
the same run, calls interleaved (a load change hits both alike), at each thread count asked.
Reported: median seconds per call, NHWC's speed as a ratio to NCHW's, the largest output
difference and the mask agreement (NCHW is the reference).

    python benchmarks/test_bench_conv_layout.py [--threads 1 2] [--clips 16] [--repeats 3]
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


def compare(threads: int, strategy: str, clips: int = 16, repeats: int = 3) -> dict:
    """One row: both layouts' median seconds per call at ``threads`` intra-op threads, the ratio,
    the largest |output difference| and the mask agreement."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        video = moving_clips(batch=clips, t=16, size=64)
        flow = load_flow()
        gens = {layout: MotionPreservingGenerator(flow, strategy=strategy, seed=0, conv_layout=layout,
                                                  validate=False) for layout in LAYOUTS}
        outs = {layout: gen(video) for layout, gen in gens.items()}          # also the warm-up
        times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
        for _ in range(repeats):
            for layout, gen in gens.items():
                t0 = time.perf_counter()
                gen(video)
                times[layout].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    (ref, ref_stats), (out, stats) = outs["contiguous"], outs["channels_last"]
    nchw, nhwc = statistics.median(times["contiguous"]), statistics.median(times["channels_last"])
    return dict(threads=threads, strategy=strategy, clips=clips, backend=gens["channels_last"].last_backend,
                nchw_s=nchw, nhwc_s=nhwc, speedup=nchw / nhwc, max_abs_diff=float((out - ref).abs().max()),
                mask_agreement=float((stats.mask == ref_stats.mask).float().mean()))


def markdown(rows: list[dict]) -> str:
    lines = ["| threads | strategy | backend | NCHW / call | NHWC / call | NHWC speed vs NCHW | max abs diff | mask agreement |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['strategy']} | {r['backend']} | {r['nchw_s']:.2f} s | {r['nhwc_s']:.2f} s "
                     f"| {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} | {r['mask_agreement']:.4f} |")
    return "\n".join(lines)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_conv_layout(benchmark, strategy):
    row = benchmark.pedantic(compare, args=(1, strategy, 4, 1), rounds=1, iterations=1)
    benchmark.group = "conv layout"
    benchmark.extra_info.update(variant="conv layout", shape=f"4x3x16x64x64 {strategy}", row=row)
    assert row["mask_agreement"] >= 0.99 and row["max_abs_diff"] < 1e-3


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the generator's convolutions, NCHW against NHWC: time and agreement")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts (default 1 2)")
    ap.add_argument("--clips", type=int, default=16, help="clips per call (default 16: the study's key batch)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per layout (interleaved)")
    args = ap.parse_args()
    print(f"CPU; torch {torch.__version__}; {args.clips} clips of 3x16x64x64; the bundled 32x32 flow")
    print(markdown([compare(t, s, args.clips, args.repeats) for t in args.threads for s in STRATEGIES]))
