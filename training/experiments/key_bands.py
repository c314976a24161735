"""What each arm's MoCo key keeps of the look and of the motion, per spatial frequency band
(``s2vc eval key-bands``): probes run on the keys themselves, not on a learnt feature.

A key that suppresses the static cue should leave a look probe near chance and a motion probe
high. The probes run on the synthetic set's *test* split, where every look (scene, actor shape,
actor colour) is drawn independently of the class, on one window of ``frames`` frames (stride
``stride``) per video, turned into each arm's key by the trainer's own ``KeyMaker``.

Each key is split into a Laplacian pyramid over its side S: the coarse band (the frame pooled to
S/8) and the detail bands S/8-S/4, S/4-S/2 and S/2-S (each the frame pooled to the finer side
minus the coarser one, upsampled). With the paper's residual design a flow of resolution r only
ever changes the bands up to r: every band above r passes into the key as it is, which is what
this measures. Per band and video:

- look features: the band's time mean per colour channel, its energy (the square's time mean),
  and the energy of the time mean's horizontal and vertical gradients (grey; what tells stripes
  from a checkerboard), each average-pooled to ``grid`` x ``grid``;
- motion features: the energy of the band's frame-to-frame differences (grey), pooled to
  ``grid`` x ``grid`` for every pair of frames (where things move, over time).

"all" is every band together. Probes as ``training/evaluation/probes.py`` (odd groups train, even test;
linear, firm L2), chance = 1 / number of values. Hand-written: no library probes video keys.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..evaluation.common import Evaluation, write_json
from ..evaluation.probes import PROBE_WEIGHT_DECAY, ClipBank, look_probe, motion_probe
from ..data.synthetic import SyntheticSet
from s2vc.engine.figures import save_figure

__all__ = ["KeyBandSettings", "band_pyramid", "band_features", "evaluate_key_bands"]

DEFAULT_ARMS = ("moco", "s2vc", "tfd", "be", "fame", "oracle")
LEVELS = 3          # detail bands; the coarse band is the frame pooled to side / 2**LEVELS


def band_pyramid(clips: torch.Tensor, levels: int = LEVELS) -> dict[str, torch.Tensor]:
    """Laplacian bands of clips (N, C, T, S, S): {"<=S/2^L": coarse, "a-b": detail} each
    (N, C, T, S, S), float32 (float64 stays so); they sum to the clips. S must be divisible by 2**levels."""
    n, c, t, h, w = clips.shape
    if h != w or h % (2 ** levels):
        raise ValueError(f"band_pyramid needs square frames with a side divisible by {2 ** levels}, got {h}x{w}")
    dtype = clips.dtype if clips.dtype in (torch.float32, torch.float64) else torch.float32
    frames = clips.transpose(1, 2).reshape(n * t, c, h, w).to(dtype)
    sides = [h // 2 ** k for k in range(levels, -1, -1)]                 # coarse .. full
    smooth = [F.interpolate(F.adaptive_avg_pool2d(frames, s), size=(h, w), mode="bilinear", align_corners=False)
              if s < h else frames for s in sides]
    bands = {f"<={sides[0]}": smooth[0]}
    for lo, hi, a, b in zip(sides, sides[1:], smooth, smooth[1:]):
        bands[f"{lo}-{hi}"] = b - a
    return {k: v.reshape(n, t, c, h, w).transpose(1, 2) for k, v in bands.items()}


def band_features(band: torch.Tensor, grid: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(look features (N, (2 C + 2) grid²), motion features (N, (T-1) grid²)) of one band (N, C, T, S, S)."""
    mean_t = band.mean(dim=2)                                            # (N, C, S, S)
    energy_t = band.square().mean(dim=2)
    still = mean_t.mean(dim=1, keepdim=True)                             # grey time mean (N, 1, S, S)
    gx = F.pad((still[..., :, 1:] - still[..., :, :-1]).square(), (0, 1))
    gy = F.pad((still[..., 1:, :] - still[..., :-1, :]).square(), (0, 0, 0, 1))
    look = torch.cat([F.adaptive_avg_pool2d(x, grid).flatten(1) for x in (mean_t, energy_t, gx, gy)], dim=1)
    grey = band.mean(dim=1)                                              # (N, T, S, S)
    motion = F.adaptive_avg_pool2d((grey[:, 1:] - grey[:, :-1]).square(), grid).flatten(1)
    return look, motion


