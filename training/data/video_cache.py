"""Whole videos decoded once and kept in memory, for small sets read many times over (such as
the synthetic one): ``ClipDataset(..., cache_videos=True)`` cuts its clips from these."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from s2vc.engine import video_io

from .skips import SkipSample, skip_for

__all__ = ["DecodedVideos"]


class DecodedVideos:
    """Videos decoded whole at ``size`` (as ``video_io.read_video``) and kept by record index,
    uint8 (T, H, W, 3) each. Per process: ``preload`` them before a DataLoader forks its
    workers, so the workers share the frames instead of decoding them again."""

    def __init__(self, size: int | tuple[int, int] | None):
        self.size = size
        self.videos: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        """How many videos are held."""
        return len(self.videos)

    def get(self, index: int, path: Path) -> torch.Tensor:
        """Video ``index`` (its file: ``path``), decoded on first use; raises ``SkipSample``
        for a missing or undecodable file (nothing is kept for it, so it is retried)."""
        if index not in self.videos:
            try:
                self.videos[index] = video_io.read_video(path, size=self.size)
            except (FileNotFoundError, video_io.VideoDecodeError) as e:
                raise skip_for(path, e) from e
        return self.videos[index]

    def preload(self, paths: Sequence[Path]) -> int:
        """Decode ``paths`` (video ``i`` is ``paths[i]``) now; returns how many could be decoded.
        The bad ones are reported when their items are asked for."""
        for i, path in enumerate(paths):
            try:
                self.get(i, path)
            except SkipSample:
                pass
        return len(self.videos)
