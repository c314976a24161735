"""What a pretraining run needs to spread over processes (torchrun) and to stop and restart
anywhere: the process group, a sampler that can start mid-epoch, and every RNG's state.

One process (no torchrun) is the world of size 1: every helper here works without a process group.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["setup_distributed", "gather_objects", "barrier", "ResumableSampler", "rng_state", "set_rng_state"]


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun (nccl on CUDA, gloo on CPU);
    returns (rank, world size), (0, 1) for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj, world: int) -> list:
    """``obj`` of every process, in rank order (a list of one without a process group)."""
    if world == 1:
        return [obj]
    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(world: int) -> None:
    """Wait for every process (nothing to wait for in a world of one)."""
    if world > 1:
        dist.barrier()


class ResumableSampler(torch.utils.data.Sampler):
    """A per-epoch permutation (seeded by seed + epoch), sharded over ranks, that can start at
    any batch of the epoch: a resumed run sees exactly the videos the interrupted one would have."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start_batch = 0, 0
        self.batches_per_epoch = n // (batch_size * world)
        if self.batches_per_epoch == 0:
            raise ValueError(f"the dataset ({n} videos) is smaller than one global batch ({batch_size * world}); "
                             "expected at least batch size x processes videos")

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.batches_per_epoch * self.batch_size * self.world]
        mine = perm[self.rank::self.world]
        return iter(mine[self.start_batch * self.batch_size:].tolist())

    def __len__(self):
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


def rng_state() -> dict:
    """Every RNG a training step may draw from (torch, CUDA, numpy, Python), as plain types so
    that a checkpoint holding it loads with ``weights_only=True``."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    _, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": keys.tolist(), "numpy_pos": int(pos),
            "numpy_gauss": [int(has_gauss), float(gauss)], "python": list(py_state),
            "python_gauss": py_gauss, "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` recorded."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"],
                         state["numpy_gauss"][0], state["numpy_gauss"][1]))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
