"""Video clip datasets for MoCo pretraining and evaluation.

Datasets (``build_dataset(name, root, split, fold)``, ``name`` one of ``DATASETS``): ``ucf101``,
``hmdb51``, ``kinetics`` and ``folder`` read the layouts described in ``training/data/layouts.py``;
``synthetic`` (the default) is the built-in static-bias set (``training/data/synthetic.py``), built
once into ``root`` or a cache and read back through the UCF101 loader. Annotated videos that are
not on disk (Kinetics always has dead links) are dropped and counted at build time
(``dataset.missing``), for every layout.

Clips. A clip is ``frames`` frames taken every ``stride`` frames from a random start, decoded
by PyAV (``engine/video_io``, threaded) and resized while decoding (``size``: shorter side, or
exact ``(H, W)``, or None for the stored size). With ``two_clips`` the key clip has its own,
independent random start. Both clips of an item come from one decoding pass. With
``cache_videos`` whole videos are decoded once and kept (``training/data/video_cache.py``).

Bad videos (``training/data/skips.py``). A video that cannot be decoded, is shorter than a clip
(``(frames - 1) * stride + 1`` frames) or has vanished is never padded: ``__getitem__`` returns
a ``Skipped`` record instead (with ``strict=True`` it raises ``SkipSample`` naming the file and
the reason), ``collate_clips`` drops it and lists ``"path: reason"`` under ``batch["skipped"]``
— this works from DataLoader workers too — and a ``SkippedCounter`` in the training loop adds
those up and reports per epoch.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from s2vc.engine import video_io
from s2vc.engine.video_io import VideoDecodeError

from .layouts import (VIDEO_EXTENSIONS, VideoRecord, folder_records, hmdb51_records, kinetics_records,
                      ucf101_records, check_fold)
from .skips import SKIP_KINDS, SkippedCounter, SkipSample, Skipped, skip_for, split_skipped
from .synthetic import SyntheticSet, cache_name, make_static_bias_set
from .video_cache import DecodedVideos

__all__ = [
    "DATASETS",
    "VIDEO_EXTENSIONS",
    "SKIP_KINDS",
    "VideoRecord",
    "SkipSample",
    "Skipped",
    "SkippedCounter",
    "ClipDataset",
    "EvalWindows",
    "build_dataset",
    "collate_clips",
    "collate_windows",
    "window_starts",
    "ucf101_records",
    "hmdb51_records",
    "kinetics_records",
    "folder_records",
    "default_cache_dir",
    "dataset_root",
    "split_records",
]

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics", "folder")

Transform = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# clips


def window_starts(num_frames: int, span: int, num_clips: int | None = None, overlap: float = 0.5) -> list[int]:
    """Starts of the evaluation windows of a video (CoCLR protocol): windows of ``span`` frames
    every ``round(span * (1 - overlap))`` frames from frame 0; with ``num_clips``, that many of
    them spread evenly over the video (all of them when there are fewer). Empty if too short."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    hop = max(1, round(span * (1 - overlap)))
    starts = list(range(0, num_frames - span + 1, hop))
    if num_clips is not None and len(starts) > num_clips:
        starts = [starts[j] for j in np.linspace(0, len(starts) - 1, num_clips).round().astype(int)]
    return starts


