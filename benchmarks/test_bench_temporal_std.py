"""temporal_std_mask (strategy zero): compiled op vs eager reference vs torch.compile vs a clone.

The clone reads z once and writes z once, as the fused op must: it is the bandwidth limit.
Shapes: (64, 16, 12288) is a batch of 64 paper-size clips (AdvFlow 64x64 latents); (32, 16, 3072)
a batch at the CPU configuration (32x32 flow), which fits in cache.
"""
from __future__ import annotations

import pytest
import torch

from s2vc.engine.suppression import temporal_std_mask

from conftest import DEVICES, ext_ready, sync

SHAPES = [(64, 16, 12288), (32, 16, 3072)]
VARIANTS = ["clone", "eager", "compile", "ext"]


def _reference_core(z: torch.Tensor, alpha: float):
    # the reference's arithmetic without the input checks, for torch.compile
    s = z.std(dim=1)
    mask = s < alpha
    return torch.where(mask.unsqueeze(1), torch.zeros((), dtype=z.dtype, device=z.device), z), mask


_compiled = {}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", VARIANTS)
def test_temporal_std_mask(benchmark, variant, shape, device):
    if variant == "ext" and not ext_ready("temporal_std_mask", device):
        pytest.skip(f"s2vc._C has no {device} temporal_std_mask kernel")
    z = torch.randn(shape, device=device) * torch.rand(shape[0], 1, shape[2], device=device)
    if variant == "clone":
        fn = z.clone
    elif variant == "eager":
        fn = lambda: temporal_std_mask(z, 0.5, backend="eager")  # noqa: E731
    elif variant == "ext":
        fn = lambda: temporal_std_mask(z, 0.5, backend="ext")  # noqa: E731
    else:
        key = device
        if key not in _compiled:
            _compiled[key] = torch.compile(_reference_core, dynamic=False)
        fn = lambda: _compiled[key](z, 0.5)  # noqa: E731
        fn()

    def run():
        out = fn()
        sync(device)
        return out

    benchmark.group = "temporal_std_mask"
    benchmark.extra_info.update(variant=variant, device=device, shape="x".join(map(str, shape)),
                                bytes=2 * z.numel() * z.element_size(), items=shape[0])
    benchmark.pedantic(run, warmup_rounds=2, rounds=10 if z.numel() > 1e7 else 50, iterations=1)
