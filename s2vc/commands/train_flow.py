"""``s2vc train-flow``: train the flow by maximum likelihood on frames of videos/images
(``s2vc.training.flow_training.train_flow``)."""
from __future__ import annotations

import argparse
import shlex

HELP = "train the flow by maximum likelihood on frames of videos/images"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data", nargs="+", required=True,
                   help="video/image files or folders; 'samples' = the sample media installed packages ship")
    p.add_argument("--val-data", nargs="+", default=None,
                   help="held-out files or folders (default: the last --holdout of each training video)")
    p.add_argument("--holdout", type=float, default=0.1, help="tail fraction of each video held out (no --val-data)")
    p.add_argument("--out", required=True, help="flow checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume.pt if it exists")
    p.add_argument("--init", default=None, help="start from this flow checkpoint instead of a new flow")
    g = p.add_argument_group("architecture (new flows)")
    g.add_argument("--resolution", type=int, default=32)
    g.add_argument("--high-blocks", type=int, default=4)
    g.add_argument("--low-blocks", type=int, default=6)
    g.add_argument("--fc-blocks", type=int, default=6)
    g.add_argument("--hidden", type=int, default=32)
    g.add_argument("--fc-hidden", type=int, default=64)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--steps-per-epoch", type=int, default=100)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=50.0, help="max gradient norm")
    g.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up")
    g = p.add_argument_group("data")
    g.add_argument("--decode-size", type=int, default=128, help="shorter side frames are decoded at")
    g.add_argument("--max-frames", type=int, default=400, help="frames decoded per video at most")
    g.add_argument("--synthetic", type=int, default=0, help="add this many procedural frames to training")
    g.add_argument("--val-frames", type=int, default=32, help="evaluation views per held-out source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tensorboard", default=None, help="TensorBoard folder (default OUT.logs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> dict:
    from s2vc.commands.common import settings_from_args
    from s2vc.training.flow_training import FlowTrainConfig, train_flow

    argv = getattr(args, "argv", None) or ["train-flow", "..."]
    cfg = settings_from_args(FlowTrainConfig, args, progress=not args.no_progress,
                             command="s2vc " + " ".join(shlex.quote(a) for a in argv))
    return train_flow(cfg)