class ClipDataset(Dataset):
    """Random clips of videos; item ``i`` is a dict::

        "q":       float (C, T, H, W) in [0, 1], transform_q applied (T = frames)
        "k":       the same for a second clip with its own random start (only with two_clips)
        "label":   int (-1 when unlabelled)
        "index":   i
        "start_q", "start_k": the clips' first frame indices in the video

    or a ``Skipped`` record (see the module docstring). Starts are drawn from torch's RNG (seeded
    per DataLoader worker) when ``seed`` is None, else from ``(seed, epoch, i)`` — call
    ``set_epoch`` every epoch. Transforms take and return float (C, T, H, W) and use torch's RNG.
    """

    def __init__(self, records: Sequence[VideoRecord], classes: Sequence[str], frames: int = 16, stride: int = 2,
                 size: int | tuple[int, int] | None = 128, two_clips: bool = True,
                 transform_q: Transform | None = None, transform_k: Transform | None = None,
                 strict: bool = False, seed: int | None = None, cache_videos: bool = False,
                 key_videos: Sequence[Path] | None = None, key_residual: dict | None = None,
                 key_left_out: dict[int, str] | None = None):
        if frames < 1 or stride < 1:
            raise ValueError(f"need frames >= 1 and stride >= 1, got {frames}, {stride}")
        self.records, self.classes = list(records), list(classes)
        self.frames, self.stride, self.size = frames, stride, size
        self.two_clips, self.strict, self.seed = two_clips, strict, seed
        # decoded videos kept in memory, for small sets read many times over such as the synthetic
        # one; ``preload`` fills it before DataLoader workers fork, so they share it
        self.video_cache = DecodedVideos(size) if cache_videos else None
        self.transform_q, self.transform_k = transform_q, transform_k
        # pre-generated keys (``s2vc pretrain --keys``): the key clip is read from the mirror's
        # video at the indices the original key clip would have, then transformed the same way
        if key_videos is not None and len(key_videos) != len(self.records):
            raise ValueError(f"key_videos: {len(key_videos)} paths for {len(self.records)} videos")
        self.key_videos = list(key_videos) if key_videos is not None else None
        # a residual mirror (``mirror_residual.py``): key_videos are residual files, each composed with
        # the key clip decoded from the source; key_residual holds the mirror's flow_sha256 and
        # flow_resolution, which every residual's header must match
        self.key_residual = dict(key_residual) if key_residual is not None else None
        if self.key_residual is not None and key_videos is None:
            raise ValueError("key_residual needs key_videos (the residual files)")
        self.key_left_out = dict(key_left_out or {})     # {index: why the mirror skipped it}: Skipped items
        self.key_cache = (DecodedVideos(size) if cache_videos and key_videos is not None and key_residual is None
                          else None)
        self._residuals: dict = {}   # with cache_videos: residuals read once (mirror_residual.residual_at)
        # the epoch in shared memory: DataLoader workers that persist across epochs (they hold their
        # own copy of this dataset) read the epoch the main process set, so clips change each epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.missing: list[Path] = []        # set by build_dataset
        self.root: Path | None = None        # the dataset's folder, set by build_dataset
        self._lengths: dict[int, int] = {}   # frame counts seen by this process

    @property
    def span(self) -> int:
        """Frames of video one clip covers."""
        return (self.frames - 1) * self.stride + 1

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} videos, {len(self.classes)} classes, frames={self.frames}, "
                f"stride={self.stride}, size={self.size}, two_clips={self.two_clips})")

    # decoding -------------------------------------------------------------------------------

    def _num_frames(self, i: int, exact: bool = False) -> int:
        if exact or i not in self._lengths:
            path = self.records[i].path
            if exact:  # the header's count was wrong: count decoded frames
                n = sum(1 for _ in video_io.iter_video_frames(path, size=(2, 2)))
            else:
                n = video_io.probe_video(path, exact=False).num_frames
            self._lengths[i] = n
        return self._lengths[i]

    def _read_windows(self, path: Path, starts: Sequence[int]) -> list[torch.Tensor]:
        """Clips at ``starts``, each uint8 (frames, H, W, 3), from one decoding pass that keeps
        only frames on a common grid (the gcd of the stride and the start offsets)."""
        lo, hi = min(starts), max(starts) + self.span
        step = math.gcd(self.stride, *(s - lo for s in starts))
        count = (hi - 1 - lo) // step + 1
        video = video_io.read_video(path, size=self.size, start_frame=lo, step=step,
                                    max_frames=count, min_frames=count)
        every = self.stride // step
        return [video[(s - lo) // step::every][: self.frames] for s in starts]

    def _clips(self, i: int, choose: Callable[[int], list[int]]) -> tuple[list[int], list[torch.Tensor]]:
        """Decode the clips at ``choose(num_frames)``; raises SkipSample for a bad video."""
        path = self.records[i].path
        if self.video_cache is not None:
            return self._cached_clips(i, choose)
        try:
            # the header's frame count first; when the decoder then runs short, count the frames
            for exact in (False, True):
                n = self._num_frames(i, exact)
                starts = self._starts_or_skip(path, n, choose)
                try:
                    return starts, self._read_windows(path, starts)
                except VideoDecodeError as e:
                    if "shorter than asked" not in str(e) or exact:
                        raise
        except (FileNotFoundError, VideoDecodeError) as e:
            raise skip_for(path, e) from e
        raise AssertionError("unreachable")

    def _starts_or_skip(self, path: Path, num_frames: int, choose: Callable[[int], list[int]]) -> list[int]:
        """``choose(num_frames)``, or SkipSample when the video is too short for any clip."""
        starts = choose(num_frames)
        if not starts:
            raise SkipSample(path, f"too short: {num_frames} frames, a clip needs {self.span} "
                                   f"({self.frames} frames, stride {self.stride})")
        return starts

    def preload(self) -> int:
        """With ``cache_videos``: decode every video now (call it before a DataLoader forks its
        workers, so they share the frames); returns how many could be decoded."""
        if self.video_cache is None:
            raise ValueError("preload() needs cache_videos=True")
        if self.key_cache is not None:
            self.key_cache.preload(self.key_videos)
        return self.video_cache.preload([r.path for r in self.records])

    def _cached_clips(self, i: int, choose: Callable[[int], list[int]]) -> tuple[list[int], list[torch.Tensor]]:
        """``_clips`` from the whole video, decoded once (at ``size``) and kept."""
        path = self.records[i].path
        video = self.video_cache.get(i, path)
        starts = self._starts_or_skip(path, len(video), choose)
        return starts, [video[s:s + self.span:self.stride] for s in starts]

    def _random_starts(self, i: int, n: int) -> list[int]:
        if n < self.span:
            return []
        count = 2 if self.two_clips else 1
        high = n - self.span + 1
        if self.seed is None:
            return torch.randint(high, (count,)).tolist()
        return np.random.default_rng([self.seed, self.epoch, i]).integers(0, high, size=count).tolist()

    # items ----------------------------------------------------------------------------------

    def __getitem__(self, i: int) -> dict | Skipped:
        try:
            if self.two_clips and i in self.key_left_out:
                raise SkipSample(self.records[i].path, self.key_left_out[i])
            if self.two_clips and self.key_residual is not None:
                starts, clips = self._clips_with_residual_key(i)
            elif self.two_clips and self.key_videos is not None:
                starts, clips = self._clips_with_mirror_key(i)
            else:
                starts, clips = self._clips(i, lambda n: self._random_starts(i, n))
        except SkipSample as e:
            if self.strict:
                raise
            return Skipped(i, e.path, e.reason)
        q = video_io.to_float_video(clips[0])
        item = {"q": self.transform_q(q) if self.transform_q else q,
                "label": self.records[i].label, "index": i, "start_q": starts[0]}
        if self.two_clips:
            k = video_io.to_float_video(clips[1])
            item["k"] = self.transform_k(k) if self.transform_k else k
            item["start_k"] = starts[1]
        return item

    def _clips_with_mirror_key(self, i: int) -> tuple[list[int], list[torch.Tensor]]:
        """The query clip from the video, the key clip from its mirror at the start the key would
        have had (the two starts are drawn together, exactly as without a mirror)."""
        drawn: list[int] = []

        def query_only(n: int) -> list[int]:
            drawn[:] = self._random_starts(i, n)
            return drawn[:1]

        starts, clips = self._clips(i, query_only)
        path = self.key_videos[i]
        try:
            if self.key_cache is not None:
                video = self.key_cache.get(i, path)
                key = video[drawn[1]:drawn[1] + self.span:self.stride]
                if len(key) < self.frames:
                    raise VideoDecodeError(f"{path}: shorter than asked ({len(video)} frames)")
            else:
                key = self._read_windows(path, drawn[1:])[0]
        except (FileNotFoundError, VideoDecodeError) as e:
            raise skip_for(path, e) from e
        return drawn, [clips[0], key]

    def _clips_with_residual_key(self, i: int) -> tuple[list[int], list[torch.Tensor]]:
        """Both clips from the source (the same draws as without a mirror, decoded in one pass), the
        key clip then composed with the mirror's residual at its frames (``mirror_residual.compose``):
        the lossless mirror's key frames. A residual that does not fit the source raises
        ``ResidualMismatchError`` (not a skip: the mirror and the dataset disagree)."""
        from .mirror_residual import compose, residual_at
        starts, clips = self._clips(i, lambda n: self._random_starts(i, n))
        path = self.key_videos[i]
        idx = list(range(starts[1], starts[1] + self.span, self.stride))[: len(clips[1])]
        try:   # with cache_videos the whole residual is read once and kept
            residual = residual_at(path, idx, size=tuple(clips[1].shape[1:3]), source=self.records[i].path,
                                   cache=self._residuals if self.video_cache is not None else None,
                                   **self.key_residual)
        except (FileNotFoundError, VideoDecodeError) as e:
            raise skip_for(path, e) from e
        return starts, [clips[0], compose(clips[1], residual)]

    def eval_clips(self, i: int, num_clips: int | None = 10, overlap: float = 0.5,
                   transform: Transform | None = None) -> dict:
        """All the evaluation windows of video ``i`` (``window_starts``), for retrieval and the
        linear probe: {"clips": float (N, C, T, H, W), "label", "index", "starts"} (with a
        multi-crop ``transform`` each window gives several clips, N = windows x crops). Raises
        ``SkipSample`` for a bad video, whatever ``strict`` says (the caller decides)."""
        starts, clips = self._clips(i, lambda n: window_starts(n, self.span, num_clips, overlap))
        video = [video_io.to_float_video(c) for c in clips]
        if transform is not None:
            video = [transform(c) for c in video]
        # a multi-crop transform (ten-crop testing) gives (V, C, T, h, w) per window: V clips each
        views = [v if v.ndim == 5 else v[None] for v in video]
        return {"clips": torch.cat(views), "label": self.records[i].label, "index": i,
                "starts": [s for s, v in zip(starts, views) for _ in range(len(v))]}


class EvalWindows(Dataset):
    """``dataset.eval_clips`` as a Dataset, so a DataLoader decodes in workers; bad videos give
    ``Skipped`` (or raise with ``dataset.strict``). Batch with ``collate_windows``."""

    def __init__(self, dataset: ClipDataset, num_clips: int | None = 10, overlap: float = 0.5,
                 transform: Transform | None = None):
        self.dataset, self.num_clips, self.overlap, self.transform = dataset, num_clips, overlap, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict | Skipped:
        try:
            return self.dataset.eval_clips(i, self.num_clips, self.overlap, self.transform)
        except SkipSample as e:
            if self.dataset.strict:
                raise
            return Skipped(i, e.path, e.reason)


def collate_clips(batch: list[dict | Skipped]) -> dict:
    """Stack the good items of a ``ClipDataset`` batch: "q" (and "k") float (B, C, T, H, W),
    "label", "index", "start_q"/"start_k" long (B,), and "skipped": ["path: reason", ...].
    When every item was skipped, B = 0 and "q"/"k" are empty (check ``batch["label"].numel()``)."""
    kept, skipped = split_skipped(batch)
    if kept:
        out = default_collate(kept)
    else:
        empty = torch.empty(0, dtype=torch.long)
        out = {"q": torch.empty(0), "k": torch.empty(0), "label": empty, "index": empty}
    out["skipped"] = skipped
    return out


def collate_windows(batch: list[dict | Skipped]) -> dict:
    """Concatenate ``EvalWindows`` items: "clips" float (N_total, C, T, H, W), "video" long
    (N_total,) = position of the clip's video in "label"/"index" (B,), and "skipped"."""
    kept, skipped = split_skipped(batch)
    clips = [b["clips"] for b in kept]
    return {
        "clips": torch.cat(clips) if clips else torch.empty(0),
        "video": torch.cat([torch.full((len(c),), j, dtype=torch.long) for j, c in enumerate(clips)])
        if clips else torch.empty(0, dtype=torch.long),
        "label": torch.tensor([b["label"] for b in kept], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in kept], dtype=torch.long),
        "skipped": skipped,
    }


def default_cache_dir() -> Path:
    """``$S2VC_CACHE`` or ``~/.cache/s2vc``."""
    return Path(os.environ.get("S2VC_CACHE") or Path.home() / ".cache" / "s2vc")


def dataset_root(name: str, root: str | os.PathLike | None, *, synthetic: SyntheticSet | None = None,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder dataset ``name`` lives in. For the synthetic set: ``root``, else one folder per
    parameter set in the cache, built there first unless already built (``synthetic``: which
    set; None: the defaults). For the others ``root``, which is required."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {list(DATASETS)}")
    if name == "synthetic":
        kw = (synthetic or SyntheticSet()).kwargs()
        if root is None:
            root = Path(cache_dir or default_cache_dir()) / "synthetic" / cache_name(**kw)
        return make_static_bias_set(root, **kw)
    if root is None:
        raise ValueError(f"{name}: a root folder is required")
    return Path(root)


def split_records(name: str, root: str | os.PathLike, split: str, fold: int = 1) -> list[VideoRecord]:
    """The records listed for ``split`` of dataset ``name`` at ``root`` (``dataset_root``)."""
    return _records(name, root, split, fold)[0]


def _records(name: str, root: str | os.PathLike, split: str, fold: int) -> tuple[list[VideoRecord], list[str]]:
    """The records of ``split`` and the class names of dataset ``name`` at ``root``."""
    if name in ("synthetic", "ucf101"):  # the synthetic set is written in UCF101's layout
        return ucf101_records(root, split, fold, val=True)
    if name == "hmdb51":
        return hmdb51_records(root, split, fold)
    if name == "kinetics":
        return kinetics_records(root, split)
    return folder_records(root)


def build_dataset(name: str = "synthetic", root: str | os.PathLike | None = None, split: str = "train",
                  fold: int = 1, *, frames: int = 16, stride: int = 2, size: int | tuple[int, int] | None = 128,
                  two_clips: bool = True, transform_q: Transform | None = None,
                  transform_k: Transform | None = None, strict: bool = False,
                  cache_dir: str | os.PathLike | None = None, synthetic: SyntheticSet | None = None,
                  seed: int | None = None, cache_videos: bool = False,
                  keys: "str | os.PathLike | dict | None" = None) -> ClipDataset:
    """A ``ClipDataset`` of ``name`` (one of ``DATASETS``) at ``root``.

    ``synthetic``: the set ``synthetic`` (a ``training.synthetic.SyntheticSet``; None: its
    defaults) is built at ``root`` when given, else in ``cache_dir or default_cache_dir()`` /
    "synthetic" / one folder per parameter set; its videos are 64x64 by default, so pass
    ``size=None`` (or 64) to keep them as rendered. ``cache_videos`` keeps every decoded video in
    memory (per process) — for small sets read many times. ``fold`` is ignored by
    kinetics/folder, ``split`` by folder. ``keys``: a motion-preserved mirror of this dataset
    (``training/pretrain/mirror.py``) whose videos give the key clips, as {"path": MIRROR, "expect":
    {setting: value}} — the mirror must match ``expect`` and hold every video (else
    ``MirrorMismatchError``); videos it skipped as unusable stay listed as ``Skipped`` items (so
    the sampler draws the order of an arm without the mirror, whatever that arm reads of them).
    Raises ValueError for an unknown name or split and for a missing split file or annotation
    (naming the expected path), or when none of the listed videos exists.
    """
    check_fold(name, fold)
    root = dataset_root(name, root, synthetic=synthetic, cache_dir=cache_dir)
    records, classes = _records(name, root, split, fold)
    present = [r for r in records if r.path.is_file()]
    missing = [r.path for r in records if not r.path.is_file()]
    if not present:
        example = f" (e.g. {missing[0]})" if missing else ""
        raise ValueError(f"{name} {split}: no video found under {root}{example}")
    if missing:
        log.warning("%s %s: %d of %d listed videos are not on disk and are left out (first: %s)",
                    name, split, len(missing), len(records), missing[0])
    key_videos, key_residual, key_left_out = None, None, {}
    if keys is not None:
        from .mirror_manifest import mirror_keys
        key_videos, key_left_out, settings = mirror_keys(keys["path"], root, present, expect=keys.get("expect", {}))
        if settings["storage"] == "residual":
            key_residual = {"flow_sha256": settings["flow_sha256"], "flow_resolution": settings["flow_resolution"]}
        for k, why in list(key_left_out.items())[:1]:
            log.warning("%s %s: %d videos the mirror skipped as unusable give no clip, skipped in every batch "
                        "(first: %s: %s)", name, split, len(key_left_out), present[k].path, why)
    dataset = ClipDataset(present, classes, frames, stride, size, two_clips, transform_q, transform_k,
                          strict, seed, cache_videos, key_videos, key_residual, key_left_out)
    dataset.missing = missing
    dataset.root = Path(root)
    return dataset
