"""``s2vc calibrate``: the preserved fraction of latents at each alpha for a flow, and the alpha
that keeps ``--preserve`` of them (``s2vc.engine.calibrate``), measured on VIDEO files or on a
dataset's training split (``--dataset``: at most ``MAX_CALIBRATION_VIDEOS`` videos spread over
it, as ``train-flow`` calibrates; test videos are never read). ``--write`` records the alpha in
the checkpoint, where ``generate``, ``demo`` and ``pretrain`` find it; ``--write-to FILE`` writes
a copy of the checkpoint with it instead (one flow file per clip: frames, stride, decode size)."""
from __future__ import annotations

import argparse
from pathlib import Path

from s2vc.commands import common
from s2vc.commands.common import (UsageError, add_device_argument, add_synthetic_arguments, deprecated_alias,
                                  synthetic_set)

HELP = "preserved fraction of latents vs alpha for a flow; the alpha for a fraction"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from s2vc.engine.calibrate import DEFAULT_ALPHAS, DEFAULT_PRESERVE
    from s2vc.training.data.datasets import DATASETS
    from s2vc.training.flow.data import MAX_CALIBRATION_VIDEOS

    p.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="video files (default: the sample videos installed packages ship; or --dataset)")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--preserve", type=float, default=DEFAULT_PRESERVE, help="fraction of latents to keep")
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS),
                   help="alphas whose preserved fraction is printed")
    deprecated_alias(p, "--frames", old="--clip-len", dest="clip_len", type=int, default=16,
                     help="frames per window: the pretraining clip's --frames")
    p.add_argument("--stride", type=int, default=2, help="frame step inside a window: the pretraining clip's --stride")
    deprecated_alias(p, "--decode-size", old="--size", dest="size", type=int, default=128,
                     help="shorter side frames are decoded at: the pretraining clip's --decode-size (0: as "
                          "stored, pretrain's default; default 128)")
    add_device_argument(p, "the flow runs on")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--write", action="store_true",
                     help="store the alpha in the checkpoint's meta (the --flow file itself, which must be given: "
                          "the bundled flow is never rewritten, use --write-to)")
    out.add_argument("--write-to", default=None, metavar="FILE",
                     help="write a copy of the flow checkpoint with the alpha in its meta to FILE (atomically); "
                          "the --flow file is left as it is")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="where the plot of the fraction kept against alpha goes (default: beside the checkpoint "
                        "written, FLOW.alpha.png, with --write / --write-to; else alpha_calibration.png in the "
                        "current folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    g = p.add_argument_group(f"a dataset's training split instead of VIDEO files (at most {MAX_CALIBRATION_VIDEOS} "
                             "videos spread over it, as train-flow calibrates; test videos are never read)")
    g.add_argument("--dataset", choices=DATASETS, default=None, help="calibrate on this dataset's training split")
    g.add_argument("--root", default=None, help="dataset root (synthetic: its cache folder by default)")
    g.add_argument("--fold", type=int, default=1, help=common.FOLD_HELP)
    add_synthetic_arguments(g)
    return p


def dataset_videos(args: argparse.Namespace) -> tuple[list[Path], int, dict]:
    """(the training videos of ``--dataset`` calibrated on, windows per video, a record of where
    they came from): ``training.flow.data.calibration_plan`` over the training split's videos
    (never a test one), as ``train-flow`` calibrates a flow it fitted."""
    from s2vc.training.flow.data import calibration_plan, training_videos

    synthetic = synthetic_set(args) if args.dataset == "synthetic" else None
    folder, videos = training_videos(args.dataset, args.root, args.fold, synthetic)
    chosen, windows = calibration_plan(videos)
    record = {"dataset": args.dataset, "root": str(folder), "fold": args.fold, "split": "train",
              "videos": len(chosen), "split_videos": len(videos)}
    return chosen, windows, record


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.calibrate import calibrate, write_alpha
    from s2vc.engine.calibration_plot import PLOT_ALPHAS, plot_alpha_curve
    from s2vc.engine.samples import require_sample_videos

    if args.dataset is not None and args.videos:
        raise UsageError(f"--dataset calibrates on its training split: give no VIDEO files (got {args.videos[:2]})")
    if args.write_to is not None and args.flow is not None and Path(args.write_to).resolve() == Path(args.flow).resolve():
        raise UsageError(f"--write-to {args.write_to} is the --flow file itself: use --write to change it in place")
    from s2vc.engine.checkpoint import default_checkpoint_path
    if args.write and (args.flow is None or Path(args.flow).resolve() == default_checkpoint_path().resolve()):
        raise UsageError("--write would rewrite the bundled flow, which every command uses by default: "
                         "write a copy with --write-to FILE (then --flow FILE)")
    if args.size is not None and args.size < 0:
        raise UsageError(f"--decode-size must be >= 0 (0: as stored), got {args.size}")
    args.size = args.size or None                          # 0: frames as stored
    windows, data = 8, None
    if args.dataset is not None:
        videos, windows, data = dataset_videos(args)
        source = (f"{len(videos)} of the {data['split_videos']} training videos of {args.dataset}"
                  + (f" (fold {args.fold})" if args.dataset in ("ucf101", "hmdb51") else ""))
    else:
        videos = [Path(v) for v in args.videos] or require_sample_videos()
        source = f"{len(videos)} video{'s' if len(videos) != 1 else ''}"
    # one measurement gives the printed rows and the plot's curve (a fraction per alpha is a count)
    asked = [float(a) for a in args.alphas]
    cal = calibrate(args.flow, videos, preserve=args.preserve, alphas=sorted(set(asked) | set(PLOT_ALPHAS)),
                    clip_len=args.clip_len, size=args.size, stride=args.stride, progress=not args.no_progress,
                    max_windows=windows, device=args.device, data=data)
    curve, cal.table = cal.table, [row for row in cal.table if row[0] in asked]
    print(f"{cal.checkpoint.name}: {cal.windows} windows of {cal.clip_len} frames {cal.stride} apart, decoded "
          f"{'as stored' if cal.size is None else f'at {cal.size}'}, from {source}")
    print("alpha   preserved")
    for alpha, fraction in cal.table:
        print(f"{alpha:<7g} {100 * fraction:6.1f}%")
    print(f"alpha = {cal.alpha:.4f} preserves {100 * cal.preserve:.1f}% of latents")
    written = None
    if args.write or args.write_to is not None:
        written = write_alpha(cal, to=args.write_to)
        print(f"written to {written} meta['alpha'] (alpha_frames {cal.clip_len}, alpha_stride {cal.stride})"
              + (f"; {cal.checkpoint} unchanged" if args.write_to is not None else ""))
    plot = Path(args.plot) if args.plot else (
        written.with_name(written.stem + ".alpha.png") if written is not None else Path("alpha_calibration.png"))
    plot_alpha_curve(plot, curve, alpha=cal.alpha, preserve=cal.preserve, marked=cal.table,
                     title=f"{cal.checkpoint.name}: {cal.windows} windows of {cal.clip_len} frames {cal.stride} apart")
    print(f"plot: {plot}")
    return 0
