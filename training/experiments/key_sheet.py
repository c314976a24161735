"""A picture of what each pretraining arm's MoCo key looks like (``s2vc reproduce`` writes it as
OUT/keys.png, and redraws it when the arms change: ``draw_key_sheet``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from s2vc.engine.checkpoint import atomic_write_text

from ..pretrain.keys import KEYS_SUFFIX, KeyMaker
from ..data.synthetic import SyntheticSet, load_mask

__all__ = ["key_sheet", "draw_key_sheet", "sheet_record_path"]


def _maker_settings(arm: str, variants: Mapping[str, Mapping]) -> dict:
    """KeyMaker's mode and options for an arm: a variant's own (``s2vc-dynamic``: mode s2vc,
    detail dynamic), a mirror's mode (``s2vc-keys``: the key it holds is its mode's, as made on
    the fly, the mirror's fixed windows aside), else the arm is the mode."""
    if arm in variants:
        return dict(variants[arm])
    return {"mode": arm.removesuffix(KEYS_SUFFIX)}


def key_sheet(path: str | Path, arms: Sequence[str], *, synthetic: SyntheticSet, frames: int, stride: int,
              flow: str | None = None, alpha: float | None = None, videos: int = 2,
              variants: Mapping[str, Mapping] | None = None, dataset: str = "synthetic", root: str | None = None,
              fold: int = 1, decode_size: int | None = None) -> Path:
    """For ``videos`` training videos spread over the set, the clip (no augmentation, ``frames``
    frames every ``stride``) and the key every arm in ``arms`` makes of it, one row each, as a
    contact sheet at ``path``. ``variants``: {arm: {"mode", KeyMaker options}} for arms that are
    a mode with other options (each drawn with its own); ``flow`` / ``alpha`` are the s2vc
    arm's (None: bundled / calibrated). Arms that make the same key (a mirror and its mode)
    share a row. ``dataset`` / ``root`` / ``fold`` / ``decode_size``: a set of one's own instead
    of the synthetic one (its clips centre-cropped to ``decode_size`` squares; a video that cannot
    be decoded is passed over for the next)."""
    from s2vc.engine import video_io

    from ..data.datasets import build_dataset
    from ..data.skips import SkipSample
    from ..data.transforms import eval_transform
    ds = build_dataset(dataset, root, split="train", fold=fold, frames=frames, stride=stride, size=decode_size,
                       two_clips=False, synthetic=synthetic)
    square = eval_transform(decode_size) if decode_size else None
    root = ds.root
    variants = variants or {}
    settings: dict[str, dict] = {}        # row label -> KeyMaker settings, one row per distinct key
    for arm in arms:
        s = _maker_settings(arm, variants)
        if s not in settings.values():
            settings[arm if arm in variants else s["mode"]] = s
    makers = {label: KeyMaker(s["mode"], flow=flow, alpha=alpha, device="cpu",
                              **{k: v for k, v in s.items() if k != "mode"})
              for label, s in settings.items() if s["mode"] not in ("moco", "oracle")}
    picks, views = [], []
    for start in (i * (len(ds) // videos) for i in range(videos)):
        for index in [*range(start, len(ds)), *range(start)]:
            if index in picks:
                continue
            try:
                views.append(ds.eval_clips(index, 1, transform=square)["clips"][:1])
            except SkipSample:
                continue
            picks.append(index)
            break
    if not picks:
        raise ValueError(f"{dataset}: no training video could be decoded for the key sheet")
    clips = torch.cat(views)                                                        # (videos, C, T, H, W)
    # every maker sees the whole batch: FAME takes its backgrounds from the other clips
    keys = {arm: maker(clips, {}, 0)[0] for arm, maker in makers.items()}
    rows, labels = [], []
    for n, index in enumerate(picks):
        clip, record = clips[n:n + 1], ds.records[index]
        rows.append(video_io.to_uint8_frames(clip[0]))
        labels.append(f"{record.video_id} (class {ds.classes[record.label]}): the clip")
        for arm, s in settings.items():
            if s["mode"] == "moco":                                                 # its key is the clip
                continue
            if s["mode"] == "oracle":
                mask = torch.from_numpy(load_mask(root, record.video_id)[:ds.span:ds.stride]).float()
                key = clip * mask[None, None]
            else:
                key = keys[arm][n:n + 1]
            rows.append(video_io.to_uint8_frames(key[0].clamp(0, 1)))
            labels.append(f"{arm} key")
    return video_io.write_contact_sheet(path, rows, labels)


def sheet_record_path(path: str | Path) -> Path:
    """The record of the arms a sheet shows: ``keys.png`` -> ``keys.json``."""
    return Path(path).with_suffix(".json")


def draw_key_sheet(path: str | Path, arms: Sequence[str], **kwargs) -> bool:
    """``key_sheet(path, arms, **kwargs)`` unless ``path`` exists and shows exactly ``arms``
    (its record, ``sheet_record_path``, names them in that order); True when it drew. The record
    is written after the sheet, so a sheet killed mid-drawing is redrawn next time."""
    record = sheet_record_path(path)
    try:
        drawn = json.loads(record.read_text())
    except (OSError, ValueError):
        drawn = None
    if Path(path).exists() and drawn == list(arms):
        return False
    key_sheet(path, arms, **kwargs)
    atomic_write_text(record, json.dumps(list(arms)))
    return True
