"""α calibration: how many latents a flow keeps at each α, and the α that keeps a given fraction.

The paper keeps 22.7% of latents at α = 0.5 with its own flow; another flow (another size or
training) keeps another fraction at the same α, so α is chosen per flow (``s2vc calibrate``):

    cal = calibrate(checkpoint_path, videos, preserve=0.227, clip_len=16, size=128)
    cal.alpha, cal.table                    # the alpha for 22.7%; (alpha, preserved fraction) rows
    write_alpha(cal)                        # record it in the checkpoint's meta["alpha"]
    write_alpha(cal, to="flow_s3d.pt")      # or in a copy of the checkpoint, the input untouched

Windows of ``clip_len`` frames of the videos are pooled to the flow's resolution and encoded;
each latent's temporal STD is kept. The preserved fraction at α is the share of STDs >= α.
``write_alpha`` records the α in the checkpoint's meta["alpha"] (weights and their hash
untouched), which ``generate``, ``demo`` and ``pretrain`` use by default (``resolve_alpha``);
``write_alpha(cal, to=FILE)`` writes a copy with it instead, so a second clip (another backbone's
frames and decode size) gets its own calibrated flow file without changing the flow another
chain reads.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import (FORMAT, CheckpointError, atomic_torch_save, default_checkpoint_path,
                         flow_from_checkpoint, read_checkpoint)
from .defaults import DEFAULT_PRESERVE, check_preserved_fraction
from .suppression import alpha_for_preserved_fraction

DEFAULT_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2)


@torch.no_grad()
def latent_stds(flow, videos, *, clip_len: int = 16, size: int | None = 128, max_windows: int = 8,
                stride: int = 1, progress: bool = False, skip_unreadable: bool = False) -> torch.Tensor:
    """Temporal STDs float (N, D) of the latents of up to ``max_windows`` windows of ``clip_len``
    frames taken every ``stride`` frames per video (frames decoded at shorter side ``size``, None:
    as stored); N
    windows in all, D latents. ``stride`` is the clip's: a clip that spans more time varies more,
    so an alpha read off stride-1 windows keeps more latents of a stride-2 clip than asked.
    ``progress``: a bar on stderr over the videos. ``skip_unreadable``: a video that cannot be
    decoded is passed over (said once on stderr with the count) instead of raising. The windows
    are encoded on the flow's device; the STDs come back on the CPU."""
    if clip_len < 2 or stride < 1:
        raise ValueError(f"need clip_len >= 2 frames (the temporal STD needs two) and stride >= 1, got "
                         f"{clip_len}, {stride}")
    # PyAV only where videos are read: calibrating from latents, or importing this module on a
    # machine without PyAV (the GPU check's image), must not need it
    from . import video_io

    prepared = flow.prepare()
    params = flow.parameters() if hasattr(flow, "parameters") else iter(())
    device = next((t.device for t in params), torch.device("cpu"))
    span = clip_len * stride
    stds, unreadable = [], []
    for v in tqdm(videos, desc="calibrating", unit="video", file=sys.stderr, disable=not progress, leave=False):
        try:
            frames = video_io.read_video(v, size=size, max_frames=max_windows * span)
        except (video_io.VideoDecodeError, OSError) as e:
            if not skip_unreadable:
                raise
            unreadable.append(f"{v}: {e}")
            continue
        n = frames.shape[0] // span * span
        if n == 0:
            continue
        picked = frames[:n].reshape(n // span, span, *frames.shape[1:])[:, ::stride]
        x = picked.reshape(-1, *frames.shape[1:]).permute(0, 3, 1, 2).to(device).float().div(255)
        z = prepared.encode(F.adaptive_avg_pool2d(x, flow.config.resolution))
        stds.append(z.reshape(-1, clip_len, z.shape[1]).std(dim=1).cpu())
    if unreadable:
        print(f"calibrating: {len(unreadable)} of {len(videos)} videos could not be decoded and were passed over "
              f"(first: {unreadable[0]})", file=sys.stderr)
    if not stds:
        raise ValueError(f"no video had {clip_len} frames {stride} apart ({span} frames) to calibrate on")
    return torch.cat(stds)


def preserved_fraction(stds: torch.Tensor, alpha: float) -> float:
    """The share (in [0, 1]) of the STDs ``stds`` (any shape) that are >= ``alpha``."""
    return float((stds >= alpha).float().mean())


@dataclass
class Calibration:
    """What ``calibrate`` measured: ``alpha`` keeps ``preserve`` of the latents of windows of
    ``clip_len`` frames ``stride`` apart; ``table`` the (alpha, preserved fraction) of each alpha
    asked about; ``windows`` the clips measured; ``data``: the dataset split the videos were
    drawn from, when they were (recorded with the alpha)."""

    checkpoint: Path
    videos: list[Path]
    clip_len: int
    size: int | None               # the decode size (None: as stored)
    windows: int
    preserve: float
    alpha: float
    table: list[tuple[float, float]]
    stride: int = 1
    data: dict | None = None

    def record(self) -> dict:
        """How the alpha was found, as stored in the checkpoint's meta["alpha_calibration"]."""
        record = {"preserve": self.preserve, "videos": [v.name for v in self.videos],
                  "clip_len": self.clip_len, "stride": self.stride, "size": self.size, "windows": self.windows}
        if self.data is not None:
            record["data"] = dict(self.data)
        return record

    def meta(self) -> dict:
        """What a flow checkpoint's meta records of it: the alpha, the clip it was read off
        (``alpha_frames`` frames ``alpha_stride`` apart) and how it was found."""
        return {"alpha": self.alpha, "alpha_frames": self.clip_len, "alpha_stride": self.stride,
                "alpha_calibration": self.record()}


def calibrate(checkpoint: str | os.PathLike | None, videos: Sequence[str | os.PathLike], *,
              preserve: float = DEFAULT_PRESERVE, alphas: Sequence[float] = DEFAULT_ALPHAS,
              clip_len: int = 16, size: int | None = 128, stride: int = 1, progress: bool = False,
              max_windows: int = 8, device: str | torch.device | None = None,
              data: dict | None = None) -> Calibration:
    """Measure the flow at ``checkpoint`` (None: the bundled one) on ``videos`` (up to
    ``max_windows`` windows per video of ``clip_len`` frames ``stride`` apart: the pretraining
    clip's): the preserved fraction at each of ``alphas`` and the alpha that keeps ``preserve``
    (in (0, 1)); the flow runs on ``device`` (None: the CPU); ``progress``: a bar on stderr;
    ``data``: where the videos came from (a dataset's split), kept in the record."""
    check_preserved_fraction(preserve)        # checked before the videos are decoded
    path = Path(checkpoint) if checkpoint else default_checkpoint_path()
    flow = flow_from_checkpoint(read_checkpoint(path), str(path))
    if device is not None:
        flow = flow.to(device)
    videos = [Path(v) for v in videos]
    stds = latent_stds(flow, videos, clip_len=clip_len, size=size, stride=stride, progress=progress,
                       max_windows=max_windows)
    return Calibration(checkpoint=path, videos=videos, clip_len=clip_len, size=size, windows=len(stds),
                       preserve=preserve, alpha=alpha_for_preserved_fraction(stds, preserve),
                       table=[(float(a), preserved_fraction(stds, a)) for a in alphas], stride=stride, data=data)


def write_alpha(calibration: Calibration, to: str | os.PathLike | None = None) -> Path:
    """Record ``calibration.alpha`` in its checkpoint's meta["alpha"] (the clip it was read off in
    meta["alpha_frames"] / ["alpha_stride"], how it was found in meta["alpha_calibration"]); the
    weights and their hash are untouched. ``to``: write a copy of the checkpoint with it there
    instead (atomically; the checkpoint itself is left as it is). Returns the path written."""
    path = calibration.checkpoint
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: only s2vc flow checkpoints carry meta, this is an AdvFlow state_dict "
                              "(save it with s2vc.engine.save_flow first)")
    ckpt["meta"] = {**(ckpt.get("meta") or {}), **calibration.meta()}
    target = Path(to) if to is not None else path
    atomic_torch_save(ckpt, target)
    return target