@dataclass(kw_only=True)
class KeyBandSettings:
    """``arms``: trainer modes whose keys are probed; ``flow``: the s2vc / tfd flow checkpoint
    (None: the synthetic set's own fitted flow; "bundled": the bundled one); ``alpha`` None: the
    flow's; ``detail``: the s2vc generator's fine detail ("keep", the paper; "dynamic");
    ``frames``/``stride``/``size``: the window and its side (the set's frame size by
    default); ``grid``: pooled grid of the features; ``probe_steps``: optimiser steps of each linear
    probe (at least; ``training.evaluate.linear_probe``); ``out``: JSON (and a PNG beside it)."""

    arms: tuple = DEFAULT_ARMS
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    flow: str | None = None
    alpha: float | None = None
    strategy: str = "zero"
    detail: str = "keep"
    frames: int = 16
    stride: int = 2
    size: int | None = None
    grid: int = 8
    probe_steps: int = 1000
    batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    out: str | None = None
    progress: bool = True


def _test_windows(settings: KeyBandSettings) -> tuple[ClipBank, torch.Tensor]:
    """One window per test video (bank of clips in [0, 1]) and its actor masks (N, 1, T, S, S)."""
    from s2vc.engine import video_io
    from ..data.datasets import dataset_root, split_records
    from ..data.synthetic import load_mask

    root = dataset_root("synthetic", None, synthetic=settings.synthetic)
    size = settings.size or settings.synthetic.size
    span = (settings.frames - 1) * settings.stride + 1
    clips, masks, labels, ids = [], [], [], []
    for rec in split_records("synthetic", root, "test"):
        frames = video_io.read_video(rec.path, size=size, max_frames=span)
        if frames.shape[0] < span:
            raise ValueError(f"{rec.path}: {frames.shape[0]} frames, the window needs {span}")
        x = frames[::settings.stride].permute(3, 0, 1, 2).float().div(255)          # (C, T, H, W)
        m = torch.from_numpy(load_mask(root, rec.video_id)[:span:settings.stride]).float()[None]
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m, size=x.shape[-2:], mode="nearest")
        clips.append(x), masks.append(m), labels.append(rec.label), ids.append(rec.video_id)
    bank = ClipBank(torch.stack(clips), torch.arange(len(clips)), torch.tensor(labels), ids, root, [])
    return bank, torch.stack(masks)


@torch.no_grad()
def _keys(arm: str, bank: ClipBank, masks: torch.Tensor, flow, settings: KeyBandSettings) -> torch.Tensor:
    from ..pretrain.keys import KeyMaker
    maker = KeyMaker(arm, flow=flow, alpha=settings.alpha, strategy=settings.strategy, seed=settings.seed,
                     detail=settings.detail if arm == "s2vc" else "keep", device=settings.device)
    out = []
    for i in range(0, len(bank.clips), settings.batch_size):
        k = bank.clips[i:i + settings.batch_size].to(settings.device)
        key, _ = maker(k, {"k_mask": masks[i:i + settings.batch_size]}, i)
        out.append(key.float().cpu())
    return torch.cat(out)


