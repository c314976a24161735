"""``s2vc eval similarity``: intra-class cosine similarity of Z vs Z_p (the paper's Fig. 4).

For each of up to ``classes`` classes, ``per_class`` videos are taken (first clip of each),
pooled to the flow's resolution and encoded (Z, (T, D) per video); Z_p is Z after static-cue
suppression. The similarity of a class is the cosine of two different samples' latents frame by
frame (frame t of one with frame t of the other), averaged over frames and pairs. The paper finds
Z_p's similarity far lower: same-class videos share scenes, which S²VC removes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .common import Evaluation
from ..data.synthetic import SyntheticSet
from s2vc.engine.checkpoint import atomic_write_text
from s2vc.engine.figures import save_figure

__all__ = ["pairwise_frame_cosine", "intra_class_similarity", "plot", "SimilaritySettings", "evaluate_similarity"]


def pairwise_frame_cosine(latents: list[torch.Tensor]) -> float:
    """Mean over pairs i < j and frames t of cos(z_i[t], z_j[t]); latents: each (T, D)."""
    if len(latents) < 2:
        raise ValueError("need at least two samples for a pairwise similarity")
    sims = [F.cosine_similarity(a, b, dim=1).mean().item() for a, b in combinations(latents, 2)]
    return float(np.mean(sims))


@torch.no_grad()
def intra_class_similarity(flow, dataset, *, alpha: float, strategy: str = "zero", classes: int = 10,
                           per_class: int = 8, seed: int = 0, log=print,
                           progress: bool = False) -> dict[str, tuple[float, float]]:
    """class name -> (similarity of Z, similarity of Z_p); ``progress``: a bar on stderr over the classes."""
    from s2vc.engine.suppression import temporal_std_mask
    from ..data.datasets import SkipSample
    prepared = flow.prepare()
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, rec in enumerate(dataset.records):
        by_class.setdefault(rec.label, []).append(i)
    chosen = sorted(by_class)
    if len(chosen) > classes:
        chosen = sorted(rng.choice(chosen, size=classes, replace=False).tolist())
    out = {}
    for c in tqdm(chosen, desc="similarity", unit="class", file=sys.stderr, disable=not progress, leave=False):
        idx = by_class[c]
        idx = rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()
        zs, zps = [], []
        for i in idx:
            try:
                clip = dataset.eval_clips(i, num_clips=1)["clips"][0]            # (C, T, H, W)
            except SkipSample as e:
                log(f"skipping {e}", file=sys.stderr)
                continue
            frames = F.adaptive_avg_pool2d(clip.transpose(0, 1), flow.config.resolution)
            z = prepared.encode(frames)                                          # (T, D)
            z_p, _ = temporal_std_mask(z[None], alpha, strategy, generator=torch.Generator().manual_seed(seed))
            zs.append(z)
            zps.append(z_p[0])
        if len(zs) >= 2:
            out[dataset.classes[c]] = (pairwise_frame_cosine(zs), pairwise_frame_cosine(zps))
    return out


def plot(result: dict[str, tuple[float, float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(result)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 3.5))
    ax.bar(x - 0.2, [result[n][0] for n in names], 0.4, label="Z")
    ax.bar(x + 0.2, [result[n][1] for n in names], 0.4, label="Z_p (motion-preserved)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("intra-class cosine similarity")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


@dataclass
class SimilaritySettings:
    """``s2vc eval similarity``: ``out`` (the folder for similarity.json / .png); the videos
    (``dataset``, ``root``, ``split``, ``fold``, ``synthetic``, windows of ``frames`` x ``stride``
    decoded at ``decode_size``, None: as stored); the flow (``flow``: a checkpoint, None: the
    bundled one; ``alpha``, None: the flow's calibrated one; ``strategy``); ``classes`` x
    ``per_class`` videos drawn with ``seed``."""

    out: str
    dataset: str = "synthetic"
    root: str | None = None
    split: str = "train"
    fold: int = 1
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    flow: str | None = None
    alpha: float | None = None
    strategy: str = "zero"
    frames: int = 16
    stride: int = 1
    decode_size: int | None = None
    classes: int = 10
    per_class: int = 8
    seed: int = 0
    progress: bool = False        # a bar on stderr over the classes


def evaluate_similarity(settings: SimilaritySettings) -> Evaluation:
    """Intra-class similarity of Z and Z_p per class: ``result["classes"]`` = {class: (Z, Z_p)},
    ``result["alpha"]``; writes OUT/similarity.json (the result) and OUT/similarity.png."""
    from s2vc.engine import load_flow
    from s2vc.engine.suppression import resolve_alpha

    from ..data.datasets import build_dataset
    s = settings
    flow = load_flow(s.flow)
    alpha = resolve_alpha(flow, s.alpha)
    ds = build_dataset(s.dataset, s.root, split=s.split, fold=s.fold, frames=s.frames, stride=s.stride,
                       size=s.decode_size, two_clips=False,
                       synthetic=s.synthetic if s.dataset == "synthetic" else None)
    classes = intra_class_similarity(flow, ds, alpha=alpha, strategy=s.strategy, classes=s.classes,
                                     per_class=s.per_class, seed=s.seed, progress=s.progress)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"alpha": alpha, "classes": classes}
    atomic_write_text(out / "similarity.json", json.dumps(result, indent=2))
    plot(classes, out / "similarity.png")
    lines = [f"intra-class cosine similarity, {s.dataset} {s.split}, alpha = {alpha:.3g}",
             f"{'class':<20} {'Z':>7} {'Z_p':>7}"]
    lines += [f"{name:<20} {z:7.3f} {zp:7.3f}" for name, (z, zp) in classes.items()]
    lines.append(f"{'mean':<20} {np.mean([v[0] for v in classes.values()]):7.3f} "
                 f"{np.mean([v[1] for v in classes.values()]):7.3f}")
    lines.append(f"wrote {out / 'similarity.json'} and {out / 'similarity.png'}")
    return Evaluation(result, "\n".join(lines))
