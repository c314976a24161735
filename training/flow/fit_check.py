"""Does a flow fit a dataset? Its bits/dim on a hundred or so of the dataset's training frames
against its own figure on data it models, with the noise of both.

S²VC works only with a flow that models the data: measured on the built-in synthetic set, the
bundled 32x32 flow (trained on a few natural clips) makes S²VC no better than plain MoCo, while a
flow fitted to the set's own training frames moves it towards the oracle. ``check_flow_fits``
scores frames exactly as training's held-out views are scored (centre square crop of each frame,
area-pooled to the flow's r x r, fixed dequantisation noise: ``flow_training.evaluate_bpd``),
decoded at the size the flow was trained at (``meta["fit_views"]["decode_size"]``, written by
``train-flow``; the caller's ``decode_size`` only for flows that do not record it), never
training's random crops.

What it compares with (``reference_bpd``): the larger of two figures of data the flow models,
whichever its checkpoint records. (a) The check's own figure on the data the flow was fitted to
(``meta["fit_views"]["own_bpd"]``, ``own_data_figure``, written by ``train-flow`` at the end of
the fit): the same videos, frames, views and noise the check reads, so on that data the check
reproduces it and a flow fitted by ``train-flow`` never trips the check on its own data, however
few videos it held out. (b) Its held-out bits/dim (``meta["heldout_bpd"]``, else the last
held-out value of ``meta["history"]``: the bundled flow, 4.64 on its held-out clip,
docs/default_flow.md). Before (a) existed, a set of 8 training videos held out one video, whose
figure alone (no noise) was the reference: an easy one made the flow "not fit" its own data.

The noise. Views of one video are alike and videos differ a lot (on UCF101 a video's mean
bits/dim spreads over about a bit), so both figures are means over *videos*: the check scores
``CHECK_FRAMES`` frames spread over ``CHECK_VIDEOS`` training videos, and its standard error is the
sample SD of the videos' means over sqrt(videos); the reference's is recorded the same way
(``own_bpd_se``, ``heldout_bpd_se`` over at most 8 held-out videos). A flow fails the check only
when the data's figure is above the reference by more than ``FIT_MARGIN_BPD`` plus the one-sided
95% quantile of Student's t at Welch's degrees of freedom (``noise_quantile``: 1.645 with many
videos; 1.75 with 16 videos against a reference recording no spread, 2.92 with 3) times the
standard error of the difference, so a flow that fits is called unfit about one time in 20 at
most, however few the videos (a normal quantile, used until 2026-12-07, did so 8.8% of the time
with 3 videos a side: ``tests/test_flow_fit.py``); the message states both figures with their ±
and the quantile so a reader can judge. Before the noise term (48 frames of 8 videos, decoded at
the caller's size), a UCF101-format set's freshly fitted flow was reported as not fitting its own training frames
(5.90 against a held-out 5.45).

The margin, ``FIT_MARGIN_BPD`` = 0.1 bits/dim, is a systematic allowance only (the sampling
spread is the noise term's): a flow fitted to a dataset scores its training frames at or below
its held-out figure, and a flow scored on frames unlike its own data pays for it in likelihood
first. Measured with the bundled flow on the built-in set's small versions (2 classes; the
2-core dev VM): 5.04-5.09 ± 0.10-0.11 bits/dim over 16-22 training videos against its 4.64 held
out (+0.4, flagged; its held-out figure comes from one clip and records no noise).

    report = check_flow_for_dataset(load_flow(), "ucf101", root, decode_size=128)
    if not report.fits: print(report.message)       # names the command that fits one
"""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from s2vc.engine.checkpoint import load_flow
from s2vc.engine.flow import AdvFlow

from .data import spread, training_videos
from .bpd import heldout_bpd, mean_and_se, view_bpds
from .frames import FrameSampler, FrameSource, evenly_spaced, load_sources, pool_to
from ..data.synthetic import SyntheticSet
from ..stats import t_quantile, welch_df

__all__ = ["FIT_MARGIN_BPD", "NOISE_P", "noise_quantile", "FitReport", "Reference", "reference", "flow_decode_size",
           "FlowDoesNotFitError", "check_flow_fits", "check_flow_for_dataset", "reference_bpd", "heldout_reference",
           "own_data_figure", "fit_command", "dataset_args"]

