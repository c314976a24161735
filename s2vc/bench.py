"""``s2vc bench``: the generator's backends side by side on this machine.

For each configuration (cpu32: the bundled 32x32 flow; paper64: AdvFlow's 64x64 flow with random
weights, speed does not depend on them), clips of 3 x 16 x 112 x 112, every backend that can run
here is timed on the same input (median of ``--repeats`` calls after a warm-up) and checked
against eager. The table gives clips/s, the speed-up over eager and, on CUDA, peak memory.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

BACKENDS = ("eager", "ext", "compile", "torchscript", "onnxruntime")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", choices=("cpu32", "paper64", "all"), default="cpu32")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--batch", type=int, default=None, help="clips per call (default 8; paper64 on CPU: 1)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    return p


def bench_flow(config: str):
    """The flow of a benchmark configuration: "cpu32" the bundled one, "paper64" AdvFlow's
    ImageNet-64 flow with random weights (speed does not depend on them), in eval mode."""
    from s2vc.engine import AdvFlow, FlowConfig, load_flow
    if config == "cpu32":
        return load_flow()
    flow = AdvFlow(FlowConfig())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.03)
    return flow.eval()


def _runner(backend: str, flow, alpha: float, video: torch.Tensor, workdir: Path):
    """A callable video -> out for ``backend``, or a string saying why it cannot run here."""
    from s2vc.engine.generator import MotionPreservingGenerator
    if backend == "ext":
        why_not = MotionPreservingGenerator(flow, alpha=alpha, backend="eager").ext_unusable_reason(video)
        if why_not is not None:
            return why_not
    if backend == "onnxruntime":
        try:
            from s2vc.export.onnx_export import export_generator_onnx
            from s2vc.engine.runtime_onnx import OnnxRuntimeGenerator
        except ImportError as e:
            return f"ONNX export/runtime not available ({e})"
        path = workdir / f"gen_{flow.config.resolution}.onnx"
        export_generator_onnx(flow, path, alpha=alpha, strategy="zero", height=video.shape[3], width=video.shape[4])
        ort = OnnxRuntimeGenerator(path, flow, alpha=alpha, strategy="zero")
        return lambda v: ort(v)[0]
    gen = MotionPreservingGenerator(flow, alpha=alpha, backend=backend).to(video.device)
    return lambda v: gen(v)[0]


def _time(fn, video, repeats: int) -> float:
    sync = torch.cuda.synchronize if video.is_cuda else (lambda: None)
    fn(video)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(video)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    configs = ["cpu32", "paper64"] if args.config == "all" else [args.config]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            flow = bench_flow(config).to(device)
            from s2vc.engine.suppression import resolve_alpha
            alpha = resolve_alpha(flow)
            batch = args.batch or (1 if config == "paper64" and device.type == "cpu" else 8)
            video = torch.rand(batch, 3, args.frames, args.size, args.size, device=device,
                               generator=torch.Generator(device=device).manual_seed(0))
            reference = None
            base = None
            for backend in args.backends:
                run = _runner(backend, flow, alpha, video, Path(tmp))
                if isinstance(run, str):
                    rows.append((config, batch, backend, "-", "-", "-", "-", f"skipped: {run}"))
                    continue
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds = _time(run, video, args.repeats)
                peak = f"{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f}" if device.type == "cuda" else "-"
                with torch.no_grad():
                    out = run(video)
                if reference is None:
                    reference = out
                err = (out.float() - reference.float()).abs().max().item()   # against the first backend
                base = base or seconds
                rows.append((config, batch, backend, f"{seconds * 1e3:.1f} ms", f"{batch / seconds:.2f}",
                             f"{base / seconds:.2f}x", peak, f"max |out - {args.backends[0]}| {err:.1e}"))
    hdr = ("config", "batch", "backend", "median/call", "clips/s", f"vs {args.backends[0]}", "peak MB", "note")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"s2vc bench on {name}; torch {torch.__version__}; clips 3x{args.frames}x{args.size}x{args.size}")
    widths = [max(len(str(r[i])) for r in (hdr, *rows)) for i in range(len(hdr))]
    for r in (hdr, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return 0
