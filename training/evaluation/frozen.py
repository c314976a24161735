"""Evaluations of a pretrained backbone on frozen features: retrieval, linear probe, temporal order.

- ``evaluate_retrieval(settings)``: test videos query the train set (``metrics.retrieval_recall``);
- ``evaluate_linear(settings)``: ``linear_probe`` (BatchNorm1d without affine + Linear on
  precomputed frozen features), trained on train, tested on test;
- ``evaluate_temporal_order(settings)``: ``temporal_order_test``, the paper's Fig. 1 (can a
  linear classifier tell natural clips from frame-shuffled ones?).

Each takes an ``EvalSettings`` / ``LinearEvalSettings`` (``eval_common``), writes its results as
JSON to ``settings.out`` and returns them as an ``Evaluation`` (a dict with the table to print).
The features are ``features.extract_features`` (one per video, the mean over its windows); the
backbone is ``eval_checkpoints.load_backbone``'s. Those names stay importable from here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import SkippedCounter
from .checkpoints import BACKBONE_PREFIX, load_backbone
from .common import (EvalSettings, Evaluation, LinearEvalSettings, eval_backbone, eval_dataset, eval_device,
                          finish, format_table, settings_summary, test_split)
from .features import (PROTOCOLS, assert_frozen_unchanged, eval_window_transform, extract_features,
                       frame_permutation, frozen_state, natural_view, shuffled_view, video_features)
from .metrics import RETRIEVAL_KS, per_class_accuracy, retrieval_recall, top1
from .retrieval_grid import grid_path, write_retrieval_grid

__all__ = [
    "BACKBONE_PREFIX",
    "PROTOCOLS",
    "load_backbone",
    "extract_features",
    "eval_window_transform",
    "frame_permutation",
    "frozen_state",
    "assert_frozen_unchanged",
    "linear_probe",
    "temporal_order_test",
    "EvalSettings",
    "LinearEvalSettings",
    "Evaluation",
    "evaluate_retrieval",
    "evaluate_linear",
    "evaluate_temporal_order",
]


# --------------------------------------------------------------------------------------------
# linear classifier on frozen features


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, *, epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                 batch_size: int = 256, optimizer: str = "adam", seed: int = 0,
                 num_classes: int | None = None, min_steps: int = 1000) -> dict[str, float]:
    """Train BatchNorm1d(C, affine=False) + Linear(C, K) on frozen features, report top-1.

    Features float (N, C), labels long (N,) in [0, K). Adam (or SGD with momentum 0.9) with a
    cosine-decayed ``lr``, minibatches of ``batch_size`` in a seeded order, for ``epochs`` or as
    many more as ``min_steps`` optimiser steps need (a small set has one batch per epoch: 100
    steps leave even perfectly separable features at ~50%, measured). Returns
    {"top1": test top-1 in [0, 1], "train_top1": ..., "num_classes": K, "per_class": [top-1 of
    each class's test samples, NaN for a class without any]}.
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    k = int(num_classes or max(int(train_labels.max()), int(test_labels.max())) + 1)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(nn.BatchNorm1d(train_feats.shape[1], affine=False), nn.Linear(train_feats.shape[1], k))
    x, y = train_feats.float(), train_labels.long()
    opt = (torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay) if optimizer == "adam" else
           torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay))
    epochs = max(epochs, math.ceil(min_steps / math.ceil(len(x) / batch_size)))
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:          # BatchNorm1d needs two samples in training mode
                continue
            loss = F.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    with torch.no_grad():
        logits = head(test_feats.float())
        return {"top1": top1(logits, test_labels), "train_top1": top1(head(x), y), "num_classes": k,
                "per_class": per_class_accuracy(logits.argmax(1), test_labels, k)}