FIT_MARGIN_BPD = 0.1       # bits/dim above the flow's own held-out figure that still count as fitting
NOISE_P = 0.95             # one-sided: the t quantile of the standard errors allowed on top of the margin
CHECK_FRAMES = 128         # frames scored (a few seconds for the 32x32 flow on 2 CPU cores)
CHECK_VIDEOS = 32          # videos they are drawn from, evenly spaced over the training split
CHECK_DECODE_FRAMES = 64   # frames decoded per video at most (the start of each video)


class FlowDoesNotFitError(ValueError):
    """``check_flow_fits(..., strict=True)`` on data the flow does not fit."""


@dataclass
class FitReport:
    """What ``check_flow_fits`` measured.

    data_bpd: the flow's mean bits/dim on ``frames`` frames of ``videos`` videos of the data;
    reference_bpd: its own figure (``reference_bpd``: the larger of its held-out figure and the
    check's figure on the data it was fitted to; None when its checkpoint records neither) and
    ``reference`` where that came from; margin: bits/dim allowed above it; noise: the standard
    error of data_bpd - reference_bpd (the two figures' SEs over videos combined; the reference's
    counts as 0 when the flow does not record it); quantile: the t quantile allowed of it
    (``noise_quantile``); fits: data_bpd <= reference_bpd + margin + quantile x noise (None
    without a reference); decode_size: the size the frames were decoded at; message: one line saying so, with ``fit_command`` (the command that fits a flow to this
    data) when it does not fit.
    """

    data_bpd: float
    reference_bpd: float | None
    reference: str
    margin: float
    frames: int
    fits: bool | None
    message: str
    fit_command: str
    noise: float = 0.0
    videos: int = 1
    decode_size: int | None = None
    quantile: float = 0.0

    def __str__(self) -> str:
        return self.message


def heldout_reference(flow: AdvFlow) -> tuple[float | None, str]:
    """(the flow's own held-out bits/dim, where it was read) from its checkpoint's meta."""
    meta = getattr(flow, "meta", None) or {}
    if meta.get("heldout_bpd") is not None:
        return float(meta["heldout_bpd"]), "meta['heldout_bpd']"
    history = meta.get("history")
    if isinstance(history, list):
        value = heldout_bpd([h for h in history if isinstance(h, dict)])
        if value is not None:
            return float(value), "the last held-out value of meta['history']"
    return None, "none recorded"


@dataclass
class Reference:
    """The figure the check compares with: value (None when the checkpoint records none), where
    it was read, its standard error and the number of videos it is a mean over (the SE's degrees
    of freedom: 1 when not recorded), and whether it is the check's own figure on the fitted data."""

    value: float | None
    where: str
    se: float = 0.0
    videos: int = 1
    own: bool = False

    @property
    def label(self) -> str:
        """What the figure is, in the check's message."""
        return "on the data it was fitted to" if self.own else "held out"


def reference(flow: AdvFlow) -> Reference:
    """The larger of the flow's held-out bits/dim and the check's own figure on the data it was
    fitted to (``own_data_figure``, written by ``train-flow``), whichever its checkpoint records;
    both are data the flow models, so data scoring no worse than either fits."""
    views = (getattr(flow, "meta", None) or {}).get("fit_views") or {}
    held, where = heldout_reference(flow)
    own = views.get("own_bpd")
    if own is not None and (held is None or float(own) > held):
        return Reference(float(own), f"the check's own figure on the {views.get('own_videos')} videos it was fitted "
                                     "to (meta['fit_views']['own_bpd'])", float(views.get("own_bpd_se") or 0.0),
                         int(views.get("own_videos") or 1), own=True)
    return Reference(held, where, float(views.get("heldout_bpd_se") or 0.0), int(views.get("heldout_sources") or 1))


def reference_bpd(flow: AdvFlow) -> tuple[float | None, str, float]:
    """(the figure the check compares with, where it was read, its standard error): ``reference``."""
    ref = reference(flow)
    return ref.value, ref.where, ref.se


def noise_quantile(data_se: float, data_videos: int, ref_se: float, ref_videos: int) -> float:
    """The one-sided 95% quantile of Student's t (``NOISE_P``) at the Welch-Satterthwaite degrees of
    freedom of the difference of the data's mean and the reference's, each a mean over videos with
    that standard error (the normal's 1.645 when neither records a spread)."""
    df = welch_df((data_se, data_videos), (ref_se, ref_videos))
    return t_quantile(df, NOISE_P)


