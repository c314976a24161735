"""``s2vc bench``: time the generator's backends on this machine and print the table
(``s2vc.engine.bench``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2vc.commands.common import add_device_argument, deprecated_alias

HELP = "time the generator's backends on this machine and print the table"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from s2vc.engine.bench import BACKENDS, CONFIGS

    p.add_argument("--preset", choices=(*CONFIGS, "all"), default="cpu32",
                   help="preset of flow and clip sizes to time (all: every preset)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="generator backends to time")
    deprecated_alias(p, "--batch-size", old="--batch", dest="batch", type=int, default=None,
                     help="clips per call (default 8; paper64 on CPU: 1)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    deprecated_alias(p, "--decode-size", old="--size", dest="size", type=int, default=112,
                     help="frame side in pixels (the generator's input)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per backend (the median is reported)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="dtype of the generator's decode (autocast; fp16 on CUDA only)")
    add_device_argument(p, "the backends run on")
    return p


def legacy_argv(argv: list[str]) -> list[str]:
    """``bench --config NAME`` (a preset's name, before ``--config`` meant a TOML file in every
    command) becomes ``--preset NAME``, with one deprecation line."""
    from s2vc.engine.bench import CONFIGS

    out = list(argv)
    for i, token in enumerate(out):
        value = out[i + 1] if token == "--config" and i + 1 < len(out) else (
            token.split("=", 1)[1] if token.startswith("--config=") else None)
        if value in (*CONFIGS, "all") and not Path(value).is_file():
            print(f"s2vc: bench --config {value} is deprecated, use --preset {value}", file=sys.stderr)
            out[i:i + (2 if token == "--config" else 1)] = ["--preset", value]
            break
    return out


def _export_onnx(*args, **kwargs):
    """``export_generator_onnx``, imported when the onnxruntime row needs it (an ImportError
    then skips that row with its reason)."""
    from s2vc.export.onnx_export import export_generator_onnx
    return export_generator_onnx(*args, **kwargs)


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.bench import CONFIGS, format_table, run_bench

    configs = list(CONFIGS) if args.preset == "all" else [args.preset]
    rows = run_bench(configs, args.backends, batch=args.batch, frames=args.frames, size=args.size,
                     repeats=args.repeats, device=args.device, export_onnx=_export_onnx, precision=args.precision)
    print(format_table(rows, args.backends, frames=args.frames, size=args.size, device=args.device,
                       precision=args.precision))
    return 0
