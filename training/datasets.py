"""Video clip datasets for MoCo pretraining and evaluation.

Layouts (``build_dataset(name, root, split, fold)``):

- ``ucf101``: ``root/UCF-101/<Class>/*.avi`` and ``root/ucfTrainTestlist/`` with
  ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("Class/v_..._g08_c01.avi 1") and
  ``testlist0N.txt`` ("Class/v_..._g01_c01.avi"); splits train/test, folds 1-3.
- ``hmdb51``: ``root/<class>/*.avi`` and ``root/testTrainMulti_7030_splits/<class>_test_splitN.txt``
  ("video.avi 1": 1 = train, 2 = test, 0 = unused); classes in sorted order; folds 1-3.
- ``kinetics``: annotations ``root/annotations/<split>.csv`` (or ``root/<split>.csv``) with columns
  label, youtube_id, time_start, time_end[, split]; videos found anywhere under ``root/<split>/``
  by the name ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the usual ``<split>/<label>/`` folders
  or flat); ``val`` also finds ``validate``. Class indices: the sorted labels of the train CSV.
  Annotated videos that are not on disk (Kinetics always has dead links) are dropped and counted
  at build time (``dataset.missing``), for every layout.
- ``folder``: every video file under ``root`` (recursive), unlabelled (label -1).
- ``synthetic`` (the default): the built-in static-bias set (``training/synthetic.py``), built
  once into ``root`` or a cache and read back through the UCF101 loader.

Clips. A clip is ``frames`` frames taken every ``stride`` frames from a random start, decoded
by PyAV (``engine/video_io``, threaded) and resized while decoding (``size``: shorter side, or
exact ``(H, W)``, or None for the stored size). With ``two_clips`` the key clip has its own,
independent random start. Both clips of an item come from one decoding pass.

Bad videos. A video that cannot be decoded, is shorter than a clip (``(frames - 1) * stride + 1``
frames) or has vanished is never padded: ``__getitem__`` returns a ``Skipped`` record instead
(with ``strict=True`` it raises ``SkipSample`` naming the file and the reason), ``collate_clips``
drops it and lists ``"path: reason"`` under ``batch["skipped"]`` — this works from DataLoader
workers too — and a ``SkippedCounter`` in the training loop adds those up and reports per epoch.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from s2vc.engine import video_io
from s2vc.engine.video_io import VideoDecodeError

__all__ = [
    "DATASETS",
    "VIDEO_EXTENSIONS",
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
]

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics", "folder")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
SKIP_KINDS = ("cannot decode", "too short", "missing")

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class VideoRecord:
    """One video: its file, its class index (-1 when unlabelled) and a name unique in the set."""

    path: Path
    label: int
    video_id: str


class SkipSample(RuntimeError):
    """A video that cannot give a clip; ``reason`` starts with one of ``SKIP_KINDS``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class Skipped:
    """What ``__getitem__`` returns for a skipped video (picklable, so it leaves workers)."""

    index: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class SkippedCounter:
    """Skipped videos of one epoch: ``update(batch)`` after each batch, ``report()`` and
    ``reset()`` at the end of the epoch. Counts what this process saw (one DDP rank)."""

    def __init__(self):
        self.messages: list[str] = []

    def update(self, batch_or_messages: dict | Sequence[str]) -> int:
        """Add ``batch["skipped"]`` (or a list of ``"path: reason"``); returns how many."""
        msgs = batch_or_messages.get("skipped", []) if isinstance(batch_or_messages, dict) else batch_or_messages
        self.messages.extend(str(m) for m in msgs)
        return len(msgs)

    def reset(self) -> None:
        self.messages = []

    @property
    def total(self) -> int:
        return len(self.messages)

    def by_kind(self) -> dict[str, int]:
        """Counts per reason kind (``SKIP_KINDS``; anything else is "other")."""
        kinds = Counter()
        for m in self.messages:
            kinds[next((k for k in SKIP_KINDS if f": {k}" in m), "other")] += 1
        return dict(kinds)

    def report(self, max_lines: int = 10) -> str:
        """One summary line, then the first ``max_lines`` messages (each video once)."""
        if not self.messages:
            return "skipped videos: none"
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind().items()))
        unique = list(dict.fromkeys(self.messages))
        lines = [f"skipped videos: {self.total} ({kinds})"] + [f"  {m}" for m in unique[:max_lines]]
        if len(unique) > max_lines:
            lines.append(f"  ... and {len(unique) - max_lines} more")
        return "\n".join(lines)


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
                 strict: bool = False, seed: int | None = None, cache_videos: bool = False):
        if frames < 1 or stride < 1:
            raise ValueError(f"need frames >= 1 and stride >= 1, got {frames}, {stride}")
        self.records, self.classes = list(records), list(classes)
        self.frames, self.stride, self.size = frames, stride, size
        self.two_clips, self.strict, self.seed = two_clips, strict, seed
        # decoded videos kept in memory, for small sets read many times over such as the synthetic
        # one; ``preload`` fills it before DataLoader workers fork, so they share it
        self.cache_videos = cache_videos
        self._videos: dict[int, torch.Tensor] = {}
        self.transform_q, self.transform_k = transform_q, transform_k
        self.epoch = 0
        self.missing: list[Path] = []        # set by build_dataset
        self._lengths: dict[int, int] = {}   # frame counts seen by this process

    @property
    def span(self) -> int:
        """Frames of video one clip covers."""
        return (self.frames - 1) * self.stride + 1

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

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
        if self.cache_videos:
            return self._cached_clips(i, choose)
        try:
            for exact in (False, True):
                n = self._num_frames(i, exact)
                starts = choose(n)
                if not starts:
                    raise SkipSample(path, f"too short: {n} frames, a clip needs {self.span} "
                                           f"({self.frames} frames, stride {self.stride})")
                try:
                    return starts, self._read_windows(path, starts)
                except VideoDecodeError as e:
                    if "shorter than asked" not in str(e) or exact:
                        raise
        except FileNotFoundError as e:
            raise SkipSample(path, f"missing: {e}") from e
        except VideoDecodeError as e:
            reason = str(e).removeprefix(f"{path}: ")
            if "shorter than asked" in reason:
                raise SkipSample(path, f"too short: {reason}") from e
            raise SkipSample(path, f"cannot decode: {reason}") from e
        raise AssertionError("unreachable")

    def _cached_video(self, i: int) -> torch.Tensor:
        path = self.records[i].path
        if i not in self._videos:
            try:
                self._videos[i] = video_io.read_video(path, size=self.size)
            except FileNotFoundError as e:
                raise SkipSample(path, f"missing: {e}") from e
            except VideoDecodeError as e:
                raise SkipSample(path, f"cannot decode: {str(e).removeprefix(f'{path}: ')}") from e
        return self._videos[i]

    def preload(self) -> int:
        """With ``cache_videos``: decode every video now (call it before a DataLoader forks its
        workers, so they share the frames); returns how many could be decoded."""
        if not self.cache_videos:
            raise ValueError("preload() needs cache_videos=True")
        for i in range(len(self)):
            try:
                self._cached_video(i)
            except SkipSample:
                pass                                  # reported when the item is asked for
        return len(self._videos)

    def _cached_clips(self, i: int, choose: Callable[[int], list[int]]) -> tuple[list[int], list[torch.Tensor]]:
        """``_clips`` from the whole video, decoded once (at ``size``) and kept."""
        path = self.records[i].path
        video = self._cached_video(i)
        starts = choose(len(video))
        if not starts:
            raise SkipSample(path, f"too short: {len(video)} frames, a clip needs {self.span} "
                                   f"({self.frames} frames, stride {self.stride})")
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