def own_data_figure(flow: AdvFlow, videos: Sequence, decode_size: int | None, frames: int = CHECK_FRAMES) -> dict:
    """The check's own statistic on ``videos`` (the data ``flow`` was fitted to): the same videos
    chosen, frames, views and dequantisation noise as ``check_flow_fits`` scores, so the check on
    that data reproduces it. {"own_bpd", "own_bpd_se" (over videos), "own_videos", "own_frames"}."""
    views, of_video = _views(flow, list(videos), frames, decode_size)
    bpd, se, count = mean_and_se(view_bpds(flow, views), of_video)
    return {"own_bpd": bpd, "own_bpd_se": se, "own_videos": count, "own_frames": len(views)}


def fit_command(dataset: str | None = None, root: str | os.PathLike | None = None, fold: int = 1,
                synthetic: SyntheticSet | None = None, minutes: float = 30) -> str:
    """The ``s2vc train-flow`` command line that fits a flow to ``dataset`` at ``root``."""
    if dataset is None:
        return f"s2vc train-flow --data YOUR_VIDEOS --out flow_fitted.pt --minutes {minutes:g}"
    args = ["s2vc", "train-flow", *dataset_args(dataset, root, fold, synthetic)]
    args += ["--out", f"flow_{args[3]}.pt", "--minutes", f"{minutes:g}"]
    return " ".join(shlex.quote(a) for a in args)


def dataset_args(dataset: str, root: str | os.PathLike | None = None, fold: int = 1,
                 synthetic: SyntheticSet | None = None) -> list[str]:
    """The flags that name ``dataset`` at ``root`` to a command (``--dataset D --root R --fold N``
    and the synthetic set's ``--synthetic-*`` settings that differ from the defaults), so that the
    command reads that very set: without them a synthetic root would be built again with the
    default settings. A synthetic set with settings that have no flag is named as ``ucf101``."""
    default = SyntheticSet()
    if dataset == "synthetic" and synthetic is not None and root is not None and any(
            getattr(synthetic, k) != getattr(default, k) for k in ("classes", "frames", "size")):
        # a set with settings that have no flag (tests make such small sets): its folder is in
        # UCF101's layout, which --dataset ucf101 reads as it is
        dataset = "ucf101"
    args = ["--dataset", dataset]
    if root is not None:
        args += ["--root", str(root)]
    if fold != 1:
        args += ["--fold", str(fold)]
    if dataset == "synthetic" and synthetic is not None:
        for name, flag in (("seed", "--synthetic-seed"), ("bias", "--synthetic-bias"),
                           ("train_per_class", "--synthetic-train-per-class"),
                           ("test_per_class", "--synthetic-test-per-class"), ("camera", "--synthetic-camera"),
                           ("val_per_class", "--synthetic-val-per-class")):
            if getattr(synthetic, name) != getattr(default, name):
                args += [flag, str(getattr(synthetic, name))]
    return args


def flow_decode_size(flow: AdvFlow, asked: int | None) -> int | None:
    """The size frames are decoded at for the check: the flow's training size when it records
    one (its held-out figure was measured there), else ``asked`` (None: as stored)."""
    recorded = ((getattr(flow, "meta", None) or {}).get("fit_views") or {}).get("decode_size")
    return int(recorded) if recorded else asked


