"""The dataset layouts on disk: each parser turns a dataset's folder and its official split
files into ``VideoRecord``s (file, class index, name) and the class names.

- ``ucf101``: ``root/UCF-101/<Class>/*.avi`` and ``root/ucfTrainTestlist/`` with
  ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("Class/v_..._g08_c01.avi 1") and
  ``testlist0N.txt`` ("Class/v_..._g01_c01.avi"); splits train/test, folds 1-3.
- ``hmdb51``: ``root/<class>/*.avi`` and ``root/testTrainMulti_7030_splits/<class>_test_splitN.txt``
  ("video.avi 1": 1 = train, 2 = test, 0 = unused); classes in sorted order; folds 1-3.
- ``kinetics``: annotations ``root/annotations/<split>.csv`` (or ``root/<split>.csv``) with columns
  label, youtube_id, time_start, time_end[, split]; videos found anywhere under ``root/<split>/``
  by the name ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the usual ``<split>/<label>/`` folders
  or flat); ``val`` also finds ``validate``. Class indices: the sorted labels of the train CSV.
- ``folder``: every video file under ``root`` (recursive), unlabelled (label -1).

Parsers list what the split files name, on disk or not (``build_dataset`` drops and counts the
missing ones). A missing split file or annotation raises ValueError naming the expected path.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from s2vc.engine.video_io import VIDEO_EXTENSIONS

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoRecord",
    "ucf101_records",
    "hmdb51_records",
    "kinetics_records",
    "folder_records",
    "check_fold",
    "group_of",
]


@dataclass(frozen=True)
class VideoRecord:
    """One video: its file, its class index (-1 when unlabelled) and a name unique in the set."""

    path: Path
    label: int
    video_id: str


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what}: expected {path}, which does not exist")
    return path


def _check_split(name: str, split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"{name}: unknown split {split!r}; use one of {list(allowed)}")


def check_fold(name: str, fold: int) -> None:
    """UCF101: fold >= 1 (1-3 official; more are one's own, e.g. ``s2vc split-val``'s, read from
    their list files); HMDB51: 1-3 (ValueError otherwise)."""
    if name == "ucf101" and (not isinstance(fold, int) or fold < 1):
        raise ValueError(f"ucf101: fold must be 1, 2, 3 or a fold of one's own (>= 1), got {fold}")
    if name == "hmdb51" and fold not in (1, 2, 3):
        raise ValueError(f"hmdb51: fold must be 1, 2 or 3, got {fold}")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines() if line.strip()]


def ucf101_records(root: str | os.PathLike, split: str = "train", fold: int = 1, *,
                   val: bool = False) -> tuple[list[VideoRecord], list[str]]:
    """UCF101's split ``fold`` (1-3 official; more are one's own, ``s2vc split-val``): records and
    class names (label = index). ``val``:
    a ``vallistNN.txt`` split may be asked for too (the synthetic set's validation split, or one's
    own: videos held out of ``trainlistNN.txt``, listed as it lists them)."""
    root = Path(root)
    _check_split("ucf101", split, ("train", "test", "val") if val else ("train", "test"))
    lists = root / "ucfTrainTestlist"
    class_ind = _need(lists / "classInd.txt", "ucf101 class index")
    classes = []
    for line in _lines(class_ind):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{class_ind}: line {line!r} is not '<index> <ClassName>' (UCF101's classInd.txt: "
                             "'1 ApplyEyeMakeup', one class per line, names without spaces)")
        classes.append(parts[1])
    index = {c.lower(): j for j, c in enumerate(classes)}
    split_file = _need(lists / f"{split}list{fold:02d}.txt", f"ucf101 {split} split {fold}")
    videos = root / "UCF-101"
    records = []
    for line in _lines(split_file):
        rel = _list_path(line)
        folder = rel.split("/")[0]
        if folder.lower() not in index:
            raise ValueError(f"{split_file}: class folder {folder!r} of {rel!r} is not in {class_ind}")
        records.append(VideoRecord(videos / rel, index[folder.lower()], Path(rel).stem))
    return records, classes


_GROUP = re.compile(r"_g(\d+)_c\d+$")


def group_of(video_id: str) -> int:
    """The group number of a UCF101-style id ``v_<Class>_gXX_cYY`` (the synthetic set's too)."""
    m = _GROUP.search(video_id)
    if m is None:
        raise ValueError(f"{video_id!r} is not a UCF101-style video id v_<Class>_gXX_cYY")
    return int(m.group(1))


def _list_path(line: str) -> str:
    """The video of a split-list line: "Class/v.avi 3" (train lists) or "Class/v.avi" (test
    lists); a name with spaces is kept whole (only a trailing class number is cut off)."""
    parts = line.rsplit(None, 1)
    return parts[0] if len(parts) == 2 and parts[1].isdigit() else line


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