def _split_skipped(batch: list) -> tuple[list[dict], list[str]]:
    return [b for b in batch if not isinstance(b, Skipped)], [str(b) for b in batch if isinstance(b, Skipped)]


def collate_clips(batch: list[dict | Skipped]) -> dict:
    """Stack the good items of a ``ClipDataset`` batch: "q" (and "k") float (B, C, T, H, W),
    "label", "index", "start_q"/"start_k" long (B,), and "skipped": ["path: reason", ...].
    When every item was skipped, B = 0 and "q"/"k" are empty (check ``batch["label"].numel()``)."""
    kept, skipped = _split_skipped(batch)
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
    kept, skipped = _split_skipped(batch)
    clips = [b["clips"] for b in kept]
    return {
        "clips": torch.cat(clips) if clips else torch.empty(0),
        "video": torch.cat([torch.full((len(c),), j, dtype=torch.long) for j, c in enumerate(clips)])
        if clips else torch.empty(0, dtype=torch.long),
        "label": torch.tensor([b["label"] for b in kept], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in kept], dtype=torch.long),
        "skipped": skipped,
    }


# --------------------------------------------------------------------------------------------
# layouts


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what}: expected {path}, which does not exist")
    return path


def _check_split(name: str, split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"{name}: unknown split {split!r}; use one of {list(allowed)}")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def ucf101_records(root: str | os.PathLike, split: str = "train", fold: int = 1) -> tuple[list[VideoRecord], list[str]]:
    """UCF101's official split ``fold`` (1-3): records and class names (label = index)."""
    root = Path(root)
    _check_split("ucf101", split, ("train", "test"))
    lists = root / "ucfTrainTestlist"
    class_ind = _need(lists / "classInd.txt", "ucf101 class index")
    classes = [line.split()[1] for line in _lines(class_ind)]
    index = {c.lower(): j for j, c in enumerate(classes)}
    split_file = _need(lists / f"{split}list{fold:02d}.txt", f"ucf101 {split} split {fold}")
    videos = root / "UCF-101"
    records = []
    for line in _lines(split_file):
        rel = line.split()[0]
        folder = rel.split("/")[0]
        if folder.lower() not in index:
            raise ValueError(f"{split_file}: class folder {folder!r} of {rel!r} is not in {class_ind}")
        records.append(VideoRecord(videos / rel, index[folder.lower()], Path(rel).stem))
    return records, classes


