"""The frames a flow-training run reads: named files (``--data``) or the training split of a
dataset (``--dataset``), split into training frames, held-out views and calibration videos.

With a dataset, only the videos listed for its *training* split are ever opened (``folder``, which
has no split, gives every video): a ``holdout`` fraction of them (evenly spaced over the list, so
spread over the classes; at least one, at most ``MAX_HELDOUT_VIDEOS``) is held out whole for the
held-out bits/dim, the rest train. Each video keeps ``frames_per_video`` frames spread evenly
over its first ``max_frames``, so thousands of videos fit in memory. Under torchrun every process
decodes only its own shard of the training videos; the held-out views are rank 0's alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from s2vc.engine.video_io import VIDEO_EXTENSIONS

from ..data.datasets import DATASETS, dataset_root, split_records
from .frames import (FrameSampler, FrameSource, collect_media, evenly_spaced, load_sources, split_holdout,
                     synthetic_frames)
from ..data.synthetic import SyntheticSet

MAX_HELDOUT_VIDEOS = 8     # held-out views are scored every epoch: 8 videos x 32 views is ~5 s at 32x32
MAX_CALIBRATION_VIDEOS = 32
CALIBRATION_WINDOWS = 64   # windows of clip_len frames the alpha is read off, over all videos


@dataclass
class FlowData:
    """What one process of a run trains and scores on.

    train: random crops of this process's training frames; val_views: float (N, 3, r, r) in
    [0, 1], the held-out views (rank 0 only; None without held-out data) and val_sources long
    (N,) the held-out source of each (for the noise of their mean); calibration_videos:
    training videos whose windows calibrate alpha (rank 0); skipped: "path: reason" of files
    that could not be decoded; record: what was read, for the checkpoint's meta; check_videos:
    the videos the fit check reads of this data (the whole training split, or the decoded files).
    """

    train: FrameSampler
    val_views: torch.Tensor | None
    calibration_videos: list[Path]
    skipped: list[str]
    record: dict = field(default_factory=dict)
    val_sources: torch.Tensor | None = None
    check_videos: list[Path] = field(default_factory=list)   # what the fit check reads of this data


def training_videos(dataset: str, root: str | os.PathLike | None, fold: int = 1,
                    synthetic: SyntheticSet | None = None) -> tuple[Path, list[Path]]:
    """(the dataset's folder, the videos of its training split that exist on disk, in list
    order). The synthetic set is built first when needed (``dataset_root``). Test videos are
    never listed, let alone opened."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    folder = dataset_root(dataset, root, synthetic=synthetic)
    records = split_records(dataset, folder, "train", fold)
    present = [r.path for r in records if r.path.is_file()]
    if not present:
        example = f" (e.g. {records[0].path})" if records else ""
        raise ValueError(f"{dataset} train: no video found under {folder}{example}")
    return folder, present


def hold_out_videos(videos: list[Path], fraction: float,
                    cap: int = MAX_HELDOUT_VIDEOS) -> tuple[list[Path], list[Path]]:
    """(training videos, held-out videos): ``fraction`` of ``videos`` (rounded, at least one
    when ``fraction`` > 0 and two or more videos, at most ``cap``), evenly spaced over the list."""
    if fraction <= 0 or len(videos) < 2:
        return list(videos), []
    count = min(cap, len(videos) - 1, max(1, round(len(videos) * fraction)))
    held = set(evenly_spaced(len(videos), count).tolist())
    return [v for i, v in enumerate(videos) if i not in held], [v for i, v in enumerate(videos) if i in held]


def spread(videos: list[Path], count: int | None) -> list[Path]:
    """At most ``count`` of ``videos``, evenly spaced over the list (all when None)."""
    return [videos[i] for i in evenly_spaced(len(videos), count)]