def evaluate_key_bands(settings: KeyBandSettings) -> Evaluation:
    """Look and motion probes of every arm's key per band (see the module docstring): result
    {"arms": {arm: {band: {"scene", "shape", "colour", "motion"}}}, "chance", "flow", ...}."""
    from tqdm import tqdm
    from ..pretrain.keys import MODES
    from s2vc.engine import load_flow

    bad = [a for a in settings.arms if a not in MODES]
    if bad:
        raise ValueError(f"unknown arms {bad}; use some of {MODES}")
    if settings.frames < 2:
        raise ValueError(f"a window needs >= 2 frames, got {settings.frames}")
    from ..flow.fitted import flow_choice
    flow_path = flow_choice(settings.flow, settings.synthetic, progress=settings.progress)
    flow = load_flow(flow_path, device=settings.device)
    bank, masks = _test_windows(settings)
    looks, groups, labels = bank.looks(), bank.groups, bank.labels
    kw = {"seed": settings.seed, "weight_decay": PROBE_WEIGHT_DECAY, "min_steps": settings.probe_steps}
    result: dict = {"arms": {}, "flow": flow_path or "bundled", "flow_resolution": flow.config.resolution,
                    "detail": settings.detail, "frames": settings.frames, "stride": settings.stride,
                    "size": bank.clips.shape[-1],
                    "grid": settings.grid, "videos": len(bank),
                    "chance": {"motion": 1 / (int(labels.max()) + 1),
                               **{k: 1 / (int(v.max()) + 1) for k, v in looks.items()}}}
    for arm in tqdm(settings.arms, desc="key bands", unit="arm", disable=not settings.progress, file=sys.stderr):
        bands = band_pyramid(_keys(arm, bank, masks, flow, settings))
        feats = {name: band_features(b, settings.grid) for name, b in bands.items()}
        feats["all"] = tuple(torch.cat([f[j] for f in feats.values()], dim=1) for j in range(2))
        result["arms"][arm] = {name: {**look_probe(look, looks, groups, **kw),
                                      "motion": motion_probe(motion, labels, groups, **kw)}
                               for name, (look, motion) in feats.items()}
    table = key_band_table(result)
    write_json(result, settings.out)
    notes = []
    if settings.out:
        png = os.path.splitext(settings.out)[0] + ".png"
        plot_key_bands(result, png)
        notes.append(f"key-bands: {settings.out}, {png}")
    return Evaluation(result, table, notes)


def key_band_table(result: dict) -> str:
    """Markdown: one row per arm and band, the three looks and the motion (top-1 %)."""
    from .report import markdown_table
    probes = ("scene", "shape", "colour", "motion")
    rows = [[arm, band] + [f"{100 * cells[p]:5.1f}" for p in probes]
            for arm, by_band in result["arms"].items() for band, cells in by_band.items()]
    rows.append(["chance", "-"] + [f"{100 * result['chance'][p]:5.1f}" for p in probes])
    return markdown_table(["key of", "band", *(f"look: {p}" if p != "motion" else p for p in probes)], rows)


def plot_key_bands(result: dict, path: str) -> None:
    """Four heat maps (three looks, motion): arm x band, top-1 above chance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    arms = list(result["arms"])
    bands = list(next(iter(result["arms"].values())))
    fig, axes = plt.subplots(1, 4, figsize=(15, 0.5 * len(arms) + 1.8))
    for ax, probe in zip(axes, ("scene", "shape", "colour", "motion")):
        chance = result["chance"][probe]
        grid = np.array([[result["arms"][a][b][probe] for b in bands] for a in arms]) * 100
        ax.imshow(grid, vmin=100 * chance, vmax=100, cmap="viridis", aspect="auto")
        for (i, j), v in zip(((i, j) for i in range(len(arms)) for j in range(len(bands))), grid.flatten()):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 100 * chance + 0.6 * (100 - 100 * chance) else "black")
        ax.set_xticks(range(len(bands)), bands, fontsize=7)
        ax.set_yticks(range(len(arms)), arms if ax is axes[0] else [""] * len(arms), fontsize=8)
        ax.set_title(f"{'look: ' if probe != 'motion' else ''}{probe} (chance {100 * chance:.0f}%)", fontsize=9)
    fig.suptitle(f"What each key keeps, per spatial band (flow {result['flow_resolution']}², "
                 f"frames {result['size']}²): probe top-1 %", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
