"""Pooled backbone features of whole videos, as the frozen-feature evaluations read them.

``extract_features``: one feature per video, the mean of the pooled features of its
half-overlapping windows (``EvalWindows``; CoCLR's protocol, the default here). The authors'
code (mettyz/SSVC) instead concatenates all windows into one long clip at test time:
``protocol="concat"``. Skipped videos are reported and left out.

``video_features`` does the same for several *views* of the windows at once (e.g. natural and
frame-shuffled, ``shuffled_view``), so the temporal-order test decodes each video once.
``frozen_state`` / ``assert_frozen_unchanged`` check that an evaluation left the backbone as
it was (BatchNorm statistics too).
"""
from __future__ import annotations

import sys
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from ..data.datasets import EvalWindows, SkippedCounter, collate_windows
from ..data.transforms import eval_transform, normalize_clip, ten_crop_transform

__all__ = ["PROTOCOLS", "View", "natural_view", "frame_permutation", "shuffled_view", "eval_window_transform",
           "video_features", "extract_features", "frozen_state", "assert_frozen_unchanged"]

PROTOCOLS = ("coclr", "concat")

# A view maps a window batch float (N, C, T, H, W) and the dataset index of each window's video
# (N,) to the clips the backbone sees.
View = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def natural_view(clips: torch.Tensor, video_index: torch.Tensor) -> torch.Tensor:
    """The windows as they are."""
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


def eval_window_transform(size: int, crops: int = 1):
    """The test-time view of a window: the centre crop (``crops=1``) or ten crops (``crops=10``)."""
    if crops not in (1, 10):
        raise ValueError(f"crops must be 1 (centre) or 10 (ten-crop), got {crops}")
    return eval_transform(size) if crops == 1 else ten_crop_transform(size)


def _check_protocol(protocol: str, crops: int) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "concat" and crops != 1:
        raise ValueError("the concat protocol joins windows along time; use it with crops=1")


def _pool_views(backbone: nn.Module, x: torch.Tensor, owner: torch.Tensor, videos: int, *, device,
                batch_size: int, protocol: str) -> torch.Tensor:
    """Per video of a loader batch, float (videos, C): the mean of its windows' pooled features
    (coclr), or the pooled feature of its windows joined along time (concat). x (n, C, T, H, W)
    the batch's windows (already viewed), owner long (n,) in [0, videos)."""
    if protocol == "concat":
        # the authors' variant: a video's windows, in order, as one long clip (the backbone's
        # global pool takes any length)
        return torch.cat([backbone(normalize_clip(torch.cat(list(x[owner == j]), dim=1)[None].to(device))).float().cpu()
                          for j in range(videos)])
    pooled = torch.cat([backbone(normalize_clip(x[i:i + batch_size].to(device))).float().cpu()
                        for i in range(0, len(x), batch_size)])                  # (n, C)
    total = torch.zeros(videos, pooled.shape[1]).index_add_(0, owner, pooled)
    count = torch.bincount(owner, minlength=videos).clamp_min(1)[:, None]
    return total / count


@torch.inference_mode()
def video_features(backbone: nn.Module, dataset, views: dict[str, View], *, num_clips: int | None,
                   overlap: float, size: int, device: torch.device | str, batch_size: int, workers: int = 0,
                   skipped: SkippedCounter | None = None, crops: int = 1, protocol: str = "coclr",
                   progress: str | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per video, the pooled backbone features of each view: the mean over its windows x crops
    (protocol "coclr") or of its windows joined along time (protocol "concat").

    Returns ({view: float (N, C)}, labels long (N,), dataset indices long (N,)) for the N videos
    that were not skipped, in dataset order. ``batch_size`` clips go through the backbone at once;
    a loader batch holds ``max(1, batch_size // num_clips)`` videos. ``progress``: the label of a
    bar on stderr counting the videos (None: no bar).
    """
    device = torch.device(device)
    _check_protocol(protocol, crops)
    backbone.eval().to(device)
    windows = EvalWindows(dataset, num_clips, overlap, eval_window_transform(size, crops))
    videos_per_batch = max(1, batch_size // max(1, (num_clips or 1) * crops))
    loader = torch.utils.data.DataLoader(windows, batch_size=videos_per_batch, shuffle=False, num_workers=workers,
                                         collate_fn=collate_windows)
    counter = skipped if skipped is not None else SkippedCounter()
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in views}
    labels, indices = [], []
    bar = tqdm(total=len(dataset), desc=progress, unit="video", file=sys.stderr, disable=progress is None,
               leave=False)
    for batch in loader:
        counter.update(batch)
        bar.update(len(batch["index"]) + len(batch["skipped"]))   # the videos kept and skipped
        b = len(batch["label"])
        if b == 0:
            continue
        clips, owner = batch["clips"], batch["video"]                 # (n, C, T, H, W), (n,)
        video_index = batch["index"][owner]                            # dataset index of each window
        for name, view in views.items():
            feats[name].append(_pool_views(backbone, view(clips, video_index), owner, b, device=device,
                                           batch_size=batch_size, protocol=protocol))
        labels.append(batch["label"])
        indices.append(batch["index"])
    bar.close()
    if skipped is None and counter.total:
        print(counter.report(), file=sys.stderr)
    if not labels:
        raise ValueError(f"every one of the {len(dataset)} videos was skipped:\n{counter.report()}")
    return ({k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels), torch.cat(indices))


def extract_features(backbone: nn.Module, dataset, *, num_clips: int | None = 10, overlap: float = 0.5,
                     size: int = 112, device: torch.device | str = "cpu", batch_size: int = 32, workers: int = 0,
                     skipped: SkippedCounter | None = None, crops: int = 1,
                     protocol: str = "coclr") -> tuple[torch.Tensor, torch.Tensor]:
    """One feature per video: float (N, C) and labels long (N,).

    ``dataset``: a ``ClipDataset`` (its ``frames``, ``stride`` and decoding ``size`` define the
    windows; build it with ``two_clips=False``). Each video gives up to ``num_clips`` windows
    overlapping by ``overlap`` (spread evenly over the video; all of them with None), each
    resized and centre-cropped to ``size`` (``eval_transform``; ten crops with ``crops=10``, all
    averaged), normalised (``normalize_clip``) and pooled by the backbone; the video's feature is
    the mean over its windows (``protocol="coclr"``, CoCLR's protocol), or, with
    ``protocol="concat"`` (the authors' code), the pooled feature of all its windows joined along
    time into one clip. Videos that cannot give a window are left out and reported on stderr, or
    added to ``skipped`` when given.
    """
    feats, labels, _ = video_features(backbone, dataset, {"natural": natural_view}, num_clips=num_clips,
                                      overlap=overlap, size=size, device=device, batch_size=batch_size,
                                      workers=workers, skipped=skipped, crops=crops, protocol=protocol)
    return feats["natural"], labels


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
