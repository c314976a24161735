"""Evaluations of a pretrained backbone: retrieval, linear probe, temporal-order test.

All three read the pooled backbone features of frozen backbones:

- ``load_backbone`` takes ``encoder_q.backbone.*`` out of a ``s2vc pretrain`` checkpoint with
  the rigour of facebookresearch/moco's linear-probe loader: every backbone key present, none
  unexpected, a checkpoint of another backbone refused with both names.
- ``extract_features``: one feature per video, the mean of the pooled features of its
  half-overlapping windows (``window_starts``; CoCLR's protocol, the default here). The
  authors' code (mettyz/SSVC) instead concatenates all windows into one long clip at test time:
  ``--protocol concat``. Skipped videos are reported and left out.
- ``retrieval`` (test videos query the train set, ``metrics.retrieval_recall``),
  ``linear_probe`` (BatchNorm1d without affine + Linear on precomputed frozen features) and
  ``temporal_order_test`` (the paper's Fig. 1: can a linear classifier tell natural clips from
  frame-shuffled ones?).

``add_eval_arguments(subparsers)`` registers the ``retrieval``, ``linear`` and ``temporal-order``
subcommands; each runs ``main_*(args)``, which prints a table and writes JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from s2vc.training.datasets import (ClipDataset, EvalWindows, SkippedCounter, build_dataset, collate_windows,
                                    synthetic_kwargs)
from s2vc.training.metrics import RETRIEVAL_KS, per_class_accuracy, retrieval_recall, top1
from s2vc.training.models import BACKBONES, build_backbone
from s2vc.training.transforms import eval_transform, normalize_clip, ten_crop_transform

__all__ = [
    "BACKBONE_PREFIX",
    "load_backbone",
    "extract_features",
    "linear_probe",
    "assert_frozen_unchanged",
    "temporal_order_test",
    "main_retrieval",
    "main_linear",
    "main_temporal_order",
    "add_eval_arguments",
]

BACKBONE_PREFIX = "encoder_q.backbone."
PROTOCOLS = ("coclr", "concat")

# A view maps a window batch float (N, C, T, H, W) and the dataset index of each window's video
# (N,) to the clips the backbone sees.
View = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# checkpoint


def load_backbone(checkpoint_path: str | Path, backbone: str | None = None) -> nn.Module:
    """The query encoder's backbone of a pretrain checkpoint, on the CPU, in eval mode.

    ``backbone``: the architecture expected (one of ``BACKBONES``); None takes the checkpoint's
    ``config["backbone"]``. Raises ValueError when the checkpoint is of another backbone than
    asked (naming both), is not a pretrain checkpoint, or its backbone keys are not exactly the
    model's (naming the missing and unexpected ones).
    """
    path = Path(checkpoint_path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{path}: expected a pretrain checkpoint (a dict with 'model' = the MoCo state_dict), "
                         f"got {type(ckpt).__name__}" + (f" with keys {sorted(ckpt)[:8]}" if isinstance(ckpt, dict) else ""))
    saved = (ckpt.get("config") or {}).get("backbone")
    if backbone is None:
        if saved is None:
            raise ValueError(f"{path}: the checkpoint does not say its backbone (config['backbone']); "
                             f"pass one of {BACKBONES}")
        backbone = saved
    elif saved is not None and saved != backbone:
        raise ValueError(f"{path}: the checkpoint is of backbone {saved!r}, but backbone {backbone!r} was asked for")
    # a state_dict saved from a DDP-wrapped model has "module." in front (as facebookresearch/moco's)
    state = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    state = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    if not state:
        raise ValueError(f"{path}: no '{BACKBONE_PREFIX}*' keys in the checkpoint's model; is it a pretrain checkpoint?")
    model = build_backbone(backbone)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: the checkpoint's backbone weights do not fit a {backbone!r} backbone "
                         f"(saved as {saved!r}): {len(missing)} missing {missing[:5]}, "
                         f"{len(unexpected)} unexpected {unexpected[:5]}")
    shapes = [k for k, v in model.state_dict().items() if v.shape != state[k].shape]
    if shapes:
        k = shapes[0]
        raise ValueError(f"{path}: {len(shapes)} backbone weights have other shapes than a {backbone!r} backbone's, "
                         f"e.g. {k}: {tuple(state[k].shape)} in the checkpoint, {tuple(model.state_dict()[k].shape)} expected")
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    model.backbone_name = backbone
    return model.eval()


def frozen_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer, for ``assert_frozen_unchanged``."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_frozen_unchanged(backbone: nn.Module, state_before: dict[str, torch.Tensor]) -> None:
    """Raise AssertionError when any parameter or buffer (BatchNorm running statistics too) of
    ``backbone`` differs from ``state_before`` (``frozen_state`` taken before the evaluation),
    as facebookresearch/moco's ``sanity_check`` does after linear classification."""
    now = backbone.state_dict()
    if set(now) != set(state_before):
        raise AssertionError(f"the frozen backbone's keys changed: {sorted(set(now) ^ set(state_before))[:5]}")
    moved = [k for k, v in now.items() if not torch.equal(v.detach().cpu(), state_before[k].cpu())]
    if moved:
        raise AssertionError(f"{len(moved)} weights of the frozen backbone changed, e.g. {moved[:5]}")


