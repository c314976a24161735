"""Which clip a flow's alpha was calibrated on, and a one-line warning when a run's clip differs.

A latent's temporal STD grows with the time a clip spans: an alpha read off windows of 16
consecutive frames keeps about 34% of the latents of the reproduction's 16-frame stride-2 clips
on the synthetic set, not the 22.7% it was calibrated for. ``train-flow`` and ``calibrate``
therefore calibrate on the pretraining clip (``--frames``, ``--stride``) and record it as
meta["alpha_frames"] / meta["alpha_stride"]; ``pretrain`` and ``generate --dataset`` call
``alpha_clip_note`` and say so when their clip is another one.
"""
from __future__ import annotations

__all__ = ["alpha_clip", "alpha_clip_note", "recalibrate_command", "alphas_on_training_split"]


def alpha_clip(meta: dict | None) -> tuple[int | None, int | None]:
    """(frames, stride) of the windows the checkpoint's meta["alpha"] was calibrated on: from
    meta["alpha_frames"] / ["alpha_stride"]; a checkpoint from before they were recorded
    calibrated on consecutive frames (stride 1) of meta["alpha_calibration"]["clip_len"];
    (None, None) when unknown or when there is no calibrated alpha."""
    meta = meta or {}
    if meta.get("alpha") is None:
        return None, None
    if meta.get("alpha_frames") is not None:
        return int(meta["alpha_frames"]), int(meta.get("alpha_stride") or 1)
    record = meta.get("alpha_calibration") or {}
    if record.get("clip_len") is None:
        return None, None
    return int(record["clip_len"]), int(record.get("stride") or 1)


def alpha_clip_note(flow, frames: int, stride: int, *, flow_name: str = "the flow", flow_path: str | None = None,
                    dataset: str | None = None, root: str | None = None, fold: int = 1,
                    decode_size: int | None = None, synthetic=None) -> str | None:
    """One line when ``flow``'s calibrated alpha (its checkpoint's, used when no alpha is given)
    was read off windows other than ``frames`` frames ``stride`` apart; None when they match or
    the flow has no calibrated alpha. With ``dataset`` (and ``root``, ``fold``, ``decode_size``,
    ``synthetic``: the run's) the line gives the command that recalibrates on that set's training split into a
    copy of the flow (``flow_path``: the checkpoint the run loaded; None: the bundled one, never
    rewritten)."""
    meta = getattr(flow, "meta", None) or {}
    got_frames, got_stride = alpha_clip(meta)
    if got_frames is None or (got_frames, got_stride) == (frames, stride):
        return None
    preserve = (meta.get("alpha_calibration") or {}).get("preserve")
    share = f"{preserve:.1%} of the latents" if isinstance(preserve, (int, float)) else "its fraction of latents"
    return (f"{flow_name}'s alpha {float(meta['alpha']):.4f} was calibrated to keep {share} on windows of "
            f"{got_frames} frames {got_stride} apart, these clips are {frames} frames {stride} apart, so it keeps "
            f"another share (recalibrate: {recalibrate_command(frames, stride, meta, flow_path, dataset, root, fold, decode_size, synthetic)}"
            f", then train with that flow; or give --alpha)")


def recalibrate_command(frames: int, stride: int, meta: dict, flow_path: str | None = None, dataset: str | None = None,
                        root: str | None = None, fold: int = 1, decode_size: int | None = None,
                        synthetic=None) -> str:
    """The ``s2vc calibrate`` line that calibrates the flow at ``flow_path`` (None: the bundled
    one) on windows of ``frames`` frames ``stride`` apart of ``dataset``'s training split (named
    as ``fit_check.dataset_args`` names it: the very set, a synthetic one with its settings;
    VIDEOS without a dataset), decoded at ``decode_size`` (None: as stored, ``--decode-size 0``),
    at the fraction its alpha keeps, into a copy beside it (``--write-to``)."""
    import shlex
    from pathlib import Path

    from .fit_check import dataset_args

    preserve = (meta.get("alpha_calibration") or {}).get("preserve")
    source = Path(flow_path) if flow_path else Path("flow.pt")
    args = ["s2vc", "calibrate"]
    if flow_path:
        args += ["--flow", str(flow_path)]
    if dataset:
        args += dataset_args(dataset, root, fold, synthetic)
    args += ["--frames", str(frames), "--stride", str(stride), "--decode-size", str(decode_size or 0)]
    if isinstance(preserve, (int, float)):
        args += ["--preserve", f"{preserve:g}"]
    args += ["--write-to", str(source.with_name(f"{source.stem}_f{frames}s{stride}{source.suffix}"))]
    return " ".join(shlex.quote(a) for a in args) + ("" if dataset else " VIDEOS")


def alphas_on_training_split(flow, dataset: str, root, *, fractions, frames: int, stride: int,
                             size: int | None, fold: int = 1, synthetic=None,
                             progress: bool = False) -> tuple[dict[float, float], int]:
    """({fraction: the alpha at which ``flow`` keeps that fraction of the latents}, windows used),
    read as ``train-flow`` calibrates: on windows of ``frames`` frames ``stride`` apart (the
    training clip) of ``dataset``'s training split (never a test or validation video; ``root``,
    ``fold``, ``synthetic`` as ``dataset_root`` / ``split_records`` take them), decoded at
    ``size`` (None: as stored), spread over the split (``calibration_plan``). Raises ValueError
    when the split lists no video or none holds a window of that length."""
    from s2vc.engine.calibrate import latent_stds
    from s2vc.engine.suppression import alpha_for_preserved_fraction

    from ..data.datasets import dataset_root, split_records
    from .data import calibration_plan

    root = dataset_root(dataset, root, synthetic=synthetic)
    listed = [r.path for r in split_records(dataset, root, "train", fold) if r.path.is_file()]
    if not listed:
        raise ValueError(f"{dataset} at {root}: its training split lists no video file to calibrate alpha on")
    videos, windows = calibration_plan(listed)
    stds = latent_stds(flow, videos, clip_len=frames, size=size, max_windows=windows, stride=stride,
                       skip_unreadable=True, progress=progress)    # none long enough: ValueError
    return {v: float(alpha_for_preserved_fraction(stds, v)) for v in fractions}, int(stds.shape[0])
