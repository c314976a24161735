"""Work that must not move a run's random streams: ``isolated_rng``.

For one seed every arm of a comparison must start from the same model, momentum encoder, queue,
training clips and augmentations (a paired comparison of arms is only as good as that). Loading a
flow builds an ``AdvFlow`` (its layers draw their initial weights from torch's RNG before the
checkpoint's replace them), the fit check loads it again, the peers' keys and a generator may
draw too: done inside ``isolated_rng()`` none of it moves the global torch (CPU and CUDA), NumPy
and Python streams that the model and the augmentations (``workers=0``) draw from.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

__all__ = ["isolated_rng"]


@contextlib.contextmanager
def isolated_rng(device: torch.device | str | None = None):
    """Run the block with the global torch / NumPy / Python RNGs restored afterwards to the state
    they had before it (whatever the block drew). ``device``: a CUDA device whose generator is
    restored too (torch's CPU generator always is)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
