"""``s2vc eval similarity``: intra-class cosine similarity of Z vs Z_p (the paper's Fig. 4).

For each of up to ``--classes`` classes, ``--per-class`` videos are taken (first clip of each),
pooled to the flow's resolution and encoded (Z, (T, D) per video); Z_p is Z after static-cue
suppression. The similarity of a class is the cosine of two different samples' latents frame by
frame (frame t of one with frame t of the other), averaged over frames and pairs. The paper finds
Z_p's similarity far lower: same-class videos share scenes, which S²VC removes.
"""
from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def pairwise_frame_cosine(latents: list[torch.Tensor]) -> float:
    """Mean over pairs i < j and frames t of cos(z_i[t], z_j[t]); latents: each (T, D)."""
    if len(latents) < 2:
        raise ValueError("need at least two samples for a pairwise similarity")
    sims = [F.cosine_similarity(a, b, dim=1).mean().item() for a, b in combinations(latents, 2)]
    return float(np.mean(sims))


@torch.no_grad()
def intra_class_similarity(flow, dataset, *, alpha: float, strategy: str = "zero", classes: int = 10,
                           per_class: int = 8, seed: int = 0, log=print) -> dict[str, tuple[float, float]]:
    """class name -> (similarity of Z, similarity of Z_p)."""
    from s2vc.engine.suppression import temporal_std_mask
    from .datasets import SkipSample
    prepared = flow.prepare()
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, rec in enumerate(dataset.records):
        by_class.setdefault(rec.label, []).append(i)
    chosen = sorted(by_class)
    if len(chosen) > classes:
        chosen = sorted(rng.choice(chosen, size=classes, replace=False).tolist())
    out = {}
    for c in chosen:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--dataset", default="synthetic", choices=("synthetic", "ucf101", "hmdb51", "kinetics"))
    p.add_argument("--root", default=None)
    p.add_argument("--split", default="train")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--alpha", type=float, default=None, help="default: the flow checkpoint's calibrated alpha")
    p.add_argument("--strategy", default="zero")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--decode-size", type=int, default=None)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (similarity.json, similarity.png)")
    return p


def main(args: argparse.Namespace) -> dict:
    from s2vc.engine import load_flow
    from .datasets import build_dataset
    flow = load_flow(args.flow)
    from s2vc.engine.suppression import resolve_alpha
    alpha = resolve_alpha(flow, args.alpha)
    ds = build_dataset(args.dataset, args.root, split=args.split, fold=args.fold, frames=args.frames,
                       stride=args.stride, size=args.decode_size, two_clips=False,
                       **({"synthetic_kwargs": getattr(args, "synthetic_kwargs", None)} if args.dataset == "synthetic"
                          else {}))
    result = intra_class_similarity(flow, ds, alpha=alpha, strategy=args.strategy, classes=args.classes,
                                    per_class=args.per_class, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "similarity.json").write_text(json.dumps({"alpha": alpha, "classes": result}, indent=2))
    plot(result, out / "similarity.png")
    print(f"intra-class cosine similarity, {args.dataset} {args.split}, alpha = {alpha:.3g}")
    print(f"{'class':<20} {'Z':>7} {'Z_p':>7}")
    for name, (z, zp) in result.items():
        print(f"{name:<20} {z:7.3f} {zp:7.3f}")
    print(f"{'mean':<20} {np.mean([v[0] for v in result.values()]):7.3f} {np.mean([v[1] for v in result.values()]):7.3f}")
    print(f"wrote {out / 'similarity.json'} and {out / 'similarity.png'}")
    return result