# --------------------------------------------------------------------------------------------
# features


@torch.inference_mode()
def _video_features(backbone: nn.Module, dataset, views: dict[str, View], *, num_clips: int | None,
                    overlap: float, size: int, device: torch.device | str, batch_size: int, workers: int = 0,
                    skipped: SkippedCounter | None = None, crops: int = 1,
                    protocol: str = "coclr") -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per video, the pooled backbone features of each view: the mean over its windows x crops
    (protocol "coclr") or of its windows joined along time (protocol "concat").

    Returns ({view: float (N, C)}, labels long (N,), dataset indices long (N,)) for the N videos
    that were not skipped, in dataset order. ``batch_size`` clips go through the backbone at once;
    a loader batch holds ``max(1, batch_size // num_clips)`` videos.
    """
    device = torch.device(device)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "concat" and crops != 1:
        raise ValueError("the concat protocol joins windows along time; use it with crops=1")
    backbone.eval().to(device)
    windows = EvalWindows(dataset, num_clips, overlap, eval_window_transform(size, crops))
    videos_per_batch = max(1, batch_size // max(1, (num_clips or 1) * crops))
    loader = torch.utils.data.DataLoader(windows, batch_size=videos_per_batch, shuffle=False, num_workers=workers,
                                         collate_fn=collate_windows)
    counter = skipped if skipped is not None else SkippedCounter()
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in views}
    labels, indices = [], []
    for batch in loader:
        counter.update(batch)
        b = len(batch["label"])
        if b == 0:
            continue
        clips, owner = batch["clips"], batch["video"]                 # (n, C, T, H, W), (n,)
        video_index = batch["index"][owner]                            # dataset index of each window
        for name, view in views.items():
            x = view(clips, video_index)
            if protocol == "concat":
                # the authors' variant: a video's windows, in order, as one long clip (the
                # backbone's global pool takes any length)
                feats[name].append(torch.cat([
                    backbone(normalize_clip(torch.cat(list(x[owner == j]), dim=1)[None].to(device))).float().cpu()
                    for j in range(b)]))
                continue
            pooled = torch.cat([backbone(normalize_clip(x[i:i + batch_size].to(device))).float().cpu()
                                for i in range(0, len(x), batch_size)])          # (n, C)
            total = torch.zeros(b, pooled.shape[1]).index_add_(0, owner, pooled)
            count = torch.bincount(owner, minlength=b).clamp_min(1)[:, None]
            feats[name].append(total / count)                          # (b, C): mean over windows
        labels.append(batch["label"])
        indices.append(batch["index"])
    if skipped is None and counter.total:
        print(counter.report(), file=sys.stderr)
    if not labels:
        raise ValueError(f"every one of the {len(dataset)} videos was skipped:\n{counter.report()}")
    return ({k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels), torch.cat(indices))


def eval_window_transform(size: int, crops: int = 1):
    """The test-time view of a window: the centre crop (``crops=1``) or ten crops (``crops=10``)."""
    if crops not in (1, 10):
        raise ValueError(f"crops must be 1 (centre) or 10 (ten-crop), got {crops}")
    return eval_transform(size) if crops == 1 else ten_crop_transform(size)


def extract_features(backbone: nn.Module, dataset, *, num_clips: int | None = 10, overlap: float = 0.5,
                     size: int = 112, device: torch.device | str = "cpu", batch_size: int = 32, workers: int = 0,
                     skipped: SkippedCounter | None = None, crops: int = 1,
                     protocol: str = "coclr") -> tuple[torch.Tensor, torch.Tensor]:
    """One feature per video: float (N, C) and labels long (N,).

    ``dataset``: a ``ClipDataset`` (its ``frames``, ``stride`` and decoding ``size`` define the
    windows; build it with ``two_clips=False``). Each video gives up to ``num_clips``
    windows overlapping by ``overlap`` (spread evenly over the video; all of them with None),
    each resized and centre-cropped to ``size`` (``eval_transform``; ten crops with
    ``crops=10``, all averaged), normalised
    (``normalize_clip``) and pooled by the backbone; the video's feature is the mean over its
    windows (``protocol="coclr"``, CoCLR's protocol), or, with ``protocol="concat"`` (the
    authors' code), the pooled feature of all its windows joined along time into one clip. Videos that cannot give a window are left out and reported on stderr, or added
    to ``skipped`` when given.
    """
    feats, labels, _ = _video_features(backbone, dataset, {"natural": _natural}, num_clips=num_clips,
                                       overlap=overlap, size=size, device=device, batch_size=batch_size,
                                       workers=workers, skipped=skipped, crops=crops, protocol=protocol)
    return feats["natural"], labels


def _natural(clips: torch.Tensor, video_index: torch.Tensor) -> torch.Tensor:
    return clips


def frame_permutation(frames: int, seed: int, video_index: int) -> torch.Tensor:
    """A seeded permutation of ``frames`` frames for one video, never the identity (frames > 1)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + video_index)
    identity = torch.arange(frames)
    while True:
        perm = torch.randperm(frames, generator=g)
        if frames < 2 or not torch.equal(perm, identity):
            return perm


def shuffled_view(seed: int) -> View:
    """Frames of every window permuted by its video's ``frame_permutation`` (same for all its windows)."""
    def view(clips: torch.Tensor, video_index: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(clips)
        for j, v in enumerate(video_index.tolist()):
            out[j] = clips[j][:, frame_permutation(clips.shape[2], seed, v)]
        return out
    return view


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
                        protocol: str = "coclr") -> dict:
    """The paper's Fig. 1: natural vs frame-shuffled clips, told apart by a linear classifier.

    Every video gives a natural feature (label 0) and a shuffled one (label 1): the same windows
    with their frames permuted by a seeded per-video permutation (never the identity), both
    averaged over the windows as in ``extract_features``. A seeded half of the videos trains
    ``linear_probe``, the other half tests it (chance: 0.5). A backbone blind to temporal order
    (e.g. one that learnt static cues) stays near chance. Returns {"top1", "train_top1",
    "train_videos", "test_videos"}.
    """
    state = frozen_state(backbone)
    feats, _, indices = _video_features(backbone, dataset, {"natural": _natural, "shuffled": shuffled_view(seed)},
                                        num_clips=num_clips, overlap=overlap, size=size, device=device,
                                        batch_size=batch_size, workers=workers, skipped=skipped, crops=crops,
                                        protocol=protocol)
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
# command line


def _test_split(name: str) -> str:
    return "val" if name == "kinetics" else "test"


def _dataset(args, split: str):
    if args.dataset == "folder":
        raise SystemExit("eval: the folder dataset is unlabelled; use ucf101, hmdb51, kinetics or synthetic")
    name, kw = args.dataset, {}
    if name == "synthetic":
        given = getattr(args, "synthetic_kwargs", None)
        if args.root and not given and (Path(args.root) / "params.json").exists():
            name = "ucf101"              # a synthetic set already built at --root is read as it is
        else:
            kw = {"synthetic_kwargs": given or synthetic_kwargs(args)}
    return build_dataset(name, args.root, split, args.fold, frames=args.frames, stride=args.stride,
                         size=args.decode_size, two_clips=False, **kw)


def _backbone(args) -> tuple[nn.Module, str]:
    if args.checkpoint:
        model = load_backbone(args.checkpoint, args.backbone)
        return model, f"{model.backbone_name} from {args.checkpoint}"
    if not args.backbone:
        raise SystemExit("eval: give --checkpoint (or --backbone alone for a randomly initialised baseline)")
    torch.manual_seed(args.seed)
    return build_backbone(args.backbone).eval(), f"{args.backbone}, random init (seed {args.seed})"


def _device(args) -> torch.device:
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _features(args, backbone, split: str, skipped: SkippedCounter) -> tuple[torch.Tensor, torch.Tensor, ClipDataset]:
    ds = _dataset(args, split)
    feats, labels = extract_features(backbone, ds, num_clips=args.num_clips, overlap=args.overlap, size=args.size,
                                     device=_device(args), batch_size=args.batch_size, workers=args.workers,
                                     skipped=skipped, crops=getattr(args, "crops", 1),
                                     protocol=getattr(args, "protocol", "coclr"))
    return feats, labels, ds


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    return "\n".join([title] + [f"  {k:<{width}}  {v}" for k, v in rows])


def _finish(args, result: dict, table: str, skipped: SkippedCounter) -> dict:
    print(table)
    if skipped.total:
        print(skipped.report(), file=sys.stderr)
    result["skipped"] = list(dict.fromkeys(skipped.messages))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def _common(args, what: str) -> dict:
    return {"evaluation": what, "dataset": args.dataset, "fold": args.fold, "frames": args.frames,
            "stride": args.stride, "size": args.size, "num_clips": args.num_clips, "overlap": args.overlap,
            "crops": getattr(args, "crops", 1), "protocol": getattr(args, "protocol", "coclr"),
            "checkpoint": args.checkpoint}


def main_retrieval(args: argparse.Namespace) -> dict:
    """Test videos query the train set; prints R@k and writes JSON to ``args.out``."""
    backbone, desc = _backbone(args)
    skipped = SkippedCounter()
    train_f, train_y, train_ds = _features(args, backbone, "train", skipped)
    test_f, test_y, test_ds = _features(args, backbone, _test_split(args.dataset), skipped)
    n_train, n_test = len(train_ds), len(test_ds)
    recall = retrieval_recall(test_f, test_y, train_f, train_y, RETRIEVAL_KS)
    result = {**_common(args, "retrieval"), "backbone": desc, "gallery_videos": len(train_y),
              "query_videos": len(test_y), "recall": recall}
    table = _table(f"retrieval, {args.dataset} fold {args.fold}: {len(test_y)}/{n_test} test videos query "
                   f"{len(train_y)}/{n_train} train videos ({desc})",
                   [(k, f"{100 * v:6.2f}") for k, v in recall.items()])
    return _finish(args, result, table, skipped)


def main_linear(args: argparse.Namespace) -> dict:
    """Linear probe on frozen features; prints top-1 and writes JSON to ``args.out``."""
    backbone, desc = _backbone(args)
    state = frozen_state(backbone)
    skipped = SkippedCounter()
    train_f, train_y, train_ds = _features(args, backbone, "train", skipped)
    test_f, test_y, _ = _features(args, backbone, _test_split(args.dataset), skipped)
    probe = linear_probe(train_f, train_y, test_f, test_y, epochs=args.epochs, lr=args.lr,
                         weight_decay=args.weight_decay, seed=args.seed, num_classes=len(train_ds.classes))
    probe["classes"] = list(train_ds.classes)
    assert_frozen_unchanged(backbone, state)
    result = {**_common(args, "linear"), "backbone": desc, "train_videos": len(train_y), "test_videos": len(test_y),
              "epochs": args.epochs, "lr": args.lr, "weight_decay": args.weight_decay, **probe}
    table = _table(f"linear probe, {args.dataset} fold {args.fold} ({desc})",
                   [("top-1", f"{100 * probe['top1']:6.2f}"), ("train top-1", f"{100 * probe['train_top1']:6.2f}"),
                    ("videos", f"{len(train_y)} train, {len(test_y)} test")])
    return _finish(args, result, table, skipped)


def main_temporal_order(args: argparse.Namespace) -> dict:
    """Natural vs frame-shuffled on the test split; prints top-1 and writes JSON to ``args.out``."""
    backbone, desc = _backbone(args)
    skipped = SkippedCounter()
    ds = _dataset(args, _test_split(args.dataset))
    res = temporal_order_test(backbone, ds, num_clips=args.num_clips, overlap=args.overlap, size=args.size,
                              device=_device(args), batch_size=args.batch_size, workers=args.workers,
                              seed=args.seed, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                              skipped=skipped, crops=args.crops, protocol=args.protocol)
    result = {**_common(args, "temporal-order"), "backbone": desc, **res}
    table = _table(f"temporal order (natural vs shuffled), {args.dataset} {_test_split(args.dataset)} ({desc})",
                   [("top-1", f"{100 * res['top1']:6.2f}  (chance 50.00)"),
                    ("videos", f"{res['train_videos']} train, {res['test_videos']} test")])
    return _finish(args, result, table, skipped)


def _add_common(p: argparse.ArgumentParser, epochs: int | None) -> None:
    p.add_argument("--checkpoint", default=None, help="pretrain checkpoint (its encoder_q.backbone is evaluated)")
    p.add_argument("--backbone", default=None, choices=BACKBONES,
                   help="expected backbone (default: the checkpoint's); alone, a randomly initialised baseline")
    p.add_argument("--dataset", default="synthetic", choices=("synthetic", "ucf101", "hmdb51", "kinetics"))
    p.add_argument("--root", default=None, help="dataset root (synthetic: built there, default a cache)")
    p.add_argument("--fold", type=int, default=1, help="official split 1-3 (ucf101, hmdb51)")
    p.add_argument("--synthetic-seed", type=int, default=0, help="synthetic set: its seed")
    p.add_argument("--synthetic-bias", default="strong", help="synthetic set: strong, mild or none")
    p.add_argument("--synthetic-train-per-class", type=int, default=20, help="synthetic set: train videos per class")
    p.add_argument("--synthetic-test-per-class", type=int, default=10, help="synthetic set: test videos per class")
    p.add_argument("--frames", type=int, default=16, help="frames per window")
    p.add_argument("--stride", type=int, default=2, help="temporal stride of a window's frames")
    p.add_argument("--size", type=int, default=112, help="centre crop side fed to the backbone")
    p.add_argument("--decode-size", type=int, default=128, help="shorter side the video is decoded to")
    p.add_argument("--num-clips", type=int, default=10, help="windows per video (half-overlapping), averaged")
    p.add_argument("--overlap", type=float, default=0.5, help="overlap of consecutive windows")
    p.add_argument("--protocol", choices=PROTOCOLS, default="coclr",
                   help="coclr: mean of the windows' features; concat: the windows joined along time into one "
                        "clip (the authors' code)")
    p.add_argument("--crops", type=int, choices=(1, 10), default=1,
                   help="test views per window: the centre crop, or ten-crop (corners + centre, flipped)")
    p.add_argument("--batch-size", type=int, default=32, help="clips per backbone forward")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader decoding workers (default: up to 4, at most the CPU count)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file for the results")
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs,
                       help="linear classifier epochs (features precomputed; at least 1000 steps in all)")
        p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate of the linear classifier")
        p.add_argument("--weight-decay", type=float, default=1e-4)


def _command(main: Callable[[argparse.Namespace], dict]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        main(args)
        return 0
    return run


def add_eval_arguments(subparsers) -> None:
    """Register ``retrieval``, ``linear`` and ``temporal-order`` on an ``add_subparsers()`` action;
    each sets ``func`` to a callable taking the parsed args and returning 0."""
    p = subparsers.add_parser("retrieval", help="nearest-neighbour retrieval R@1/5/10/20/50 (test queries train)")
    _add_common(p, None)
    p.set_defaults(func=_command(main_retrieval))
    p = subparsers.add_parser("linear", help="linear probe top-1 on frozen features")
    _add_common(p, 100)
    p.set_defaults(func=_command(main_linear))
    p = subparsers.add_parser("temporal-order", help="natural vs frame-shuffled linear test (paper Fig. 1)")
    _add_common(p, 100)
    p.set_defaults(func=_command(main_temporal_order))