HMDB_SPLIT_CODES = {"train": "1", "test": "2"}


def hmdb51_records(root: str | os.PathLike, split: str = "train", fold: int = 1) -> tuple[list[VideoRecord], list[str]]:
    """HMDB51's official 70/30 split ``fold`` (1-3): records and class names (sorted)."""
    root = Path(root)
    _check_split("hmdb51", split, tuple(HMDB_SPLIT_CODES))
    splits = _need(root / "testTrainMulti_7030_splits", "hmdb51 split folder")
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in splits.iterdir() if p.name.endswith(suffix))
    if not files:
        raise ValueError(f"hmdb51 split {fold}: expected files like {splits / ('<class>' + suffix)}; none found")
    classes = [p.name[: -len(suffix)] for p in files]
    records = []
    for label, (cls, f) in enumerate(zip(classes, files)):
        for line in _lines(f):
            parts = line.split()
            if len(parts) >= 2 and parts[1] == HMDB_SPLIT_CODES[split]:
                records.append(VideoRecord(root / cls / parts[0], label, Path(parts[0]).stem))
    return records, classes


KINETICS_SPLITS = {"train": ("train",), "val": ("val", "validate", "valid"), "test": ("test",)}


def _kinetics_csv(root: Path, split: str) -> Path | None:
    for name in KINETICS_SPLITS[split]:
        for path in (root / "annotations" / f"{name}.csv", root / f"{name}.csv"):
            if path.exists():
                return path
    return None


