"""Writing a matplotlib figure as a PNG atomically: every picture the project writes (calibration
curves, pretraining curves, retrieval grids, reports) goes through ``save_figure``, so a killed run
never leaves a half-written PNG and a reader never sees one. A leaf module (matplotlib is imported
by the callers, which own their figures)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["save_figure"]


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save ``fig`` (a ``matplotlib.figure.Figure``) to ``path`` as PNG through a temporary file
    beside it and ``os.replace``; the figure is closed either way. Returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
