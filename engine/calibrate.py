"""α calibration: how many latents a flow keeps at each α, and the α that keeps a given fraction.

The paper keeps 22.7% of latents at α = 0.5 with its own flow; another flow (another size or
training) keeps another fraction at the same α, so α is chosen per flow:

    s2vc calibrate [VIDEO ...] [--flow CKPT] [--preserve 0.227] [--write]

Windows of ``--clip-len`` frames of the videos (default: the sample videos installed packages
ship) are pooled to the flow's resolution and encoded; each latent's temporal STD is kept. The
preserved fraction at α is the share of STDs >= α. ``--write`` records the α for ``--preserve``
in the checkpoint's meta["alpha"] (weights and their hash untouched), which ``generate``, ``demo``
and ``pretrain`` use by default.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from . import video_io
from .checkpoint import atomic_torch_save, default_checkpoint_path, flow_from_checkpoint
from .samples import require_sample_videos
from .suppression import alpha_for_preserved_fraction

DEFAULT_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2)


@torch.no_grad()
def latent_stds(flow, videos, *, clip_len: int = 16, size: int = 112, max_windows: int = 8) -> torch.Tensor:
    """Temporal STDs (N, D) of the latents of up to ``max_windows`` windows per video."""
    prepared = flow.prepare()
    stds = []
    for v in videos:
        frames = video_io.read_video(v, size=size, max_frames=max_windows * clip_len)
        n = frames.shape[0] // clip_len * clip_len
        if n == 0:
            continue
        x = frames[:n].permute(0, 3, 1, 2).float().div(255)
        z = prepared.encode(F.adaptive_avg_pool2d(x, flow.config.resolution))
        stds.append(z.reshape(-1, clip_len, z.shape[1]).std(dim=1))
    if not stds:
        raise ValueError(f"no video had {clip_len} frames to calibrate on")
    return torch.cat(stds)


def preserved_fraction(stds: torch.Tensor, alpha: float) -> float:
    return float((stds >= alpha).float().mean())


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="default: the sample videos installed packages ship")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--preserve", type=float, default=0.227, help="fraction of latents to keep")
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS))
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--write", action="store_true", help="store the alpha in the checkpoint's meta")
    return p


def main(args: argparse.Namespace) -> int:
    path = Path(args.flow) if args.flow else default_checkpoint_path()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    flow = flow_from_checkpoint(ckpt, str(path))
    videos = [Path(v) for v in args.videos] or require_sample_videos()
    stds = latent_stds(flow, videos, clip_len=args.clip_len, size=args.size)
    print(f"{path.name}: {len(stds)} windows of {args.clip_len} frames from {len(videos)} videos")
    print("alpha   preserved")
    for a in args.alphas:
        print(f"{a:<7g} {100 * preserved_fraction(stds, a):6.1f}%")
    alpha = alpha_for_preserved_fraction(stds, args.preserve)
    print(f"alpha = {alpha:.4f} preserves {100 * args.preserve:.1f}% of latents")
    if args.write:
        if ckpt.get("format") != "s2vc-flow":
            raise SystemExit("calibrate --write: only project checkpoints carry meta (save it with s2vc.engine.save_flow)")
        ckpt["meta"]["alpha"] = alpha
        ckpt["meta"]["alpha_calibration"] = {"preserve": args.preserve, "videos": [v.name for v in videos],
                                             "clip_len": args.clip_len, "size": args.size, "windows": len(stds)}
        atomic_torch_save(ckpt, path)
        print(f"written to {path} meta['alpha']")
    return 0
