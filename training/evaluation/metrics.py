"""Evaluation metrics on precomputed tensors: nearest-neighbour retrieval, top-1, Pearson's r.

Pure functions (no I/O, no model), each checked on constructed data with a known answer in
``tests/test_eval.py``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["RETRIEVAL_KS", "centre_normalise", "retrieval_recall", "top1", "per_class_accuracy", "pearson"]

RETRIEVAL_KS = (1, 5, 10, 20, 50)


def centre_normalise(feats: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``(feats - mean)`` L2-normalised per row; feats float (N, C), mean (C,)."""
    return F.normalize(feats - mean, dim=1)


def retrieval_recall(query_feats: torch.Tensor, query_labels: torch.Tensor, gallery_feats: torch.Tensor,
                     gallery_labels: torch.Tensor, ks: Sequence[int] = RETRIEVAL_KS) -> dict[str, float]:
    """Recall at k of nearest-neighbour video retrieval (test clips query the train set).

    query_feats float (Q, C), gallery_feats float (G, C), labels long (Q,) / (G,). Both sets are
    centred by the gallery (train) mean and L2-normalised; similarity is the cosine. R@k is the
    fraction (in [0, 1]) of queries with at least one gallery item of their label among their k
    most similar gallery items. A k larger than G is computed as G (and still reported as k).
    Returns ``{"R@1": ..., "R@5": ..., ...}`` in the order of ``ks``.
    """
    if query_feats.ndim != 2 or gallery_feats.ndim != 2 or query_feats.shape[1] != gallery_feats.shape[1]:
        raise ValueError(f"expected query (Q, C) and gallery (G, C) features, got {tuple(query_feats.shape)} "
                         f"and {tuple(gallery_feats.shape)}")
    if len(query_labels) != len(query_feats) or len(gallery_labels) != len(gallery_feats):
        raise ValueError(f"labels do not match features: {len(query_labels)} for {len(query_feats)} queries, "
                         f"{len(gallery_labels)} for {len(gallery_feats)} gallery items")
    if len(gallery_feats) == 0 or len(query_feats) == 0:
        raise ValueError("retrieval needs at least one query and one gallery item")
    q, g = query_feats.double(), gallery_feats.double()
    mean = g.mean(dim=0)
    sim = centre_normalise(q, mean) @ centre_normalise(g, mean).T           # (Q, G) cosine
    k_max = min(max(ks), len(g))
    nearest = sim.topk(k_max, dim=1).indices                                 # (Q, k_max)
    hit = gallery_labels.to(nearest.device)[nearest] == query_labels.to(nearest.device)[:, None]
    first_hit = torch.cumsum(hit.int(), dim=1) > 0                           # (Q, k_max): a hit within k
    return {f"R@{k}": first_hit[:, min(k, k_max) - 1].double().mean().item() for k in ks}


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction (in [0, 1]) of rows whose arg-max is the label; logits (N, K), labels long (N,)."""
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("top1 of an empty set")
    return (logits.argmax(dim=1) == labels.to(logits.device)).double().mean().item()


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class, the fraction of its samples predicted right; NaN for a class with no sample.
    predictions and labels long (N,) in [0, num_classes)."""
    predictions, labels = torch.as_tensor(predictions).flatten().cpu(), torch.as_tensor(labels).flatten().cpu()
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    right = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, (predictions == labels).double())
    count = torch.bincount(labels, minlength=num_classes).double()
    return [float("nan") if c == 0 else (r / c).item() for r, c in zip(right, count)]


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson's correlation coefficient of two equally long 1-D series (computed in float64);
    NaN when either is constant."""
    x, y = torch.as_tensor(x).double().flatten(), torch.as_tensor(y).double().flatten()
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"pearson needs two series of the same length >= 2, got {len(x)} and {len(y)}")
    xc, yc = x - x.mean(), y - y.mean()
    denom = xc.norm() * yc.norm()
    return float("nan") if denom == 0 else (xc @ yc / denom).item()
