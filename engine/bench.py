"""The generator's backends side by side on this machine (the library behind ``s2vc bench``).

For each configuration (cpu32: the bundled 32x32 flow; paper64: AdvFlow's 64x64 flow with random
weights, speed does not depend on them), clips float (B, 3, T, S, S) in [0, 1], every backend that
can run here is timed on the same input (median of ``repeats`` calls after a warm-up) and checked
against the first backend. A row gives seconds per call, clips/s, the speed-up over the first
backend and, on CUDA, peak memory.

    rows = run_bench(["cpu32"], ["eager", "ext"], frames=16, size=112, device="cpu")
    print(format_table(rows, ["eager", "ext"], frames=16, size=112, device="cpu"))

The "onnxruntime" backend runs an ONNX export, which the engine does not make itself (exporting
is ``s2vc.export``'s job): pass ``export_onnx`` (``export_generator_onnx``), else it is skipped.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .checkpoint import load_flow
from .flow import AdvFlow, FlowConfig
from .generator import MotionPreservingGenerator
from .suppression import resolve_alpha

BACKENDS = ("eager", "ext", "compile", "torchscript", "onnxruntime")
CONFIGS = ("cpu32", "paper64")

# export_onnx(flow, path, *, alpha, strategy, height, width) -> path: how the onnxruntime row
# gets its model (s2vc.export.onnx_export.export_generator_onnx)
OnnxExporter = Callable[..., Path]


def bench_flow(config: str) -> AdvFlow:
    """The flow of a benchmark configuration: "cpu32" the bundled one, "paper64" AdvFlow's
    ImageNet-64 flow with random weights (speed does not depend on them), in eval mode."""
    if config not in CONFIGS:
        raise ValueError(f"benchmark configuration must be one of {CONFIGS}, got {config!r}")
    if config == "cpu32":
        return load_flow()
    flow = AdvFlow(FlowConfig())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.03)
    return flow.eval()


def default_batch(config: str, device: torch.device) -> int:
    """Clips per call: 8, but 1 for paper64 on the CPU, where one call takes seconds."""
    return 1 if config == "paper64" and device.type == "cpu" else 8


def backend_runner(backend: str, flow, alpha: float, video: torch.Tensor, workdir: Path,
                   export_onnx: OnnxExporter | None = None, precision: str = "fp32",
                   encode_precision: str = "fp32") -> Callable[[torch.Tensor], torch.Tensor] | str:
    """A callable video -> out (both float (B, 3, T, H, W)) for ``backend``, or a string saying
    why it cannot run here. ``precision`` / ``encode_precision``: the generator's autocast dtypes
    of its decode / encode."""
    if backend not in BACKENDS:
        raise ValueError(f"bench backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "ext":
        why_not = MotionPreservingGenerator(flow, alpha=alpha, backend="eager").ext_unusable_reason(video)
        if why_not is not None:
            return why_not
    if backend == "onnxruntime":
        if (precision, encode_precision) != ("fp32", "fp32"):
            return f"precision {precision}/{encode_precision} is the generator's; the ONNX model runs in its exported dtype"
        if export_onnx is None:
            return "no ONNX exporter given (s2vc.export makes the model)"
        try:
            from .runtime_onnx import OnnxRuntimeGenerator
            path = workdir / f"gen_{flow.config.resolution}.onnx"
            export_onnx(flow, path, alpha=alpha, strategy="zero", height=video.shape[3], width=video.shape[4])
        except ImportError as e:
            return f"ONNX export/runtime not available ({e})"
        ort = OnnxRuntimeGenerator(path, flow, alpha=alpha, strategy="zero")
        return lambda v: ort(v)[0]
    if "fp16" in (precision, encode_precision) and video.device.type != "cuda":
        return "precision fp16 runs on CUDA only"
    gen = MotionPreservingGenerator(flow, alpha=alpha, backend=backend, precision=precision,
                                    encode_precision=encode_precision).to(video.device)
    return lambda v: gen(v)[0]


def time_call(fn: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn(video)`` after one warm-up (CUDA synchronised)."""
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


@dataclass
class BenchRow:
    """One backend of one configuration: ``seconds`` per call (None: skipped, ``note`` says why),
    ``speedup`` over the first backend timed, ``peak_mb`` on CUDA, ``max_err`` the largest
    |out - out of the first backend|."""

    config: str
    batch: int
    backend: str
    seconds: float | None = None
    speedup: float | None = None
    peak_mb: float | None = None
    max_err: float | None = None
    note: str = ""


def bench_config(config: str, backends: Sequence[str], *, batch: int | None = None, frames: int = 16,
                 size: int = 112, repeats: int = 5, device: torch.device, workdir: Path,
                 export_onnx: OnnxExporter | None = None, precision: str = "fp32") -> list[BenchRow]:
    """Time every backend on one configuration's flow and one random input (seeded)."""
    flow = bench_flow(config).to(device)
    alpha = resolve_alpha(flow)
    batch = batch or default_batch(config, device)
    video = torch.rand(batch, 3, frames, size, size, device=device,
                       generator=torch.Generator(device=device).manual_seed(0))
    rows, reference, base = [], None, None
    for backend in backends:
        run = backend_runner(backend, flow, alpha, video, workdir, export_onnx, precision)
        if isinstance(run, str):
            rows.append(BenchRow(config, batch, backend, note=f"skipped: {run}"))
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = time_call(run, video, repeats)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
        with torch.no_grad():
            out = run(video)
        reference = out if reference is None else reference
        base = base or seconds
        err = (out.float() - reference.float()).abs().max().item()
        rows.append(BenchRow(config, batch, backend, seconds, base / seconds, peak, err))
    return rows


def run_bench(configs: Sequence[str], backends: Sequence[str], *, batch: int | None = None, frames: int = 16,
              size: int = 112, repeats: int = 5, device: str | torch.device | None = None,
              export_onnx: OnnxExporter | None = None, precision: str = "fp32") -> list[BenchRow]:
    """``bench_config`` for each configuration; device None: cuda when available, else cpu."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        return [row for config in configs
                for row in bench_config(config, backends, batch=batch, frames=frames, size=size, repeats=repeats,
                                        device=device, workdir=Path(tmp), export_onnx=export_onnx,
                                        precision=precision)]


def format_table(rows: Sequence[BenchRow], backends: Sequence[str], *, frames: int, size: int,
                 device: str | torch.device | None = None, precision: str = "fp32") -> str:
    """The table ``s2vc bench`` prints: a heading line naming the machine, then one line a row."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    first = backends[0]
    hdr = ("config", "batch", "backend", "median/call", "clips/s", f"vs {first}", "peak MB", "note")
    cells = [hdr]
    for r in rows:
        if r.seconds is None:
            cells.append((r.config, r.batch, r.backend, "-", "-", "-", "-", r.note))
            continue
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "-"
        cells.append((r.config, r.batch, r.backend, f"{r.seconds * 1e3:.1f} ms", f"{r.batch / r.seconds:.2f}",
                      f"{r.speedup:.2f}x", peak, r.note or f"max |out - {first}| {r.max_err:.1e}"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"s2vc bench on {name}; torch {torch.__version__}; clips 3x{frames}x{size}x{size}; "
             f"precision {precision}"]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(hdr))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(c, widths)) for c in cells]
    return "\n".join(lines)
