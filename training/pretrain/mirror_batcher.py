"""The generate stage of a mirror pass (``training/pretrain/mirror_pipeline.py`` has the pipeline):
the windows a video is generated in (``mirror_windows``) and ``WindowBatcher``, which fills
generator calls with windows of one or several videos and hands each video back, in order, once
its windows are done.
"""
from __future__ import annotations

import collections
import math
from typing import Callable, Iterable, Iterator

import torch

from s2vc.engine import video_io

from ..data.mirror_residual import residual_of

MAX_PENDING = 32         # decoded videos waiting for a full batch before partial batches run


def mirror_windows(num_frames: int, frames: int, stride: int) -> list[list[int]]:
    """The windows a video of ``num_frames`` frames is generated in: lists of frame indices,
    ``stride`` apart, ``frames`` long (fewer only for a phase shorter than that), covering every
    frame exactly once. A phase's last window, when it would be short, takes the phase's last
    ``frames`` frames instead (overlapping the one before; only its new frames are kept), so every
    STD is over ``frames`` frames wherever the video is long enough. Empty when some phase has
    fewer than 2 frames (``num_frames < 2 * stride``): the temporal STD needs T >= 2."""
    if frames < 2 or stride < 1:
        raise ValueError(f"need frames >= 2 and stride >= 1, got frames={frames}, stride={stride}")
    if num_frames < 2 * stride:
        return []
    windows = []
    for phase in range(stride):
        idx = list(range(phase, num_frames, stride))
        for start in range(0, len(idx), frames):
            chunk = idx[start:start + frames]
            if len(chunk) < frames and len(idx) >= frames:
                chunk = idx[-frames:]
            windows.append(chunk)
    return windows


class _Video:
    """One video inside ``WindowBatcher``: its frames, output, and windows still to generate."""

    def __init__(self, item: dict, frames: int, stride: int, resolution: int | None = None,
                 keep_frames: bool = True):
        self.item = item
        video = item.get("video")
        self.windows = mirror_windows(len(video), frames, stride) if video is not None else []
        if video is not None and not self.windows:
            raise ValueError(f"too short: {len(video)} frames, the mirror needs at least {2 * stride} "
                             f"(stride {stride}) for a temporal STD")
        self.out = torch.empty_like(video) if video is not None and keep_frames else None
        self.residual = (torch.empty(len(video), 3, resolution, resolution, dtype=torch.int16)
                         if video is not None and resolution is not None else None)
        self.written = torch.zeros(len(video), dtype=torch.bool) if video is not None else None
        self.preserved = [0.0] * len(self.windows)
        self.remaining = len(self.windows)

    def take(self, k: int, frames_out: torch.Tensor, preserved: float, residual: torch.Tensor | None = None) -> None:
        """Window ``k``'s uint8 (T, H, W, 3) output (and int16 (T, 3, r, r) residual): frames no
        earlier window wrote are kept."""
        idx = torch.tensor(self.windows[k])
        new = ~self.written[idx]
        if self.out is not None:
            self.out[idx[new]] = frames_out[new]
        if self.residual is not None:
            self.residual[idx[new]] = residual[new]
        self.written[idx] = True
        self.preserved[k] = preserved
        self.remaining -= 1

    def result(self) -> dict:
        """The item with ``shape`` ((N, H, W) of the frames), ``out`` (the uint8 (N, H, W, 3)
        frames, unless the video was added with ``keep_frames`` false), ``preserved`` (mean over
        windows) and ``windows`` (their number) added; the decoded frames dropped, except with a
        residual (``residual`` int16 (N, 3, r, r) added), which is composed with them."""
        keep_video = self.residual is not None
        item = {k: v for k, v in self.item.items() if k != "video" or keep_video}
        if self.windows:
            item.update(shape=tuple(self.item["video"].shape[:3]), windows=len(self.windows),
                        preserved=math.fsum(self.preserved) / len(self.windows))
            if self.out is not None:
                item["out"] = self.out
            if self.residual is not None:
                item["residual"] = self.residual
        return item


