"""The one check of a video handed to a generator (the eager/ext/compile generator and the
exported-file runtimes alike), with one wording of each error.

A leaf module: it imports nothing of s2vc.
"""
from __future__ import annotations

import torch


def check_video(video, channels: int, *, source: str = "generator", min_size: int | None = None,
                values: bool = True) -> None:
    """Raise a one-line ValueError/TypeError unless ``video`` is float (B, ``channels``, T, H, W)
    with B >= 1 and T >= 2 (the temporal STD needs two frames).

    min_size: the flow's resolution r, when the frames must be at least r x r (they are pooled to
    it). values: also check that every value is finite and within [-0.5, 1.5] (video in [0, 1],
    with room for a generated video's overshoot): three reads of the whole video, each waiting
    for the device (a synchronisation), so a training loop passes False.
    """
    if not isinstance(video, torch.Tensor) or video.dim() != 5 or video.shape[1] != channels:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"{source} expects video float (B, {channels}, T, H, W) in [0, 1], got {shape}")
    if not video.is_floating_point():
        raise TypeError(f"video must be floating point in [0, 1] (convert uint8 with /255), got {video.dtype}")
    if video.shape[2] < 2:
        raise ValueError(f"the temporal STD needs T >= 2 frames per clip, got T = {video.shape[2]}")
    if video.shape[0] < 1:
        raise ValueError("video holds no clip (B = 0)")
    if values:
        if not torch.isfinite(video).all():
            raise ValueError("video contains NaN/Inf values")
        lo, hi = video.min().item(), video.max().item()
        if lo < -0.5 or hi > 1.5:
            raise ValueError(f"video values must be in [0, 1]; got range [{lo:.3g}, {hi:.3g}] "
                             "(uint8 frames need /255; normalised ones need un-normalising)")
    if min_size is not None and min(video.shape[3:]) < min_size:
        raise ValueError(f"frames of {tuple(video.shape[3:])} are smaller than the flow's "
                         f"{min_size}x{min_size} input")
