"""The generator's reduced precision against fp32: mask agreement, PSNR and time, side by side.

Flows: "cpu32" the bundled 32x32 flow (trained; its calibrated alpha) and "same64" a 64x64 flow
of the bundled flow's architecture shape (same blocks and widths; random weights, N(0, 0.03²)
like ``engine.bench.bench_flow``; alpha chosen on the fp32 latents so that the bundled flow's
preserved fraction is kept). Input: 2 clips of 3x8x96x96, a textured background with a moving
square (each clip its own texture and direction), in [0, 1].
Precisions (``MotionPreservingGenerator``): fp32 (the reference), bf16 (the decode in bf16
autocast; the default encode in fp32) and bf16-all (the encode in bf16 too).
Reported: mask agreement (fraction of the (B, D) mask entries equal to fp32's), PSNR (peak 1)
against fp32's output, and each precision's median seconds per call against fp32's (calls
interleaved across the precisions, so a load change hits all of them alike).

    python benchmarks/test_bench_precision.py [--repeats 3]      # the markdown table
    python -m pytest benchmarks/test_bench_precision.py           # pytest-benchmark, same numbers in extra_info
"""
from __future__ import annotations

import argparse
import statistics
import time

import pytest
import torch

from s2vc.engine import AdvFlow, FlowConfig, load_flow
from s2vc.engine.generator import MotionPreservingGenerator
from s2vc.engine.suppression import alpha_for_preserved_fraction, resolve_alpha

PRECISIONS = {"fp32": ("fp32", "fp32"), "bf16": ("bf16", "fp32"), "bf16-all": ("bf16", "bf16")}
CONFIGS = ("cpu32", "same64")


def moving_clips(batch: int = 2, t: int = 8, size: int = 96) -> torch.Tensor:
    """float (batch, 3, t, size, size) in [0, 1]: a smooth random texture, a square moving over it."""
    g = torch.Generator().manual_seed(0)
    clips = []
    for i in range(batch):
        tex = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=(size, size),
                                              mode="bilinear", align_corners=False)[0]
        clip = (0.15 + 0.7 * tex).unsqueeze(1).repeat(1, t, 1, 1)
        side, y0 = size // 5, size // 2 - size // 10
        for k in range(t):
            x0 = 4 + 3 * k if i % 2 == 0 else size - 4 - side - 3 * k
            clip[:, k, y0:y0 + side, x0:x0 + side] = torch.tensor([0.95, 0.9, 0.1])[:, None, None]
        clips.append(clip)
    return torch.stack(clips)


def flow_and_alpha(config: str, video: torch.Tensor):
    """(flow, alpha) of a configuration; see the module docstring."""
    bundled = load_flow()
    if config == "cpu32":
        return bundled, resolve_alpha(bundled)
    if config != "same64":
        raise ValueError(f"config must be one of {CONFIGS}, got {config!r}")
    cfg = FlowConfig(**{**bundled.config.__dict__, "resolution": 64})
    flow = AdvFlow(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.03)
    flow.eval()
    _, stats = MotionPreservingGenerator(bundled, alpha=resolve_alpha(bundled), backend="eager")(video)
    _, stats64 = MotionPreservingGenerator(flow, alpha=1.0, backend="eager")(video)
    return flow, alpha_for_preserved_fraction(stats64.z_std, float(stats.preserved.mean()))


def psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    mse = (out.float() - ref.float()).pow(2).mean().item()
    return 10 * torch.log10(torch.tensor(1.0 / mse)).item() if mse > 0 else float("inf")


def compare(config: str, repeats: int = 3) -> list[dict]:
    """One row per precision: mask agreement, PSNR, median seconds and time ratio to fp32."""
    video = moving_clips()
    flow, alpha = flow_and_alpha(config, video)
    gens = {name: MotionPreservingGenerator(flow, alpha=alpha, backend="eager", precision=p, encode_precision=e)
            for name, (p, e) in PRECISIONS.items()}
    outs = {name: gen(video) for name, gen in gens.items()}          # also the warm-up
    times: dict[str, list[float]] = {name: [] for name in gens}
    for _ in range(repeats):                                         # interleaved: fp32, bf16, ... again
        for name, gen in gens.items():
            t0 = time.perf_counter()
            gen(video)
            times[name].append(time.perf_counter() - t0)
    ref, ref_stats = outs["fp32"]
    base = statistics.median(times["fp32"])
    rows = []
    for name, (out, stats) in outs.items():
        sec = statistics.median(times[name])
        rows.append(dict(config=config, precision=name, alpha=alpha,
                         preserved=float(ref_stats.preserved.mean()),
                         mask_agreement=(stats.mask == ref_stats.mask).float().mean().item(),
                         psnr_db=psnr(out, ref), seconds=sec, time_ratio=sec / base))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| flow | precision | mask agreement | PSNR vs fp32 | median/call | time vs fp32 |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        p = "exact" if r["psnr_db"] == float("inf") else f"{r['psnr_db']:.1f} dB"
        lines.append(f"| {r['config']} (alpha {r['alpha']:.3g}, {100 * r['preserved']:.1f}% kept) | {r['precision']} "
                     f"| {r['mask_agreement']:.4f} | {p} | {1e3 * r['seconds']:.0f} ms | {r['time_ratio']:.2f}x |")
    return "\n".join(lines)


@pytest.mark.parametrize("config", CONFIGS)
def test_precision_fidelity(benchmark, config):
    rows = benchmark.pedantic(compare, args=(config, 1), rounds=1, iterations=1)
    benchmark.group = "precision"
    benchmark.extra_info.update(variant="precision", shape=config, rows=rows)
    by = {r["precision"]: r for r in rows}
    assert by["fp32"]["mask_agreement"] == 1.0 and by["fp32"]["psnr_db"] == float("inf")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="bf16 vs fp32 generator: mask agreement, PSNR, time")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per precision (interleaved)")
    args = ap.parse_args()
    print(f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; 2 clips of 3x8x96x96")
    print(markdown([row for config in CONFIGS for row in compare(config, args.repeats)]))
