"""``s2vc train-flow``: train the flow by maximum likelihood on frames of videos/images or of a
dataset's training split, then calibrate its alpha (``s2vc.training.flow.training.train_flow``).
Runs under torchrun too (one process per GPU or CPU share)."""
from __future__ import annotations

import argparse
import shlex

HELP = "train the flow by maximum likelihood on frames of videos/images"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from s2vc.commands.common import FOLD_HELP, add_device_argument, add_synthetic_arguments, deprecated_alias
    from s2vc.engine.calibrate import DEFAULT_PRESERVE
    from s2vc.training.data.datasets import DATASETS

    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+",
                        help="video/image files or folders; 'samples' = the sample media installed packages ship")
    source.add_argument("--dataset", choices=DATASETS, default=None,
                        help="instead of --data: the training split of this dataset (its test videos are never read)")
    p.add_argument("--val-data", nargs="+", default=None,
                   help="held-out files or folders (default: the last --holdout of each training video)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="tail fraction of each video held out (no --val-data); with --dataset: that fraction of "
                        "the training videos, held out whole")
    p.add_argument("--out", required=True, help="flow checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume.pt if it exists")
    p.add_argument("--init", default=None, help="start from this flow checkpoint instead of a new flow")
    g = p.add_argument_group("architecture (new flows)")
    g.add_argument("--resolution", type=int, default=32, help="side in pixels of the frames the flow sees (32 or 64)")
    g.add_argument("--high-blocks", type=int, default=4, help="coupling blocks at the full resolution")
    g.add_argument("--low-blocks", type=int, default=6, help="coupling blocks at the halved resolution")
    g.add_argument("--fc-blocks", type=int, default=6, help="fully connected coupling blocks at the end")
    g.add_argument("--hidden", type=int, default=32, help="channels of the convolutional subnetworks")
    g.add_argument("--fc-hidden", type=int, default=64, help="width of the fully connected subnetworks")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20, help="training epochs")
    g.add_argument("--steps-per-epoch", type=int, default=100, help="optimiser steps per epoch")
    g.add_argument("--batch-size", type=int, default=32, help="frames per optimiser step (per process)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    g.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    g.add_argument("--grad-clip", type=float, default=50.0, help="max gradient norm")
    g.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up")
    g.add_argument("--minutes", type=float, default=None,
                   help="training-time budget of the run (resumes included): stop when it or --epochs ends")
    g.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    g = p.add_argument_group("data")
    g.add_argument("--decode-size", type=int, default=128, help="shorter side frames are decoded at")
    g.add_argument("--max-frames", type=int, default=400, help="frames decoded per video at most")
    g.add_argument("--synthetic", type=int, default=0, help="add this many procedural frames to training")
    g.add_argument("--val-frames", type=int, default=32, help="evaluation views per held-out source")
    g.add_argument("--crop-scale", type=float, nargs=2, default=(0.35, 1.0), metavar=("MIN", "MAX"),
                   help="training crops: squares of this fraction of the shorter side")
    g = p.add_argument_group("dataset (--dataset)")
    g.add_argument("--root", default=None, help="dataset root (synthetic: default a cache folder)")
    g.add_argument("--fold", type=int, default=1, help=FOLD_HELP)
    g.add_argument("--max-videos", type=int, default=256,
                   help="training videos decoded at most, evenly spaced over the split")
    g.add_argument("--frames-per-video", type=int, default=32,
                   help="frames kept per video, evenly spaced over its first --max-frames")
    add_synthetic_arguments(g)
    g = p.add_argument_group("alpha (calibrated when training ends, stored in the checkpoint)")
    g.add_argument("--preserve", type=float, default=DEFAULT_PRESERVE,
                   help="fraction of latents alpha keeps (the paper's 0.227)")
    deprecated_alias(g, "--frames", old="--clip-len", dest="clip_len", type=int, default=16,
                     help="frames per calibration window: the pretraining clip's --frames (at --decode-size)")
    g.add_argument("--stride", type=int, default=2,
                   help="frame step inside a calibration window: the pretraining clip's --stride")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, crops and batches")
    add_device_argument(p, "the flow trains on (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tensorboard", default=None, help="TensorBoard folder (default OUT.logs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> dict:
    from s2vc.commands.common import UsageError, settings_from_args, synthetic_set
    from s2vc.training.flow.training import FlowTrainConfig, train_flow

    if args.dataset is None and (args.root is not None or args.fold != 1):
        raise UsageError("train-flow: --root and --fold name a dataset's split; they need --dataset (got --data)")
    argv = getattr(args, "argv", None) or ["train-flow", "..."]
    cfg = settings_from_args(FlowTrainConfig, args, progress=not args.no_progress,
                             synthetic_set=synthetic_set(args) if args.dataset == "synthetic" else None,
                             command="s2vc " + " ".join(shlex.quote(a) for a in argv))
    return train_flow(cfg)
