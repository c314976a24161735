"""Frames for training a flow by maximum likelihood: from videos, images and a synthetic source.

Every frame the flow sees is what the generator feeds it: a square view of a frame average-pooled
to the flow's resolution. Sources are decoded once into memory at a moderate size (shorter side
``decode_size``); each batch draws random square crops (scale ``crop_scale`` of the shorter side,
random horizontal flip) and area-pools them to r x r.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s2vc.engine import video_io
from s2vc.engine.samples import sample_images, sample_videos
from s2vc.engine.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

SAMPLES = "samples"   # --data samples: the real media that installed packages ship


@dataclasses.dataclass
class FrameSource:
    """Frames of one file, uint8 (T, H, W, 3), with where they came from."""

    name: str
    frames: torch.Tensor


def collect_media(paths: list[str]) -> list[Path]:
    """Files under ``paths`` (files or folders, searched recursively) with a video or image
    extension, sorted. ``samples`` stands for the sample media of installed packages."""
    found: list[Path] = []
    for p in paths:
        if p == SAMPLES:
            found += sample_videos() + sample_images()
            continue
        path = Path(p)
        if path.is_dir():
            found += sorted(f for f in path.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return found


def evenly_spaced(total: int, count: int | None) -> np.ndarray:
    """Indices of ``count`` items spread evenly over ``range(total)`` (first and last included);
    all of them when ``count`` is None or >= ``total``."""
    if count is None or count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).round().astype(int)


def load_sources(files: list[Path], decode_size: int, max_frames: int | None = None,
                 log=print, frames_per_source: int | None = None) -> tuple[list[FrameSource], list[str]]:
    """Decode every file (videos with a frame cap, images as one frame). Files that cannot be
    decoded are skipped and returned in the second list with the reason. ``frames_per_source``:
    keep only that many frames of each video, evenly spaced over what was decoded (memory for
    datasets of thousands of videos)."""
    sources, skipped = [], []
    for f in files:
        try:
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                img = video_io.read_image(f, size=decode_size)
                frames = torch.as_tensor(np.asarray(img)).unsqueeze(0)
            else:
                frames = video_io.read_video(f, size=decode_size, max_frames=max_frames)
        except (video_io.VideoDecodeError, video_io.ImageDecodeError, OSError, ValueError) as e:
            skipped.append(f"{f}: {e}")
            log(f"skipping {f}: {e}")
            continue
        if frames_per_source is not None and frames.shape[0] > frames_per_source:
            # index selection copies, so the full decode is freed
            frames = frames[torch.from_numpy(evenly_spaced(frames.shape[0], frames_per_source))]
        sources.append(FrameSource(str(f), frames))
    return sources, skipped


def synthetic_frames(n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` procedural frames uint8 (n, size, size, 3): smooth colour gradients with a few
    flat-coloured rectangles and discs, the kind of structure a flow must model in any video."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        c0, c1 = rng.random(3), rng.random(3)
        angle = rng.uniform(0, 2 * math.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        img = c0 + (c1 - c0) * t[..., None]
        for _ in range(rng.integers(1, 5)):
            colour = rng.random(3)
            cx, cy = rng.random(2)
            rad = rng.uniform(0.05, 0.3)
            if rng.random() < 0.5:
                m = (np.abs(xx - cx) < rad) & (np.abs(yy - cy) < rad * rng.uniform(0.5, 1.5))
            else:
                m = (xx - cx) ** 2 + (yy - cy) ** 2 < rad ** 2
            img[m] = colour
        img += rng.normal(0, 0.02, img.shape)    # sensor-like noise
        out[i] = img
    return torch.from_numpy((np.clip(out, 0, 1) * 255).round().astype(np.uint8))


def split_holdout(sources: list[FrameSource], fraction: float) -> tuple[list[FrameSource], list[FrameSource]]:
    """Hold out the last ``fraction`` of each video's frames (a contiguous tail, so held-out
    frames are not near-copies of neighbours seen in training); single images stay in training."""
    train, held = [], []
    for s in sources:
        t = s.frames.shape[0]
        k = int(round(t * fraction))
        if t < 2 or k == 0:
            train.append(s)
            continue
        gap = min(8, t - k - 1)     # a few frames between the parts: adjacent frames are near-copies
        train.append(FrameSource(s.name, s.frames[: t - k - gap]))
        held.append(FrameSource(s.name, s.frames[t - k:]))
    return train, held


class FrameSampler:
    """Random square crops of the sources' frames, area-pooled to (3, r, r) float in [0, 1]."""

    def __init__(self, sources: list[FrameSource], resolution: int, crop_scale=(0.35, 1.0), flip: bool = True):
        if not sources:
            raise ValueError("no frames to sample from")
        self.sources = sources
        self.resolution = resolution
        self.crop_scale = crop_scale
        self.flip = flip
        sizes = np.array([s.frames.shape[0] for s in sources], np.float64)
        # Each source is drawn in proportion to the square root of its frame count, so one long
        # video does not drown the images and short clips.
        self.weights = np.sqrt(sizes) / np.sqrt(sizes).sum()

    @property
    def num_frames(self) -> int:
        return sum(s.frames.shape[0] for s in self.sources)

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        out = torch.empty(n, 3, self.resolution, self.resolution)
        picks = rng.choice(len(self.sources), size=n, p=self.weights)
        for i, si in enumerate(picks):
            frames = self.sources[si].frames
            f = frames[rng.integers(frames.shape[0])]
            h, w = f.shape[:2]
            side = max(2, int(min(h, w) * rng.uniform(*self.crop_scale)))
            y, x = rng.integers(h - side + 1), rng.integers(w - side + 1)
            crop = f[y:y + side, x:x + side].permute(2, 0, 1).float().div_(255)
            if self.flip and rng.random() < 0.5:
                crop = crop.flip(-1)
            out[i] = pool_to(crop.unsqueeze(0), self.resolution)[0]
        return out

    def fixed_view_sources(self, per_source: int) -> torch.Tensor:
        """long (N,): the source index of each of ``fixed_views(per_source)``'s views (views of
        one video are alike, so the noise of their mean is counted per source)."""
        counts = [len(evenly_spaced(s.frames.shape[0], per_source)) for s in self.sources]
        return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))

    def fixed_views(self, per_source: int) -> torch.Tensor:
        """A deterministic evaluation set: ``per_source`` evenly spaced frames of each source,
        centre square crop of the whole frame, pooled to r x r."""
        views = []
        for s in self.sources:
            t = s.frames.shape[0]
            for idx in evenly_spaced(t, per_source):
                f = s.frames[idx]
                h, w = f.shape[:2]
                side = min(h, w)
                y, x = (h - side) // 2, (w - side) // 2
                crop = f[y:y + side, x:x + side].permute(2, 0, 1).float().div_(255)
                views.append(pool_to(crop.unsqueeze(0), self.resolution)[0])
        return torch.stack(views)


def pool_to(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """Average-pool float (N, C, H, W) to (N, C, r, r): the generator's down-sampling."""
    return F.adaptive_avg_pool2d(frames, resolution)
