#!/usr/bin/env python
"""Stage 2 of scripts/gpu_check.sh: GPU timings, written as two small files.

    python scripts/gpu_bench.py --out OUT [--parts ops,generator,pretrain] [--repeats 10] [--limit-s 420]

ops        the compiled ops against their PyTorch reference: temporal_std_mask at the cpu32 (D = 3072)
           and paper64 (D = 12288) latent sizes, affine_coupling_inverse at a 64² flow's conv layer;
           float32, bfloat16, float16
generator  every generator backend of ``s2vc bench`` (eager, ext, compile, torchscript, onnxruntime)
           at the cpu32 and paper64 flows, 8 clips of 3x16x112², the generator's precision
           fp32, bf16 (its decode in bf16 autocast, channels_last) and bf16-all (the encode too);
           for the bf16 rows also the fidelity against fp32 eager (mask agreement, PSNR)
pretrain   one pretraining step per arm (the pretraining benchmark's config: synthetic set, 16x64²
           clips, batch 16, small 3D CNN) on the GPU
mirror     ``generate_mirror`` of --mirror-clips AVI clips (MPEG-4 Part 2, 320x240, 40 frames, like
           UCF101's; a blocky textured scene panned under a moving square, written here) with the
           bundled flow on the GPU, decoded at 128, windows of 16 at stride 2: the serial loop
           (workers 0) against the pipeline (``default_workers``), lossless and residual, alternating
           twice (medians); frames/s, pipelined / serial, and whether both wrote the same bytes

Writes OUT/bench.json (one record per row: a few KB) and OUT/bench.md (the tables). A row that
cannot run here says why in its note; the script stops starting rows at --limit-s seconds, so the
files come back even when the call is cut. Timings: median of --repeats calls after a warm-up,
each synchronised. Run from the repository root on a machine with a GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# the generator rows: name -> (precision, encode_precision) of MotionPreservingGenerator
PRECISIONS = {"fp32": ("fp32", "fp32"), "bf16": ("bf16", "fp32"), "bf16-all": ("bf16", "bf16")}
PRETRAIN_ARMS = ("moco", "s2vc", "s2vc-keys", "tfd", "be", "fame")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="GPU timings of s2vc (stage 2 of scripts/gpu_check.sh)")
    p.add_argument("--out", type=Path, required=True, help="folder for bench.json and bench.md")
    p.add_argument("--parts", default="ops,generator,pretrain,mirror",
                   help="comma-separated: ops, generator, pretrain, mirror")
    p.add_argument("--mirror-clips", type=int, default=96, help="clips of the mirror part's set")
    p.add_argument("--mirror-rounds", type=int, default=2, help="serial / pipelined alternations of the mirror part")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per row (median reported)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per generator call")
    p.add_argument("--limit-s", type=float, default=420.0, help="start no row after this many seconds")
    p.add_argument("--device", default="cuda", help="the device to time (default cuda)")
    return p


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() > self.end


def median_ms(fn, repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _note(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:200]


# --------------------------------------------------------------------------------------- ops
def bench_ops(args, device, deadline) -> list[dict]:
    from s2vc.engine.ops import affine_coupling_inverse
    from s2vc.engine.suppression import temporal_std_mask

    rows = []
    g = torch.Generator(device=device).manual_seed(0)
    for shape_name, shape in (("cpu32 z 8x16x3072", (8, 16, 3072)), ("paper64 z 8x16x12288", (8, 16, 12288))):
        for dname, dtype in DTYPES.items():
            z = torch.randn(shape, device=device, generator=g).to(dtype)
            for backend in ("eager", "ext"):
                row = dict(part="ops", op="temporal_std_mask", shape=shape_name, dtype=dname, backend=backend)
                rows.append(row)
                if deadline.passed():
                    row["note"] = "not run: time limit"
                    continue
                try:
                    with torch.no_grad():
                        row["ms"] = median_ms(lambda: temporal_std_mask(z, 0.5, "zero", backend=backend,
                                                                        validate=False), args.repeats, device)
                except Exception as exc:  # noqa: BLE001 - a row that cannot run says why
                    row["note"] = _note(exc)
    v_shape, raw_shape = (128, 6, 32, 32), (128, 12, 32, 32)
    for dname, dtype in DTYPES.items():
        v = torch.randn(v_shape, device=device, generator=g).to(dtype)
        raw = torch.randn(raw_shape, device=device, generator=g).to(dtype)
        for backend in ("eager", "ext"):
            row = dict(part="ops", op="affine_coupling_inverse", shape="128x6x32x32", dtype=dname, backend=backend)
            rows.append(row)
            if deadline.passed():
                row["note"] = "not run: time limit"
                continue
            try:
                with torch.no_grad():
                    row["ms"] = median_ms(lambda: affine_coupling_inverse(v, raw, 2.0, backend=backend),
                                          args.repeats, device)
            except Exception as exc:  # noqa: BLE001
                row["note"] = _note(exc)
    return rows


# --------------------------------------------------------------------------------- generator
def _export_onnx(*a, **kw):
    from s2vc.export.onnx_export import export_generator_onnx
    return export_generator_onnx(*a, **kw)


def _fidelity(flow32, flow, alpha, video, precision: str, encode_precision: str) -> dict:
    """Mask agreement and PSNR (peak 1) of the generator at this precision against fp32 eager."""
    from s2vc.engine.generator import MotionPreservingGenerator
    with torch.no_grad():
        ref, ref_stats = MotionPreservingGenerator(flow32, alpha=alpha, backend="eager", seed=0)(video)
        out, stats = MotionPreservingGenerator(flow, alpha=alpha, backend="eager", seed=0, precision=precision,
                                               encode_precision=encode_precision)(video)
    mse = (out.float() - ref.float()).pow(2).mean().item()
    return {"mask_agreement": (stats.mask == ref_stats.mask).float().mean().item(),
            "psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")}


def bench_generator(args, device, deadline, workdir: Path) -> list[dict]:
    from s2vc.engine.bench import BACKENDS, backend_runner, bench_flow
    from s2vc.engine.suppression import resolve_alpha

    rows = []
    for config in ("cpu32", "paper64"):
        flow32 = bench_flow(config).to(device)
        alpha = resolve_alpha(flow32)
        video = torch.rand(args.batch_size, 3, 16, 112, 112, device=device,
                           generator=torch.Generator(device=device).manual_seed(0))
        for dname, (precision, encode_precision) in PRECISIONS.items():
            # a fresh flow per precision: channels_last changes its conv weights' layout
            flow = flow32 if dname == "fp32" else bench_flow(config).to(device)
            if dname != "fp32" and not deadline.passed():
                fid = dict(part="fidelity", config=config, dtype=dname, batch=args.batch_size)
                try:
                    fid.update(_fidelity(flow32, flow, alpha, video, precision, encode_precision))
                except Exception as exc:  # noqa: BLE001
                    fid["note"] = _note(exc)
                rows.append(fid)
            for backend in BACKENDS:
                row = dict(part="generator", config=config, dtype=dname, backend=backend, batch=args.batch_size)
                rows.append(row)
                if deadline.passed():
                    row["note"] = "not run: time limit"
                    continue
                try:
                    exporter = _export_onnx if dname == "fp32" else None
                    run = backend_runner(backend, flow, alpha, video, workdir, exporter, precision, encode_precision)
                    if isinstance(run, str):
                        row["note"] = "skipped: " + run[:180]
                        continue
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    with torch.no_grad():
                        ms = median_ms(lambda: run(video), args.repeats, device)
                    row.update(ms=ms, clips_per_s=args.batch_size / (ms / 1e3))
                    if device.type == "cuda":
                        row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
                except Exception as exc:  # noqa: BLE001
                    row["note"] = _note(exc)
        rows.append(dict(part="generator", config=config, dtype="-", backend="tensorrt",
                         note="not timed here: tests/test_tensorrt.py builds and runs engines"))
    return rows


# ---------------------------------------------------------------------------------- pretrain
def bench_pretrain(args, device, deadline, workdir: Path) -> list[dict]:
    from s2vc.training.data.synthetic import SyntheticSet
    from s2vc.training.pretrain.loop import PretrainConfig, setup_run, time_steps
    from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror

    synthetic = SyntheticSet(classes=6, train_per_class=8, test_per_class=1)
    clip = dict(frames=16, stride=2)
    root, keys = workdir / "set", workdir / "mirror"
    rows = [dict(part="pretrain", arm=arm, batch=16) for arm in PRETRAIN_ARMS]
    if deadline.passed():
        for row in rows:
            row["note"] = "not run: time limit"
        return rows
    try:
        generate_mirror(MirrorConfig(dataset="synthetic", root=str(root), out=str(keys), synthetic=synthetic,
                                     decode_size=None, progress=False, **clip))
    except Exception as exc:  # noqa: BLE001 - e.g. PyAV missing: every arm says so
        for row in rows:
            row["note"] = "no synthetic set: " + _note(exc)
        return rows
    for row in rows:
        arm = row["arm"]
        if deadline.passed():
            row["note"] = "not run: time limit"
            continue
        try:
            cfg = PretrainConfig(out=str(workdir / arm), mode=arm.removesuffix("-keys"), dataset="synthetic",
                                 root=str(root), synthetic=synthetic, size=64, batch_size=16, queue=64,
                                 moco_m=0.99, cache_videos=True, workers=0, no_progress=True, device=str(device),
                                 keys=str(keys) if arm.endswith("-keys") else None, **clip)
            run = setup_run(cfg)
            time_steps(run, 2)                       # warm-up: allocator, cuDNN's algorithm search
            records = time_steps(run, max(3, args.repeats // 2))
            for key in ("t_data", "t_gen", "t_model"):
                row[key + "_ms"] = 1e3 * statistics.median(r[key] for r in records)
            row["ms"] = row["t_data_ms"] + row["t_gen_ms"] + row["t_model_ms"]
        except Exception as exc:  # noqa: BLE001
            row["note"] = _note(exc)
    return rows


def _mirror_clips(folder: Path, clips: int, frames: int = 40) -> None:
    """``clips`` MPEG-4 AVIs at 320x240, 25 fps (UCF101's format) in ``folder``: a blocky textured
    scene panned a pixel a frame, with a square moving across it (the content FFV1 and the decoder
    see; a fixed seed)."""
    from fractions import Fraction

    import av
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(clips):
        scene = np.kron(rng.integers(0, 256, (31, 46, 3), dtype=np.uint8), np.ones((8, 8, 1), dtype=np.uint8))
        with av.open(str(folder / f"v_clip_g{i:03d}.avi"), "w") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            stream.codec_context.bit_rate = 1_000_000
            for t in range(frames):
                frame = np.ascontiguousarray(scene[4:244, t:t + 320])
                y, x = 60 + (t * 3) % 120, (i * 17 + t * 5) % 280
                frame[y:y + 40, x:x + 40] = (255, 64, 0)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))


def bench_mirror(args, device, deadline, workdir: Path) -> list[dict]:
    from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror
    from s2vc.training.pretrain.mirror_pipeline import default_workers

    workers = (0, max(1, default_workers(device)))      # the pipeline: its default on a GPU
    rows = {(storage, w): dict(part="mirror", storage=storage, workers=w, clips=args.mirror_clips)
            for storage in ("lossless", "residual") for w in workers}
    try:
        _mirror_clips(workdir / "set" / "clips", args.mirror_clips)
    except Exception as exc:  # noqa: BLE001 - e.g. PyAV missing: every row says so
        for row in rows.values():
            row["note"] = "no clips: " + _note(exc)
        return list(rows.values())
    fps: dict[tuple, list[float]] = {}
    for round_ in range(args.mirror_rounds):    # serial and pipelined alternate: a load change hits both
        for (storage, w), row in rows.items():
            if deadline.passed():
                row.setdefault("note", "not run: time limit" if round_ == 0 else "one round: time limit")
                continue
            out = workdir / f"{storage}-{w}-{round_}"
            try:
                report = generate_mirror(MirrorConfig(
                    dataset="folder", root=str(workdir / "set"), out=str(out), frames=16, stride=2,
                    decode_size=128, batch=args.batch_size, progress=False, storage=storage, workers=w,
                    device=str(device)))
                fps.setdefault((storage, w), []).append(report.frames / report.seconds)
            except Exception as exc:  # noqa: BLE001
                row["note"] = _note(exc)
    for (storage, w), row in rows.items():
        if fps.get((storage, w)):
            row["frames_per_s"] = statistics.median(fps[storage, w])
        serial = fps.get((storage, 0))
        if w and serial and fps.get((storage, w)):
            row["vs_serial"] = row["frames_per_s"] / statistics.median(serial)
            a, b = workdir / f"{storage}-0-0", workdir / f"{storage}-{w}-0"
            files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "manifest.json"
                           and ".parts" not in p.parts)
            row["same_bytes"] = "yes" if all((b / f).is_file() and (a / f).read_bytes() == (b / f).read_bytes()
                                             for f in files) else "no"
    return list(rows.values())


# ---------------------------------------------------------------------------------- tables
def _cell(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if isinstance(row.get(key), (int, float)) else "-"


def markdown(rows: list[dict], header: str) -> str:
    out = [header, ""]
    sections = {
        "ops": (["op", "shape", "dtype", "backend"], [("ms", ".3f")]),
        "generator": (["config", "dtype", "backend", "batch"], [("ms", ".1f"), ("clips_per_s", ".1f"), ("peak_mb", ".0f")]),
        "fidelity": (["config", "dtype", "batch"], [("mask_agreement", ".4f"), ("psnr_db", ".1f")]),
        "pretrain": (["arm", "batch"], [("ms", ".1f"), ("t_data_ms", ".1f"), ("t_gen_ms", ".1f"), ("t_model_ms", ".1f")]),
        "mirror": (["storage", "workers", "clips", "same_bytes"], [("frames_per_s", ".0f"), ("vs_serial", ".2f")]),
    }
    for part, (keys, values) in sections.items():
        part_rows = [r for r in rows if r.get("part") == part]
        if not part_rows:
            continue
        cols = keys + [v for v, _ in values] + ["note"]
        out += [f"### {part}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in part_rows:
            cells = [str(r.get(k, "-")) for k in keys] + [_cell(r, v, f) for v, f in values] + [r.get("note", "")]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: torch sees no GPU; nothing to time", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = Deadline(args.limit_s)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"ops", "generator", "pretrain", "mirror"}
    if unknown:
        print(f"gpu_bench: unknown parts {sorted(unknown)}; choose from ops, generator, pretrain, mirror",
              file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = (f"## s2vc GPU benchmarks on {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
              f"median of {args.repeats} calls; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
              f"cudnn {torch.backends.cudnn.allow_tf32}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="s2vc_gpu_bench_") as tmp:
        for part in parts:
            t0 = time.monotonic()
            fn = {"ops": lambda: bench_ops(args, device, deadline),
                  "generator": lambda: bench_generator(args, device, deadline, Path(tmp)),
                  "pretrain": lambda: bench_pretrain(args, device, deadline, Path(tmp) / "pretrain"),
                  "mirror": lambda: bench_mirror(args, device, deadline, Path(tmp) / "mirror")}[part]
            try:
                rows += fn()
            except Exception as exc:  # noqa: BLE001 - one part failing leaves the others
                rows.append(dict(part=part, note="part failed: " + _note(exc)))
            print(f"gpu_bench: {part} in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
            # written after every part: a call cut by its time limit still returns what was measured
            write_atomically(args.out / "bench.json", json.dumps({"header": header, "rows": rows}, indent=1))
            write_atomically(args.out / "bench.md", markdown(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
