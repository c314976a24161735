"""Benchmarks (pytest-benchmark). Run: ``python -m pytest benchmarks --benchmark-json out.json``
then ``python scripts/bench_table.py out.json`` for the side-by-side table with ratios.

Each benchmark's ``extra_info`` records what the table needs (variant, shape, bytes moved, items
per call). Devices: the kernel and generator benchmarks are parametrised over "cpu" and "cuda" (cuda
skips without a GPU); the mirror and pretraining-step benchmarks run on the CPU.
"""
from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device"))]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def ext_ready(op: str, device: str) -> bool:
    from s2vc.engine import extension as ext
    return ext.ext_has_kernel(op, device)
