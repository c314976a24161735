"""The manifest of a motion-preserved mirror of a dataset (``training/pretrain/mirror.py``), and the checks
pretraining runs before it trusts one.

A mirror folder holds, beside the videos (same layout and file names as the dataset):

    mirror.json                      the settings it was generated with (pinned: a run with other
                                     settings into the same folder is refused)
    .parts/part-IIII-of-NNNN.jsonl   one line per finished video of shard I (written after the
                                     video's file is in place; a killed run continues from here)
    .parts/part-IIII-of-NNNN.done    shard I finished
    manifest.json                    all shards merged: settings, videos, skipped videos, timing

Per video: its path relative to the dataset root, frames, windows, preserved fraction (mean over
windows), the source's size in bytes and mtime, the backend that ran, its file's bytes; with the
compact and residual storages, on a sample of videos (the first of each process, then every 50th),
the PSNR of the file (for residual: the key composed from it and the source) against the
generator's 8-bit frames and the bytes the same frames take losslessly. The manifest's "storage"
sums these up: the storage, its PSNR over the sample (pooled squared error) and its size ratio to
lossless there. A mirror written before the storage choice existed has no storage setting: it
reads as lossless (what it is).

The residual storage (``mirror_residual.py``) keeps no frames: its file ``<rel>.residual``
(``mirror_file``) is composed with the source video, which must stay where the dataset root says
and unchanged: checked by size and mtime when pretraining starts (``mirror_keys``, as for
every storage), by the size in the residual's header and the decoded frame count and size on
every read (``mirror_residual.check_residual``).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from s2vc.engine.video_write import atomic_path

MIRROR_FORMAT = 1
SETTINGS_FILE = "mirror.json"
MANIFEST_FILE = "manifest.json"
PARTS = ".parts"


class MirrorMismatchError(ValueError):
    """A mirror that does not match what it is asked to serve (settings, dataset, flow)."""


@dataclass(frozen=True)
class MirrorSettings:
    """What makes two mirrors the same: everything that changes a written pixel, and the dataset.

    method: "s2vc" (the flow) or "tfd" (the pixel baseline); flow_sha256 / flow_resolution: the
    flow's weights and input size; alpha, strategy, keep_fraction: the suppression; frames /
    stride: the windows the temporal STD is taken over (training's clip length and stride);
    decode_size: the shorter side frames are decoded at (None: as stored); seed: of the random
    strategies; storage: "lossless", "compact" or "residual" (``engine.video_write.STORAGES``). The backend is
    not pinned: every backend computes the same function.
    """

    dataset: str
    fold: int
    split: str
    method: str
    flow_sha256: str
    flow_resolution: int
    alpha: float | None
    strategy: str
    keep_fraction: float | None
    frames: int
    stride: int
    decode_size: int | None
    seed: int
    storage: str = "lossless"          # absent from mirrors written before the choice: lossless
    format: int = MIRROR_FORMAT

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "MirrorSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, other: "MirrorSettings") -> list[str]:
        """``"name: mine != theirs"`` for every setting that differs."""
        a, b = self.to_json(), other.to_json()
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if a[k] != b.get(k)]


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def pin_settings(out: Path, settings: MirrorSettings) -> None:
    """Write ``out/mirror.json``, or refuse when it holds other settings."""
    path = out / SETTINGS_FILE
    if path.exists():
        stored = MirrorSettings.from_json(json.loads(path.read_text()))
        diff = stored.differences(settings)
        if diff:
            raise MirrorMismatchError(f"{out} holds a mirror made with other settings ({'; '.join(diff)}): "
                                      "use another --out folder, or the same settings to continue it")
        return
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, json.dumps(settings.to_json(), indent=2) + "\n")


def part_path(out: Path, shard: int, shards: int, suffix: str = ".jsonl") -> Path:
    return out / PARTS / f"part-{shard:04d}-of-{shards:04d}{suffix}"


def read_parts(out: Path) -> dict[str, dict]:
    """Every video line of every shard part in ``out`` ({relative path: entry}); a line cut by a
    kill is ignored (its video is generated again). A video written more than once (its source
    changed, or the shard count did) keeps its latest entry (``written_at``), whatever part holds it."""
    done: dict[str, dict] = {}
    for part in sorted((out / PARTS).glob("part-*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not (isinstance(entry, dict) and "path" in entry):
                continue
            seen = done.get(entry["path"])
            if seen is None or entry.get("written_at", 0) >= seen.get("written_at", 0):
                done[entry["path"]] = entry
    return done


class PartWriter:
    """Appends one JSON line per finished (or skipped) video to this shard's part, flushed and
    fsynced, so a kill loses at most the video being written."""

    def __init__(self, out: Path, shard: int, shards: int):
        self.path = part_path(out, shard, shards)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")

    def add(self, entry: dict) -> None:
        entry = {**entry, "written_at": time.time()}
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def mark_done(out: Path, shard: int, shards: int, timing: dict) -> None:
    _atomic_write_text(part_path(out, shard, shards, ".done"), json.dumps(timing) + "\n")


def merge_if_complete(out: Path, shards: int, expected: Iterable[str]) -> Path | None:
    """Write ``out/manifest.json`` once every one of the ``shards`` parts is done; returns its
    path, or None while some shard is still running. Idempotent (same content every time)."""
    dones = [part_path(out, i, shards, ".done") for i in range(shards)]
    if not all(p.exists() for p in dones):
        return None
    settings = json.loads((out / SETTINGS_FILE).read_text())
    entries = read_parts(out)
    expected = sorted(expected)
    missing = [p for p in expected if p not in entries]
    if missing:
        raise RuntimeError(f"{out}: every shard is done but {len(missing)} videos have no entry "
                           f"(first: {missing[0]}); run the generation again to fill them in")
    videos = {p: entries[p] for p in expected if not entries[p].get("skipped")}
    skipped = {p: entries[p]["skipped"] for p in expected if entries[p].get("skipped")}
    timing = [json.loads(p.read_text()) for p in dones]
    manifest = {"settings": settings, "videos": videos, "skipped": skipped, "shards": timing,
                "storage": storage_summary(settings.get("storage", "lossless"), videos)}
    path = out / MANIFEST_FILE
    _atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def storage_summary(storage: str, videos: dict[str, dict]) -> dict:
    """{"name", "bytes" (all video files), "gb_per_hour", and for a lossy storage "psnr_db" (pooled
    over the sampled videos, weighted by frames), "size_ratio" (lossless bytes / these bytes on the
    sample), "sampled" (videos)}. Entries written before these fields existed count nothing."""
    sized = [v for v in videos.values() if "bytes" in v]
    total = sum(v["bytes"] for v in sized)
    hours = sum(v["frames"] / v["fps"] for v in sized) / 3600
    summary = {"name": storage, "bytes": total, "gb_per_hour": round(total / hours / 1e9, 4) if hours else None}
    if storage == "lossless":
        return summary
    sample = [v for v in sized if "psnr_db" in v and "lossless_bytes" in v]
    frames = sum(v["frames"] for v in sample)
    mse = sum(v["frames"] * 255.0 ** 2 / 10 ** (v["psnr_db"] / 10) for v in sample) / frames if frames else None
    return {**summary, "sampled": len(sample),
            "psnr_db": None if mse is None else round(99.0 if mse <= 0 else 10 * math.log10(255.0 ** 2 / mse), 3),
            "size_ratio": round(sum(v["lossless_bytes"] for v in sample) / sum(v["bytes"] for v in sample), 3)
            if sample else None}


def load_manifest(out: str | os.PathLike) -> dict:
    """The merged manifest of the mirror at ``out``; a clear error when there is none yet."""
    out = Path(out)
    path = out / MANIFEST_FILE
    if not path.is_file():
        hint = (" (its generation has not finished: run it again to complete it)"
                if (out / SETTINGS_FILE).exists() else " (expected a folder written by s2vc generate --dataset)")
        raise MirrorMismatchError(f"{out} holds no mirror manifest {MANIFEST_FILE}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MirrorMismatchError(f"{path} is not a valid manifest: {exc}") from None
    if manifest.get("settings", {}).get("format") != MIRROR_FORMAT:
        raise MirrorMismatchError(f"{path}: mirror format {manifest.get('settings', {}).get('format')!r}, "
                                  f"this version reads {MIRROR_FORMAT}; generate it again")
    manifest["settings"].setdefault("storage", "lossless")         # written before the choice existed
    manifest.setdefault("storage", {"name": manifest["settings"]["storage"]})
    return manifest


RESIDUAL_SUFFIX = ".residual"   # the residual storage's file: <rel>.residual (mirror_residual.py)


def residual_path(out: str | os.PathLike, rel: str) -> Path:
    """The residual file of the video at ``rel`` (relative to the dataset root) in mirror ``out``."""
    return Path(out) / f"{rel}{RESIDUAL_SUFFIX}"


def mirror_file(out: str | os.PathLike, rel: str, storage: str = "lossless") -> Path:
    """The file that holds video ``rel`` in mirror ``out``: the same relative path for the frame
    storages, ``<rel>.residual`` for the residual storage."""
    if storage == "residual":
        return residual_path(out, rel)
    return Path(out) / rel


def source_stamp(path: Path) -> dict:
    """What identifies a source video's content cheaply: its size and mtime."""
    st = path.stat()
    return {"source_size": st.st_size, "source_mtime": st.st_mtime}


def mirror_keys(mirror: str | os.PathLike, root: str | os.PathLike, records: list, *,
                expect: dict) -> tuple[list[Path], list[int], dict]:
    """The mirror's file for each of ``records`` (videos of the dataset at ``root``), after
    checking that the mirror serves them: ``expect`` holds the settings the caller trains with
    (any of ``MirrorSettings``' fields: dataset, fold, frames, stride, decode_size, method,
    flow_sha256, alpha, strategy, ...) and each must equal the mirror's; every record must be in
    the mirror, its source unchanged since (size and mtime). Returns (paths, {index: the mirror's
    reason} of the records it skipped as unusable — the dataset skips them in every batch, the mirror's settings:
    with storage "residual" the paths are residual files, composed with the sources). Raises
    ``MirrorMismatchError`` naming the first thing that does not match."""
    mirror = Path(mirror)
    manifest = load_manifest(mirror)
    settings = manifest["settings"]
    for key, want in expect.items():
        have = settings.get(key)
        same = (abs(have - want) <= 1e-9 * max(1.0, abs(want))
                if isinstance(have, float) and isinstance(want, float) else have == want)
        if not same:
            raise MirrorMismatchError(f"mirror {mirror} was generated with {key}={have!r}, this run has "
                                      f"{key}={want!r}: generate a mirror with these settings "
                                      "(s2vc generate --dataset ... --out NEW) or train with the mirror's")
    videos, skipped = manifest["videos"], manifest["skipped"]
    root = Path(root)
    paths, left_out, absent = [], {}, []
    for k, record in enumerate(records):
        rel = Path(record.path).relative_to(root).as_posix()
        if rel in skipped:
            left_out[k] = skipped[rel]
            paths.append(mirror / rel)
            continue
        if rel not in videos:
            absent.append(rel)
            continue
        entry = videos[rel]
        stamp = source_stamp(Path(record.path))
        if any(entry.get(key) != value for key, value in stamp.items()):
            raise MirrorMismatchError(f"{record.path} changed since mirror {mirror} was generated from it "
                                      f"(size/mtime {stamp} vs {entry.get('source_size')}/"
                                      f"{entry.get('source_mtime')}): generate the mirror again")
        path = mirror_file(mirror, rel, settings["storage"])
        if not path.is_file():
            raise MirrorMismatchError(f"mirror {mirror} lists {rel} but its file {path.name} is not there")
        paths.append(path)
    if absent:
        raise MirrorMismatchError(f"mirror {mirror} lacks {len(absent)} of the {len(records)} videos this run "
                                  f"reads (first: {absent[0]}): it was generated from another split or set")
    return paths, left_out, settings