def calibration_plan(videos: list[Path]) -> tuple[list[Path], int]:
    """(videos, windows per video) for calibrating alpha: up to ``MAX_CALIBRATION_VIDEOS``
    videos and ``CALIBRATION_WINDOWS`` windows in all (encoding is what costs)."""
    chosen = spread(videos, MAX_CALIBRATION_VIDEOS)
    return chosen, max(1, CALIBRATION_WINDOWS // max(1, len(chosen)))


def _procedural(cfg) -> list[FrameSource]:
    if not cfg.synthetic:
        return []
    return [FrameSource("synthetic", synthetic_frames(cfg.synthetic, cfg.decode_size, cfg.seed))]


def _from_files(cfg, rank: int, log) -> FlowData:
    """``--data``: every process decodes every file (each draws its own crops)."""
    files = collect_media(cfg.data)
    if not files:
        raise FileNotFoundError(f"train-flow: no video or image files found in {cfg.data} "
                                "(expected video/image files or folders holding them)")
    sources, skipped = load_sources(files, cfg.decode_size, cfg.max_frames, log=log)
    if cfg.val_data:
        val_sources, val_skipped = load_sources(collect_media(cfg.val_data), cfg.decode_size,
                                                cfg.max_frames, log=log)
        skipped += val_skipped
        train_sources = sources
    else:
        train_sources, val_sources = split_holdout(sources, cfg.holdout)
    train_sources += _procedural(cfg)
    if not train_sources:
        raise ValueError(f"train-flow: none of the {len(files)} inputs could be decoded "
                         f"(first: {skipped[0] if skipped else 'none'})")
    val_views = val_of = None
    if val_sources and rank == 0:
        held = FrameSampler(val_sources, cfg.resolution)
        val_views, val_of = held.fixed_views(cfg.val_frames), held.fixed_view_sources(cfg.val_frames)
    decoded = {s.name for s in sources}
    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTENSIONS and str(f) in decoded]
    return FlowData(FrameSampler(train_sources, cfg.resolution, cfg.crop_scale), val_views, videos, skipped,
                    {"data": [str(d) for d in cfg.data], "val_data": cfg.val_data}, val_of, videos)


def _from_dataset(cfg, rank: int, world: int, log) -> FlowData:
    """``--dataset``: the training split only; this process decodes its shard of the videos."""
    folder, videos = training_videos(cfg.dataset, cfg.root, cfg.fold, cfg.synthetic_set)
    train_videos, held_videos = hold_out_videos(videos, cfg.holdout)
    chosen = spread(train_videos, cfg.max_videos)
    mine = chosen[rank::world]
    if not mine:
        raise ValueError(f"train-flow: {len(chosen)} training videos of {cfg.dataset} for {world} processes; "
                         "expected at least one video per process")
    sources, skipped = load_sources(mine, cfg.decode_size, cfg.max_frames, log=log,
                                    frames_per_source=cfg.frames_per_video)
    sources += _procedural(cfg)
    if not sources:
        raise ValueError(f"train-flow: none of the {len(mine)} training videos of {cfg.dataset} could be decoded "
                         f"(first: {skipped[0] if skipped else 'none'})")
    val_views = val_of = None
    if held_videos and rank == 0:
        held, held_skipped = load_sources(held_videos, cfg.decode_size, cfg.max_frames, log=log,
                                          frames_per_source=cfg.frames_per_video)
        skipped += held_skipped
        if held:
            sampler = FrameSampler(held, cfg.resolution)
            val_views, val_of = sampler.fixed_views(cfg.val_frames), sampler.fixed_view_sources(cfg.val_frames)
    read = {"dataset": cfg.dataset, "root": str(folder), "fold": cfg.fold, "split": "train",
            "train_videos": len(chosen), "split_videos": len(videos),
            "heldout_videos": [str(Path(v).relative_to(folder)) for v in held_videos]}
    if cfg.dataset == "synthetic":
        read["synthetic_set"] = (cfg.synthetic_set or SyntheticSet()).kwargs()
    return FlowData(FrameSampler(sources, cfg.resolution, cfg.crop_scale), val_views, chosen, skipped,
                    {"data": None, "val_data": None, "dataset": read}, val_of, videos)


def build_flow_data(cfg, rank: int = 0, world: int = 1, log=print) -> FlowData:
    """The data of a run configured by ``cfg`` (a ``FlowTrainConfig``) for process ``rank`` of
    ``world``: from ``cfg.data`` files or from ``cfg.dataset``'s training split."""
    if cfg.dataset is not None:
        return _from_dataset(cfg, rank, world, log)
    return _from_files(cfg, rank, log)