class WindowBatcher:
    """The generate stage: windows of consecutive videos fill generator calls of ``batch``
    windows of one shape (length, H, W); a video comes out, in input order, once all its windows
    are done. ``per_video``: each video's windows go alone (random strategies, whose draws are
    seeded per video by ``on_video`` before its calls). ``residual``: the flow's resolution r, to
    keep what the generator changed at r x r too (``mirror_residual.residual_of``; the residual
    storage), None = only the frames. ``keep_frames(item)``: whether a video's uint8 frames are
    made at all (default: every video's; the residual storage needs them only for its sampled
    videos, and converting them is the main thread's largest per-frame cost)."""

    def __init__(self, gen, frames: int, stride: int, batch: int, device: str | torch.device = "cpu",
                 per_video: bool = False, on_video: Callable[[dict], None] | None = None,
                 max_pending: int = MAX_PENDING, residual: int | None = None,
                 keep_frames: Callable[[dict], bool] | None = None):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.gen, self.frames, self.stride, self.batch, self.device = gen, frames, stride, batch, device
        self.per_video, self.on_video, self.max_pending = per_video, on_video, max_pending
        self.residual, self.keep_frames = residual, keep_frames
        self._pending: collections.deque[_Video] = collections.deque()
        self._groups: dict[tuple, list[tuple[_Video, int]]] = {}

    def _run(self, chunk: list[tuple[_Video, int]]) -> None:
        # a window's frames are stride apart (``mirror_windows``): a slice, a view, ten times
        # faster than gathering them with the index list
        clips = torch.stack([v.item["video"][v.windows[k][0]:v.windows[k][-1] + 1:self.stride]
                             for v, k in chunk])                                       # (B, T, H, W, 3)
        # uint8 to the device, to float there (a quarter of the bytes moved, and no float
        # conversion in this thread: 0.08-0.13 ms a 128x171 frame on the CPU); ``to_float_video`` gives
        # the CPU's values on any device, so keys equal those of the paths that convert on the CPU
        video = video_io.to_float_video(clips.to(self.device))
        result, stats = self.gen(video)
        residuals = [None] * len(chunk)
        if self.residual is not None:
            residuals = residual_of(result, video, self.residual).cpu()                 # (B, T, 3, r, r)
        keep = [i for i, (v, _) in enumerate(chunk) if v.out is not None]
        frames_out = [None] * len(chunk)
        if keep:
            kept = result if len(keep) == len(chunk) else result[torch.tensor(keep, device=result.device)]
            # to 8 bits on the device, then to the CPU: a quarter of the bytes moved
            for i, f in zip(keep, video_io.to_uint8_frames(kept).cpu()):                 # (T, H, W, 3) each
                frames_out[i] = f
        for (v, k), f, p, res in zip(chunk, frames_out, stats.preserved.float().cpu().tolist(), residuals):
            v.take(k, f, p, res)

    def _flush(self, full_only: bool) -> None:
        for key in list(self._groups):
            group = self._groups[key]
            while len(group) >= self.batch or (group and not full_only):
                chunk, group[:] = group[:self.batch], group[self.batch:]
                self._run(chunk)
            if not group:
                del self._groups[key]

    def _ready(self) -> Iterator[dict]:
        while self._pending and self._pending[0].remaining == 0:
            yield self._pending.popleft().result()

    def add(self, item: dict) -> Iterator[dict]:
        """Queue one decoded item ({"video": uint8 (N, H, W, 3) or absent, ...}); yields the items
        whose generation this finished, in input order."""
        v = _Video(item, self.frames, self.stride, self.residual,
                   keep_frames=self.keep_frames is None or "video" not in item or self.keep_frames(item))
        self._pending.append(v)
        if self.on_video is not None and v.windows:
            self.on_video(item)
        video = item.get("video")
        for k, w in enumerate(v.windows):
            self._groups.setdefault((len(w), *video.shape[1:3]), []).append((v, k))
        self._flush(full_only=not self.per_video and len(self._pending) < self.max_pending)
        yield from self._ready()

    def close(self) -> Iterator[dict]:
        """Run the partial batches left; yields the remaining items."""
        self._flush(full_only=False)
        yield from self._ready()

    def __call__(self, items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            yield from self.add(item)
        yield from self.close()


def generate_video(generator, video: torch.Tensor, frames: int, stride: int, batch: int,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, float, int]:
    """Motion-preserved frames of one video. video: uint8 (N, H, W, 3). Returns (uint8 (N, H, W, 3),
    mean preserved fraction over windows, number of windows); windows of one length go through
    ``generator`` ``batch`` at a time."""
    done = list(WindowBatcher(generator, frames, stride, batch, device, per_video=True)([{"video": video}]))
    return done[0]["out"], done[0]["preserved"], done[0]["windows"]


__all__ = ["MAX_PENDING", "WindowBatcher", "generate_video", "mirror_windows"]
