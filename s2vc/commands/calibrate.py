"""``s2vc calibrate``: the preserved fraction of latents at each alpha for a flow, and the alpha
that keeps ``--preserve`` of them (``s2vc.engine.calibrate``); ``--write`` records it in the
checkpoint, where ``generate``, ``demo`` and ``pretrain`` find it."""
from __future__ import annotations

import argparse
from pathlib import Path

from s2vc.commands.common import deprecated_alias

HELP = "preserved fraction of latents vs alpha for a flow; the alpha for a fraction"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from s2vc.engine.calibrate import DEFAULT_ALPHAS, DEFAULT_PRESERVE

    p.add_argument("videos", nargs="*", metavar="VIDEO", help="default: the sample videos installed packages ship")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--preserve", type=float, default=DEFAULT_PRESERVE, help="fraction of latents to keep")
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS),
                   help="alphas whose preserved fraction is printed")
    deprecated_alias(p, "--frames", old="--clip-len", dest="clip_len", type=int, default=16,
                     help="frames per window: the pretraining clip's --frames")
    p.add_argument("--stride", type=int, default=2, help="frame step inside a window: the pretraining clip's --stride")
    deprecated_alias(p, "--decode-size", old="--size", dest="size", type=int, default=112,
                     help="shorter side frames are decoded at")
    p.add_argument("--write", action="store_true", help="store the alpha in the checkpoint's meta")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="where the plot of the fraction kept against alpha goes (default: beside the checkpoint, "
                        "FLOW.alpha.png, with --write; else alpha_calibration.png in the current folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.calibrate import calibrate, write_alpha
    from s2vc.engine.calibration_plot import PLOT_ALPHAS, plot_alpha_curve
    from s2vc.engine.samples import require_sample_videos

    videos = [Path(v) for v in args.videos] or require_sample_videos()
    # one measurement gives the printed rows and the plot's curve (a fraction per alpha is a count)
    asked = [float(a) for a in args.alphas]
    cal = calibrate(args.flow, videos, preserve=args.preserve, alphas=sorted(set(asked) | set(PLOT_ALPHAS)),
                    clip_len=args.clip_len, size=args.size, stride=args.stride, progress=not args.no_progress)
    curve, cal.table = cal.table, [row for row in cal.table if row[0] in asked]
    print(f"{cal.checkpoint.name}: {cal.windows} windows of {cal.clip_len} frames {cal.stride} apart from "
          f"{len(videos)} videos")
    print("alpha   preserved")
    for alpha, fraction in cal.table:
        print(f"{alpha:<7g} {100 * fraction:6.1f}%")
    print(f"alpha = {cal.alpha:.4f} preserves {100 * cal.preserve:.1f}% of latents")
    if args.write:
        print(f"written to {write_alpha(cal)} meta['alpha']")
    plot = Path(args.plot) if args.plot else (
        cal.checkpoint.with_name(cal.checkpoint.stem + ".alpha.png") if args.write else Path("alpha_calibration.png"))
    plot_alpha_curve(plot, curve, alpha=cal.alpha, preserve=cal.preserve, marked=cal.table,
                     title=f"{cal.checkpoint.name}: {cal.windows} windows of {cal.clip_len} frames {cal.stride} apart")
    print(f"plot: {plot}")
    return 0
