"""``RUN/curves.png``: what a pretraining run did, as a picture beside its TensorBoard logs.

Top panel: the contrastive loss of every step (faint) and its running mean; bottom panel, when any
snapshot of the run has been evaluated: each score of ``RUN/eval/step_NNNNNN.json`` (what the
reproduction's scoring writes per snapshot: retrieval R@k, probes, ...) against the step.
Pretraining draws it at the end of the run (``pretrain``); the scoring redraws it once it has
scored the run's snapshots. Written atomically (a reader never sees half a PNG).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from s2vc.engine.figures import save_figure

__all__ = ["CURVES", "snapshot_scores", "write_run_curves"]

CURVES = "curves.png"            # RUN/curves.png
_SCORES_GLOB = "eval/step_*.json"  # the test split's per-snapshot scores (training/experiments/scoring.py)


def snapshot_scores(run: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...] in step order} from the run's evaluated snapshots; {} when none
    has been evaluated. The scorer's version and non-numeric entries are left out; unreadable files
    (a scoring killed mid-write leaves only ``.tmp`` files, so this is a damaged folder) are skipped."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(run).glob(_SCORES_GLOB)):
        try:
            step = int(path.stem.removeprefix("step_"))
            scores = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
        for key, value in scores.items():
            if key != "scorer" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.setdefault(key, []).append((step, float(value)))
    return out


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    cum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cum[idx] - cum[lo]) / (idx - lo)


def write_run_curves(run: str | Path, history: Iterable[Mapping] | None = None, *, title: str | None = None) -> Path:
    """Draw ``RUN/curves.png`` and return its path.

    ``history``: the per-step records of the run (``{"step", "loss", ...}``, what ``pretrain``
    returns and its checkpoint keeps); None reads them from ``RUN/checkpoint.pt``. A run with no
    step yet and no scores gets a figure saying so (the file always exists after a run)."""
    import matplotlib
    matplotlib.use("Agg", force=False)          # no display: files only
    import matplotlib.pyplot as plt

    run = Path(run)
    if history is None:
        history = _history_from_checkpoint(run)
    steps = np.array([h["step"] for h in history if "loss" in h], dtype=float)
    loss = np.array([h["loss"] for h in history if "loss" in h], dtype=float)
    scores = snapshot_scores(run)
    rows = 2 if scores else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 3.2 * rows), squeeze=False, sharex=True)
    ax = axes[0, 0]
    if len(loss):
        ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="loss per step")
        window = max(1, len(loss) // 20)
        ax.plot(steps, _running_mean(loss, window), color="tab:blue", lw=1.8, label=f"mean of {window} steps")
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no training step yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("InfoNCE loss")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"pretraining run {run.name}")
    if scores:
        ax = axes[1, 0]
        for key, points in sorted(scores.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=key)
        ax.set_ylabel("snapshot scores (test split)")
        ax.legend(loc="best", fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return save_figure(fig, run / CURVES, dpi=100)


def _history_from_checkpoint(run: Path) -> list[dict]:
    import torch

    from ..run_files import CHECKPOINT
    ckpt = run / CHECKPOINT
    if not ckpt.is_file():
        return []
    return list(torch.load(ckpt, map_location="cpu", weights_only=True).get("history", []))
