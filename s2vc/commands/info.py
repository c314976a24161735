"""``s2vc info``: what this machine can run, on one screen, for bug reports
(``s2vc.engine.environment_report``)."""
from __future__ import annotations

import argparse

HELP = "torch/CUDA versions, GPUs, compiled kernels, ONNX Runtime and TensorRT, what 'auto' runs"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--device", default=None,
                   help="say what backend 'auto' runs on this device only (default: cpu, and cuda when available)")
    return p


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.environment_report import environment_lines

    print("\n".join(environment_lines(args.device)))
    return 0