def _read_kinetics_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    need = {"youtube_id", "time_start", "time_end"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{path}: expected columns label, youtube_id, time_start, time_end, got {list(rows[0])}")
    return rows


def kinetics_records(root: str | os.PathLike, split: str = "train") -> tuple[list[VideoRecord], list[str]]:
    """Kinetics(-400) from its CSV annotations; every annotated clip as a record (existing or
    not: ``build_dataset`` drops and counts the missing ones)."""
    root = Path(root)
    _check_split("kinetics", split, tuple(KINETICS_SPLITS))
    ann = _kinetics_csv(root, split)
    if ann is None:
        raise ValueError(f"kinetics {split} annotations: expected {root / 'annotations' / (split + '.csv')} "
                         f"(or {root / (split + '.csv')}), which does not exist")
    rows = _read_kinetics_csv(ann)
    train_ann = _kinetics_csv(root, "train")
    label_rows = rows if train_ann is None or train_ann == ann else _read_kinetics_csv(train_ann)
    classes = sorted({r["label"] for r in label_rows if r.get("label")})
    index = {c: j for j, c in enumerate(classes)}
    video_dirs = [root / d for d in KINETICS_SPLITS[split] if (root / d).is_dir()]
    if not video_dirs:
        raise ValueError(f"kinetics {split} videos: expected {root / split}/<label>/<youtube_id>_<start>_<end>.mp4")
    found: dict[str, Path] = {}
    for d in video_dirs:
        for dirpath, _, names in os.walk(d):
            for n in names:
                p = Path(dirpath) / n
                if p.suffix.lower() in VIDEO_EXTENSIONS and not n.startswith("."):
                    found.setdefault(p.stem, p)
    records = []
    for r in rows:
        vid = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        label = index.get(r.get("label") or "", -1)
        path = found.get(vid, video_dirs[0] / (r.get("label") or "") / f"{vid}.mp4")
        records.append(VideoRecord(path, label, vid))
    return records, classes


def folder_records(root: str | os.PathLike) -> tuple[list[VideoRecord], list[str]]:
    """Every video under ``root`` (recursive, hidden files left out), unlabelled."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"folder dataset: expected a folder of videos at {root}, which is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    return [VideoRecord(p, -1, str(p.relative_to(root).with_suffix(""))) for p in paths], []


def default_cache_dir() -> Path:
    """``$S2VC_CACHE`` or ``~/.cache/s2vc``."""
    return Path(os.environ.get("S2VC_CACHE") or Path.home() / ".cache" / "s2vc")


def build_dataset(name: str = "synthetic", root: str | os.PathLike | None = None, split: str = "train",
                  fold: int = 1, *, frames: int = 16, stride: int = 2, size: int | tuple[int, int] | None = 128,
                  two_clips: bool = True, transform_q: Transform | None = None,
                  transform_k: Transform | None = None, strict: bool = False,
                  cache_dir: str | os.PathLike | None = None, synthetic: "SyntheticSet | None" = None,
                  seed: int | None = None, cache_videos: bool = False) -> ClipDataset:
    """A ``ClipDataset`` of ``name`` (one of ``DATASETS``) at ``root``.

    ``synthetic``: the set is built at ``root`` when given, else in
    ``cache_dir or default_cache_dir()`` / "synthetic" / one folder per parameter set
    (``synthetic``: which set, a ``training.synthetic.SyntheticSet``; default its defaults); its videos are 64x64 by default, so
    pass ``size=None`` (or 64) to keep them as rendered. ``cache_videos`` keeps every decoded
    video in memory (per process) — for small sets read many times. ``fold`` is ignored by kinetics/folder,
    ``split`` by folder. Raises ValueError for an unknown name or split and for a missing split
    file or annotation (naming the expected path), or when none of the listed videos exists.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {list(DATASETS)}")
    if name in ("ucf101", "hmdb51") and fold not in (1, 2, 3):
        raise ValueError(f"{name}: fold must be 1, 2 or 3, got {fold}")
    if name != "synthetic" and root is None:
        raise ValueError(f"{name}: a root folder is required")
    if name == "synthetic":
        from s2vc.training import synthetic as syn
        kw = (synthetic or syn.SyntheticSet()).kwargs()
        if root is None:
            root = Path(cache_dir or default_cache_dir()) / "synthetic" / syn.cache_name(**kw)
        root = syn.make_static_bias_set(root, **kw)
        records, classes = ucf101_records(root, split, fold)
    elif name == "ucf101":
        records, classes = ucf101_records(root, split, fold)
    elif name == "hmdb51":
        records, classes = hmdb51_records(root, split, fold)
    elif name == "kinetics":
        records, classes = kinetics_records(root, split)
    else:
        records, classes = folder_records(root)
    present = [r for r in records if r.path.is_file()]
    missing = [r.path for r in records if not r.path.is_file()]
    if not present:
        example = f" (e.g. {missing[0]})" if missing else ""
        raise ValueError(f"{name} {split}: no video found under {root}{example}")
    if missing:
        log.warning("%s %s: %d of %d listed videos are not on disk and are left out (first: %s)",
                    name, split, len(missing), len(records), missing[0])
    dataset = ClipDataset(present, classes, frames, stride, size, two_clips, transform_q, transform_k,
                          strict, seed, cache_videos)
    dataset.missing = missing
    return dataset
