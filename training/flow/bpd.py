"""Bits/dim of a flow on fixed views, and what the fit's history and the fit check read of them:
the scoring both ``training.py`` (held-out figures per epoch) and ``fit_check.py`` (the check)
use, in a module of its own so that neither imports the other to get it."""
from __future__ import annotations

import math

import torch

from s2vc.engine.flow import AdvFlow

__all__ = ["view_bpds", "evaluate_bpd", "mean_and_se", "heldout_bpd"]


def view_bpds(flow: AdvFlow, views: torch.Tensor, batch_size: int = 64, seed: int = 1234) -> torch.Tensor:
    """Bits/dim float64 (N,) of each of the fixed views float (N, 3, r, r) in [0, 1], with fixed
    dequantisation noise (comparable across epochs and flows)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(views.shape, generator=g)
    was_training = flow.training
    flow.eval()
    out = []
    with torch.no_grad():
        for i in range(0, views.shape[0], batch_size):
            v = views[i:i + batch_size].to(next(flow.parameters()).device)
            n = noise[i:i + batch_size].to(v.device)
            out.append(flow.nll_bits_per_dim(v, noise=n).double().cpu())
    flow.train(was_training)
    return torch.cat(out)


def evaluate_bpd(flow: AdvFlow, views: torch.Tensor, batch_size: int = 64, seed: int = 1234) -> float:
    """Mean bits/dim of fixed views float (N, 3, r, r) in [0, 1] (``view_bpds``)."""
    return view_bpds(flow, views, batch_size, seed).sum().item() / views.shape[0]


def mean_and_se(values: torch.Tensor, groups: torch.Tensor | None) -> tuple[float, float, int]:
    """(mean of ``values`` (N,), its standard error counted over groups, number of groups): views
    of one video are alike, so the spread that matters is between the videos' means (SE = their
    sample SD / sqrt(groups); 0 with one group)."""
    groups = torch.zeros(len(values), dtype=torch.long) if groups is None else groups
    means = torch.stack([values[groups == g].mean() for g in groups.unique()])
    se = float(means.std(unbiased=True) / math.sqrt(len(means))) if len(means) > 1 else 0.0
    return float(values.mean()), se, len(means)


def heldout_bpd(history: list[dict]) -> float | None:
    """The latest held-out bits/dim of a training history (None when none was measured)."""
    scored = [h["val_bpd"] for h in history if h.get("val_bpd") is not None]
    return scored[-1] if scored else None
