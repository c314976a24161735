"""The picture of an α calibration (``s2vc calibrate``): the fraction of latents kept against α.

matplotlib is imported when a plot is drawn, never at import: the engine's runtime paths do not
load it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from .figures import save_figure

__all__ = ["PLOT_ALPHAS", "plot_alpha_curve"]

# the curve's α grid: wide enough for a flow whose latents are near-standard-normal (the kept
# fraction is ~0 by α = 2), fine enough to read α off for any fraction
PLOT_ALPHAS = tuple(round(0.025 * i, 3) for i in range(81))        # 0, 0.025, ..., 2.0


def plot_alpha_curve(path: str | os.PathLike, curve: Sequence[tuple[float, float]], *, alpha: float,
                     preserve: float, marked: Sequence[tuple[float, float]] = (), title: str = "") -> Path:
    """Draw the kept fraction (in [0, 1]) against α to ``path`` (PNG, written atomically).

    ``curve``: (α, fraction kept) pairs, the line; ``marked``: pairs drawn as dots (the α's the
    command printed); ``alpha`` / ``preserve``: the calibrated α and the fraction it keeps, drawn
    as cross-hairs."""
    import matplotlib
    matplotlib.use("Agg", force=False)          # no display: files only
    import matplotlib.pyplot as plt

    points = sorted(curve)
    if not points:
        raise ValueError("plot_alpha_curve needs at least one (alpha, fraction) pair")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([a for a, _ in points], [100 * f for _, f in points], color="tab:blue", lw=1.8,
            label="latents kept (temporal STD >= alpha)")
    if marked:
        ax.plot([a for a, _ in marked], [100 * f for _, f in marked], "o", color="tab:blue", ms=4)
    ax.axvline(alpha, color="tab:red", lw=1, ls="--")
    ax.axhline(100 * preserve, color="tab:red", lw=1, ls="--")
    ax.plot([alpha], [100 * preserve], "o", color="tab:red",
            label=f"alpha = {alpha:.4f} keeps {100 * preserve:.1f}%")
    ax.set_xlabel("alpha (threshold on a latent's temporal STD)")
    ax.set_ylabel("latents kept (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=100)
