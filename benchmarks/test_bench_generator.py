"""The whole generator, video in -> motion-preserved video out: eager vs ext vs torch.compile.

Configurations:
  cpu32    the bundled 32x32 flow, 8 clips of 3x16x112x112 (what CPU-sized runs use)
  paper64  AdvFlow's ImageNet-64 flow (random weights: speed does not depend on them), clips of
           3x16x112x112, batch 8 on a GPU; batch 1 on the CPU, where one call takes seconds
Reported per call: clips/s (items), and on CUDA the peak memory allocated.
"""
from __future__ import annotations

import pytest
import torch

from s2vc.engine.bench import bench_flow
from s2vc.engine.generator import MotionPreservingGenerator

from conftest import DEVICES, ext_ready, sync

VARIANTS = ["eager", "ext", "compile"]
_flows = {}


def _flow(config: str):
    if config not in _flows:
        _flows[config] = bench_flow(config)
    return _flows[config]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", ["cpu32", "paper64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_generator(benchmark, variant, config, device):
    if variant == "ext" and not (ext_ready("temporal_std_mask", device) and ext_ready("affine_coupling_inverse", device)):
        pytest.skip(f"s2vc._C lacks {device} kernels")
    batch = 1 if (config == "paper64" and device == "cpu") else 8
    flow = _flow(config)
    gen = MotionPreservingGenerator(flow, backend=variant).to(device)   # alpha: the flow's (resolve_alpha)
    video = torch.rand(batch, 3, 16, 112, 112, device=device)
    gen(video)                                     # warm-up (and compilation for "compile")
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run():
        out = gen(video)
        sync(device)
        return out

    benchmark.group = "generator"
    rounds = 2 if (config == "paper64" and device == "cpu") else 5
    benchmark.pedantic(run, warmup_rounds=1, rounds=rounds, iterations=1)
    benchmark.extra_info.update(variant=variant, device=device, shape=f"{config} b{batch}", items=batch)
    if device == "cuda":
        benchmark.extra_info["peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
