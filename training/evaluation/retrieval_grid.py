"""The picture of a retrieval evaluation: a few test videos and their five nearest train videos.

``s2vc eval retrieval --out ret.json`` writes ``ret_grid.png`` beside the JSON: one row per query
(chosen evenly over the test split, so most classes show), the query's middle frame, then the
middle frames of its top-5 neighbours, each framed green when its class is the query's and red
when not. The neighbours are those ``metrics.retrieval_recall`` counts: features centred by the
gallery (train) mean, L2-normalised, cosine (``nearest_neighbours``; a test checks the two agree).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from s2vc.engine.video_io import probe_video, read_video

from .metrics import centre_normalise
from s2vc.engine.figures import save_figure

__all__ = ["GRID_QUERIES", "GRID_NEIGHBOURS", "grid_path", "nearest_neighbours", "grid_queries",
           "write_retrieval_grid"]

GRID_QUERIES = 6          # rows
GRID_NEIGHBOURS = 5       # the top-5 of R@5


def grid_path(out: str | os.PathLike) -> Path:
    """Where the grid of a retrieval result written to ``out`` goes: ``ret.json`` -> ``ret_grid.png``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_grid.png")


def nearest_neighbours(query_feats: torch.Tensor, gallery_feats: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` most similar gallery items of each query, most similar first: long (Q, min(k, G)).

    query_feats float (Q, C), gallery_feats float (G, C); similarity as ``retrieval_recall``'s."""
    q, g = query_feats.double(), gallery_feats.double()
    mean = g.mean(dim=0)
    sim = centre_normalise(q, mean) @ centre_normalise(g, mean).T            # (Q, G) cosine
    return sim.topk(min(k, len(g)), dim=1).indices


def grid_queries(num_queries: int, count: int = GRID_QUERIES) -> list[int]:
    """``count`` query positions spread evenly over ``num_queries`` (all of them when fewer)."""
    if num_queries <= count:
        return list(range(num_queries))
    return torch.linspace(0, num_queries - 1, count).round().long().tolist()


def _middle_frame(path: Path, size: int) -> torch.Tensor:
    """The middle frame of a video, uint8 (H, W, 3), decoded at shorter side ``size``."""
    info = probe_video(path)
    return read_video(path, size=size, start_frame=max(0, info.num_frames // 2), max_frames=1)[0]


def write_retrieval_grid(path: str | os.PathLike, query_feats: torch.Tensor, query_labels: torch.Tensor,
                         query_videos: Sequence[Path], gallery_feats: torch.Tensor, gallery_labels: torch.Tensor,
                         gallery_videos: Sequence[Path], classes: Sequence[str], *, size: int = 128,
                         title: str = "retrieval") -> Path:
    """Draw the grid to ``path`` (PNG, written atomically) and return it.

    Features float (Q, C) / (G, C) with labels long (Q,) / (G,) and the video file of each row
    (``query_videos[i]`` is the video of ``query_feats[i]``); ``classes[label]`` names a class;
    frames are decoded at shorter side ``size``."""
    import matplotlib
    matplotlib.use("Agg", force=False)          # no display: files only
    import matplotlib.pyplot as plt

    if len(query_videos) != len(query_feats) or len(gallery_videos) != len(gallery_feats):
        raise ValueError(f"one video per feature row: {len(query_videos)} videos for {len(query_feats)} queries, "
                         f"{len(gallery_videos)} for {len(gallery_feats)} gallery items")
    rows = grid_queries(len(query_feats))
    nearest = nearest_neighbours(query_feats[rows], gallery_feats, GRID_NEIGHBOURS)      # (R, k)
    cols = 1 + nearest.shape[1]
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 1.9 * len(rows) + 0.5), squeeze=False)
    for r, qi in enumerate(rows):
        cells = [(query_videos[qi], int(query_labels[qi]), None)]
        cells += [(gallery_videos[gi], int(gallery_labels[gi]), int(gallery_labels[gi]) == int(query_labels[qi]))
                  for gi in nearest[r].tolist()]
        for c, (video, label, right) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(_middle_frame(Path(video), size).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            name = classes[label] if 0 <= label < len(classes) else str(label)
            colour = "tab:blue" if right is None else ("tab:green" if right else "tab:red")
            mark = "query" if right is None else f"{c}. {'right' if right else 'wrong'}"
            ax.set_title(f"{mark}\n{name}", fontsize=7, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
    fig.suptitle(f"{title}: test queries (left) and their top-{GRID_NEIGHBOURS} train neighbours, "
                 "green = same class", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=80)
