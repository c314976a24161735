#!/usr/bin/env python
"""Build a TensorRT engine from an s2vc ONNX export.

    python export/build_trt.py --onnx gen.onnx --out gen.engine [--batch 1,8,16] [--batch-size 32]
        [--frames 2,16,32] [--fp16-check] [--tf32] [--workspace-gb 4] [--timing-cache trt.cache] [--verbose]

--batch-size: the batch the runtime will serve (pretraining's --batch-size): the profile's OPT, for
which TensorRT picks its kernels. --tf32: fp32 convolutions and matmuls may run in TF32 (off by
default: an fp32 export then gives fp32 results).

Writes gen.engine and gen.engine.json (the export's metadata, TensorRT version, precision, profile).
Needs an NVIDIA GPU with its driver and TensorRT 10+ (``pip install tensorrt``); without them it
says so in one line and exits 1. The flags are parsed here; the builder is
``s2vc.export.trt_builder`` (importable, tested).
"""
import os
import sys

if __package__ in (None, ""):
    # Run as a script, Python puts export/ itself first on sys.path, where its modules would
    # shadow installed ones by name; the package is imported as s2vc.export instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, NoReturn, Sequence  # noqa: E402

try:
    from s2vc.engine.exported_meta import MetadataMismatchError, read_onnx_metadata
    from s2vc.export.trt_builder import (DEFAULT_BATCH, DEFAULT_FRAMES, EngineBuildError, TensorRTUnavailable,
                                         build_engine, serving_profile)
except ImportError as exc:  # the message is the point; a traceback would bury it
    sys.exit(f"build_trt: cannot import s2vc ({exc}); install the project first: "
             "pip install -e .")


def parse_range(text: str) -> tuple[int, int, int]:
    """``"N"`` -> (N, N, N); ``"MIN,OPT,MAX"`` -> (MIN, OPT, MAX) with 1 <= MIN <= OPT <= MAX."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected N or MIN,OPT,MAX (positive integers), got {text!r}")
    lo, opt, hi = (int(parts[0]),) * 3 if len(parts) == 1 else tuple(int(p) for p in parts)
    if lo < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    if not lo <= opt <= hi:
        raise argparse.ArgumentTypeError(f"need MIN <= OPT <= MAX, got {lo},{opt},{hi}")
    return lo, opt, hi


DESCRIPTION = "Build a TensorRT engine from an s2vc ONNX export (needs an NVIDIA GPU and TensorRT 10+)."


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build_trt.py", description=DESCRIPTION)
    return add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """This script's flags on ``p``; ``s2vc export trt`` takes the same ones."""
    p.add_argument("--onnx", required=True, type=Path, help="the ONNX model (from s2vc export)")
    p.add_argument("--out", required=True, type=Path, help="the engine file to write (and OUT.json beside it)")
    p.add_argument("--batch", type=parse_range, default=DEFAULT_BATCH, metavar="MIN,OPT,MAX",
                   help="batch sizes of the optimisation profile (default %(default)s); N for a fixed size")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="the batch the engine will serve: the profile's OPT batch (MIN/MAX of --batch widened "
                        "to include it); default: the OPT of --batch")
    p.add_argument("--frames", type=parse_range, default=DEFAULT_FRAMES, metavar="MIN,OPT,MAX",
                   help="frames per clip of the profile (default %(default)s; at least 2)")
    p.add_argument("--fp16-check", action="store_true",
                   help="refuse an ONNX model that is not an fp16 export (engines are strongly typed: "
                        "precision comes from the graph, so export with fp16=True)")
    p.add_argument("--tf32", action="store_true",
                   help="let fp32 convolutions and matmuls run in TF32 (faster on Ampere+, ~1e-3 relative error)")
    p.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit in GiB (default 4)")
    p.add_argument("--timing-cache", type=Path, default=None,
                   help="TensorRT timing cache file: read when it exists, written after the build")
    p.add_argument("--verbose", action="store_true", help="show TensorRT's info messages")
    return p


def check_args(args: argparse.Namespace, error: Callable[[str], NoReturn]) -> dict:
    """Everything that can be checked without TensorRT (``error(message)`` raises); returns the
    ONNX metadata."""
    if not args.onnx.is_file():
        error(f"--onnx: file not found: {args.onnx}")
    if args.frames[0] < 2:
        error(f"--frames: the temporal STD needs at least 2 frames, got min {args.frames[0]}")
    if args.batch_size is not None and args.batch_size < 1:
        error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workspace_gb <= 0:
        error(f"--workspace-gb must be > 0, got {args.workspace_gb}")
    if args.out.resolve() == args.onnx.resolve():
        error("--out must not be the ONNX file")
    try:
        meta = read_onnx_metadata(args.onnx)
    except (MetadataMismatchError, ValueError) as exc:
        error(f"--onnx: {exc}")
    if args.fp16_check and meta.get("precision") != "fp16":
        error(f"--fp16-check: {args.onnx} is an {meta.get('precision')} export; TensorRT engines are "
              "strongly typed, so an fp16 engine needs an fp16 export (export with fp16=True)")
    return meta


def build_from_args(args: argparse.Namespace) -> Path:
    """``build_engine`` with the checked flags' values: the engine file written."""
    batch = serving_profile(args.batch, args.batch_size)
    return build_engine(args.onnx, args.out, batch=batch, frames=args.frames, workspace_gb=args.workspace_gb,
                        tf32=args.tf32, timing_cache=args.timing_cache, verbose=args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    try:
        args = parser.parse_args(argv)
        check_args(args, parser.error)
    except SystemExit as exc:          # argparse's usage errors (2) and --help (0)
        return int(exc.code or 0)
    try:
        path = build_from_args(args)
    except TensorRTUnavailable as exc:
        print(f"build_trt: cannot build a TensorRT engine here: {exc}", file=sys.stderr)
        return 1
    except EngineBuildError as exc:
        print(f"build_trt: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:             # an unwritable --out or --timing-cache folder, a full disk
        print(f"build_trt: cannot write the engine files: {exc}", file=sys.stderr)
        return 1
    print(f"build_trt: wrote {path} and {path.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