def _views(flow: AdvFlow, data, frames: int, decode_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(float (N, 3, r, r) in [0, 1]: centre square crops pooled to the flow's resolution, N <=
    ``frames``, from video paths, uint8 frames (N, H, W, 3) or float frames (N, 3, H, W); long
    (N,): the video each came from, all 0 for a frames tensor)."""
    r = flow.config.resolution
    if isinstance(data, torch.Tensor):
        if data.dtype == torch.uint8:
            if data.dim() != 4 or data.shape[-1] != 3:
                raise ValueError(f"uint8 frames must be (N, H, W, 3), got {tuple(data.shape)}")
            views = FrameSampler([FrameSource("frames", data)], r).fixed_views(frames)
            return views, torch.zeros(len(views), dtype=torch.long)
        if data.dim() != 4 or data.shape[1] != 3 or not data.is_floating_point():
            raise ValueError(f"frames must be uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1], "
                             f"got {data.dtype} {tuple(data.shape)}")
        h, w = data.shape[-2:]
        side = min(h, w)
        crop = data[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        picked = torch.from_numpy(evenly_spaced(data.shape[0], frames))
        return pool_to(crop[picked].float().cpu(), r).clamp(0, 1), torch.zeros(len(picked), dtype=torch.long)
    videos = spread([Path(v) for v in data], CHECK_VIDEOS)
    if not videos:
        raise ValueError("check_flow_fits: no videos to score (expected video paths or a frames tensor)")
    per_video = math.ceil(frames / len(videos))
    sources, skipped = load_sources(videos, decode_size, CHECK_DECODE_FRAMES, log=lambda line: None,
                                    frames_per_source=per_video)
    if not sources:
        raise ValueError(f"check_flow_fits: none of {len(videos)} videos could be decoded (first: {skipped[0]})")
    sampler = FrameSampler(sources, r)
    return sampler.fixed_views(per_video)[:frames], sampler.fixed_view_sources(per_video)[:frames]


def check_flow_fits(flow: AdvFlow | str | os.PathLike | None, frames_or_videos: torch.Tensor | Sequence, *,
                    strict: bool = False, margin: float = FIT_MARGIN_BPD, frames: int = CHECK_FRAMES,
                    decode_size: int | None = 128, dataset: str | None = None,
                    root: str | os.PathLike | None = None, fold: int = 1,
                    synthetic: SyntheticSet | None = None) -> FitReport:
    """Score ``flow`` (a flow, a checkpoint path, or None: the bundled one) on up to ``frames``
    frames of ``frames_or_videos`` (video paths, decoded at ``flow_decode_size``; None: as stored;
    or a frames tensor) and compare with its own held-out bits/dim, noise included (module docstring).
    ``dataset``/``root``/``fold``/``synthetic`` only name the data in the message and in the
    command that fits a flow to it. ``strict=True`` raises ``FlowDoesNotFitError`` instead of
    reporting a flow that does not fit."""
    if not isinstance(flow, torch.nn.Module):
        flow = load_flow(flow)
    size = flow_decode_size(flow, decode_size)
    views, of_video = _views(flow, frames_or_videos, frames, size)
    data_bpd, data_se, videos = mean_and_se(view_bpds(flow, views), of_video)
    known = reference(flow)
    ref, where, ref_se = known.value, known.where, known.se
    noise = math.hypot(data_se, ref_se)
    quantile = noise_quantile(data_se, videos, ref_se, known.videos)
    command = fit_command(dataset, root, fold, synthetic)
    name = f"{dataset} at {root}" if dataset and root is not None else (dataset or "this data")
    fits = None if ref is None else data_bpd <= ref + margin + quantile * noise
    measured = (f"{data_bpd:.3f} ± {data_se:.3f} bits/dim on {len(views)} training frames of {videos} "
                f"video{'s' if videos != 1 else ''} (decoded {'as stored' if size is None else f'at {size}'})")
    if fits is None:
        message = (f"flow check on {name}: {measured}; the flow records no held-out bits/dim to compare with, so "
                   f"whether it fits is unknown (fit one: {command})")
    elif fits:
        message = (f"the flow fits {name}: {measured}, its own figure {ref:.3f} ± {ref_se:.3f} ({known.label}; "
                   f"allowed: margin {margin:g} + {quantile:.2f} x {noise:.3f} noise)")
    else:
        message = (f"the flow does not fit {name}: {measured} against the flow's own {ref:.3f} ± {ref_se:.3f} "
                   f"({known.label}; more than the margin {margin:g} + {quantile:.2f} x {noise:.3f} noise above), so "
                   f"S2VC will be no better than plain MoCo; fit a flow to this data with: {command}")
    report = FitReport(data_bpd, ref, where, margin, len(views), fits, message, command, noise, videos, size,
                       quantile)
    if strict and fits is False:
        raise FlowDoesNotFitError(message)
    return report


def check_flow_for_dataset(flow: AdvFlow | str | os.PathLike | None, dataset: str,
                           root: str | os.PathLike | None = None, fold: int = 1,
                           synthetic: SyntheticSet | None = None, decode_size: int | None = 128, *,
                           strict: bool = False, margin: float = FIT_MARGIN_BPD,
                           frames: int = CHECK_FRAMES) -> FitReport:
    """``check_flow_fits`` on the training split of ``dataset`` at ``root`` (the synthetic set:
    ``synthetic``, built first when needed); test videos are never read."""
    _, videos = training_videos(dataset, root, fold, synthetic)
    return check_flow_fits(flow, videos, strict=strict, margin=margin, frames=frames, decode_size=decode_size,
                           dataset=dataset, root=root, fold=fold, synthetic=synthetic)