def temporal_order_test(backbone: nn.Module, dataset, *, num_clips: int | None = 10, overlap: float = 0.5,
                        size: int = 112, device: torch.device | str = "cpu", batch_size: int = 32,
                        workers: int = 0, seed: int = 0, epochs: int = 100, lr: float = 1e-2,
                        weight_decay: float = 1e-4, skipped: SkippedCounter | None = None, crops: int = 1,
                        protocol: str = "coclr", progress: str | None = None) -> dict:
    """The paper's Fig. 1: natural vs frame-shuffled clips, told apart by a linear classifier.

    Every video gives a natural feature (label 0) and a shuffled one (label 1): the same windows
    with their frames permuted by a seeded per-video permutation (never the identity), both
    averaged over the windows as in ``extract_features``. A seeded half of the videos trains
    ``linear_probe``, the other half tests it (chance: 0.5). A backbone blind to temporal order
    (e.g. one that learnt static cues) stays near chance. Returns {"top1", "train_top1",
    "train_videos", "test_videos"}. ``progress``: the label of a bar on stderr (None: no bar).
    """
    state = frozen_state(backbone)
    feats, _, indices = video_features(backbone, dataset, {"natural": natural_view, "shuffled": shuffled_view(seed)},
                                       num_clips=num_clips, overlap=overlap, size=size, device=device,
                                       batch_size=batch_size, workers=workers, skipped=skipped, crops=crops,
                                       protocol=protocol, progress=progress)
    assert_frozen_unchanged(backbone, state)
    n = len(indices)
    if n < 2:
        raise ValueError(f"the temporal-order test needs at least 2 videos, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    halves = order[: n // 2], order[n // 2:]

    def pairs(idx):
        x = torch.cat([feats["natural"][idx], feats["shuffled"][idx]])
        y = torch.cat([torch.zeros(len(idx), dtype=torch.long), torch.ones(len(idx), dtype=torch.long)])
        return x, y

    result = linear_probe(*pairs(halves[0]), *pairs(halves[1]), epochs=epochs, lr=lr, weight_decay=weight_decay,
                          seed=seed, num_classes=2)
    return {"top1": result["top1"], "train_top1": result["train_top1"], "train_videos": len(halves[0]),
            "test_videos": len(halves[1])}


# --------------------------------------------------------------------------------------------
# the evaluations of `s2vc eval retrieval / linear / temporal-order`


def _split_features(settings: EvalSettings, backbone: nn.Module, split: str, skipped: SkippedCounter):
    """(features float (N, C), labels long (N,), the split's dataset, the dataset index of each
    feature row long (N,): skipped videos leave gaps) of one split (``extract_features``'s)."""
    ds = eval_dataset(settings, split)
    feats, labels, indices = video_features(backbone, ds, {"natural": natural_view}, num_clips=settings.num_clips,
                                            overlap=settings.overlap, size=settings.size,
                                            device=eval_device(settings.device), batch_size=settings.batch_size,
                                            workers=settings.workers, skipped=skipped, crops=settings.crops,
                                            protocol=settings.protocol,
                                            progress=f"features {split}" if settings.progress else None)
    return feats["natural"], labels, ds, indices


def evaluate_retrieval(settings: EvalSettings) -> Evaluation:
    """Test videos query the train set: R@1/5/10/20/50 (``result["recall"]``), JSON to ``settings.out``."""
    backbone, desc = eval_backbone(settings)
    skipped = SkippedCounter()
    train_f, train_y, train_ds, train_i = _split_features(settings, backbone, "train", skipped)
    test_f, test_y, test_ds, test_i = _split_features(settings, backbone, test_split(settings.dataset), skipped)
    recall = retrieval_recall(test_f, test_y, train_f, train_y, RETRIEVAL_KS)
    result = {**settings_summary(settings, "retrieval"), "backbone": desc, "gallery_videos": len(train_y),
              "query_videos": len(test_y), "recall": recall}
    table = format_table(f"retrieval, {settings.dataset} fold {settings.fold}: {len(test_y)}/{len(test_ds)} test "
                         f"videos query {len(train_y)}/{len(train_ds)} train videos ({desc})",
                         [(k, f"{100 * v:6.2f}") for k, v in recall.items()])
    evaluation = finish(result, table, skipped, settings.out)
    if settings.out:                  # the picture beside the JSON: queries and their top-5
        write_retrieval_grid(grid_path(settings.out), test_f, test_y, [test_ds.records[i].path for i in test_i],
                             train_f, train_y, [train_ds.records[i].path for i in train_i], train_ds.classes,
                             size=settings.decode_size, title=f"retrieval, {settings.dataset}")
    return evaluation


def evaluate_linear(settings: LinearEvalSettings) -> Evaluation:
    """Linear probe on frozen features: test top-1 (``result["top1"]``), JSON to ``settings.out``."""
    backbone, desc = eval_backbone(settings)
    state = frozen_state(backbone)
    skipped = SkippedCounter()
    train_f, train_y, train_ds, _ = _split_features(settings, backbone, "train", skipped)
    test_f, test_y, _, _ = _split_features(settings, backbone, test_split(settings.dataset), skipped)
    probe = linear_probe(train_f, train_y, test_f, test_y, epochs=settings.epochs, lr=settings.lr,
                         weight_decay=settings.weight_decay, seed=settings.seed, num_classes=len(train_ds.classes))
    probe["classes"] = list(train_ds.classes)
    assert_frozen_unchanged(backbone, state)
    result = {**settings_summary(settings, "linear"), "backbone": desc, "train_videos": len(train_y),
              "test_videos": len(test_y), "epochs": settings.epochs, "lr": settings.lr,
              "weight_decay": settings.weight_decay, **probe}
    table = format_table(f"linear probe, {settings.dataset} fold {settings.fold} ({desc})",
                         [("top-1", f"{100 * probe['top1']:6.2f}"),
                          ("train top-1", f"{100 * probe['train_top1']:6.2f}"),
                          ("videos", f"{len(train_y)} train, {len(test_y)} test")])
    return finish(result, table, skipped, settings.out)


def evaluate_temporal_order(settings: LinearEvalSettings) -> Evaluation:
    """Natural vs frame-shuffled on the test split: top-1 (chance 0.5), JSON to ``settings.out``."""
    backbone, desc = eval_backbone(settings)
    skipped = SkippedCounter()
    split = test_split(settings.dataset)
    res = temporal_order_test(backbone, eval_dataset(settings, split), num_clips=settings.num_clips,
                              overlap=settings.overlap, size=settings.size, device=eval_device(settings.device),
                              batch_size=settings.batch_size, workers=settings.workers, seed=settings.seed,
                              epochs=settings.epochs, lr=settings.lr, weight_decay=settings.weight_decay,
                              skipped=skipped, crops=settings.crops, protocol=settings.protocol,
                              progress=f"features {split}" if settings.progress else None)
    result = {**settings_summary(settings, "temporal-order"), "backbone": desc, **res}
    table = format_table(f"temporal order (natural vs shuffled), {settings.dataset} {split} ({desc})",
                         [("top-1", f"{100 * res['top1']:6.2f}  (chance 50.00)"),
                          ("videos", f"{res['train_videos']} train, {res['test_videos']} test")])
    return finish(result, table, skipped, settings.out)
