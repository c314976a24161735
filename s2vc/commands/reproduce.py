"""``s2vc reproduce``: pretrain MoCo / S²VC / TFD / FAME / BE / oracle over seeds on the synthetic set,
evaluate every snapshot, tabulate (``training.experiments.reproduce``). Resumable: the same
command again continues where it stopped."""
from __future__ import annotations

import argparse

from s2vc.commands import common

HELP = ("pretrain MoCo / S²VC / TFD / FAME / BE / oracle over seeds, paired by seed, on the synthetic set (or your "
        "own), evaluate, tabulate")


def add_budget_arguments(p: argparse.ArgumentParser) -> None:
    """The flags ``reproduce`` and ``ablate`` share: the experiment folder, the budget every run
    has, the synthetic set and the evaluation (``training.experiments.ExperimentConfig``)."""
    from s2vc.training.experiments.sets import EXPERIMENT_DATASETS

    p.add_argument("--out", required=True, help="experiment folder (runs, cached evaluations, results)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one pretraining run per arm and seed")
    p.add_argument("--steps", type=int, default=300, help="pretraining steps per run")
    p.add_argument("--snapshot-every", type=int, default=100, help="steps between evaluated snapshots")
    p.add_argument("--ckpt-every", type=int, default=None,
                   help="steps between resumable checkpoints (default: --snapshot-every)")
    p.add_argument("--eval-only", action="store_true", help="train nothing; evaluate the snapshots there are")
    g = p.add_argument_group("pretraining budget (every run the same)")
    g.add_argument("--backbone", default="small", help="video encoder of every run")
    g.add_argument("--frames", type=int, default=16, help="frames per clip")
    g.add_argument("--stride", type=int, default=2, help="frame step inside a clip")
    common.deprecated_alias(g, "--crop-size", old="--size", dest="size", type=int, default=64,
                            help="crop side in pixels fed to the backbone")
    g.add_argument("--batch-size", type=int, default=16, help="clips per pretraining step")
    g.add_argument("--queue", type=int, default=64,
                   help="MoCo queue; keep it below the number of training videos, or each video's own "
                        "earlier keys sit in the queue as negatives")
    g.add_argument("--moco-m", type=float, default=0.99, help="momentum of the key encoder m")
    g.add_argument("--lr", type=float, default=1e-3, help="pretraining learning rate")
    g.add_argument("--flow", default=None, help="flow checkpoint of the s2vc (and tfd resolution) arms; default: the synthetic set's own "
                        "fitted flow (built once, cached beside the set; another --dataset needs one: s2vc train-flow "
                        "fits it); 'bundled': the bundled one")
    g.add_argument("--alpha", type=float, default=None, help="s2vc arm's alpha; default: the flow checkpoint's")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader decoding workers (0: in this process)")
    g.add_argument("--cache-videos", action=argparse.BooleanOptionalAction, default=None,
                   help="keep every decoded training video in memory (default: when they take at most a quarter "
                        "of this machine's memory, as estimated from a sample of them; the synthetic set always)")
    common.add_device_argument(g, "every run trains and is evaluated on")
    g.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    g = p.add_argument_group("data and evaluation")
    g.add_argument("--dataset", choices=EXPERIMENT_DATASETS, default="synthetic",
                   help="the set every run trains on (its train split) and is scored on (its test or val split): the "
                        "built-in synthetic set, or a set of one's own in UCF101's, HMDB51's or Kinetics' layout "
                        "(no oracle arm there: it needs the synthetic set's actor masks)")
    g.add_argument("--root", default=None, help="that set's folder (synthetic: where it is built; default: the cache)")
    g.add_argument("--fold", type=int, default=1, help=common.FOLD_HELP)
    g.add_argument("--decode-size", type=int, default=None,
                   help="shorter side frames are decoded at (default: the synthetic set as rendered, 128 for the others)")
    common.add_synthetic_arguments(g, old_names=True)
    g.add_argument("--num-clips", type=int, default=4, help="evaluation windows per video")
    g.add_argument("--eval-batch-size", type=int, default=32, help="clips per backbone forward when evaluating")
    g.add_argument("--seed-eval", type=int, default=0, help="seed of the linear classifiers")
    g.add_argument("--split", choices=("val", "test"), default="test",
                   help="the split scored: val (the set's validation split: --synthetic-val-per-class; in UCF101's "
                        "layout one's own ucfTrainTestlist/vallistNN.txt of videos held out of trainlistNN.txt; "
                        "Kinetics' val; HMDB51 has none) for choosing budgets, alphas and variants, or test (read "
                        "once per reported run); cached apart")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from s2vc.training.experiments.runner import ARMS
    from s2vc.training.pretrain.keys import MODES

    p.add_argument("--arms", nargs="+", default=None,
                   help=f"pretraining modes to compare, of {ARMS} (<mode>-keys: that mode on keys generated "
                        "once into a mirror of the training split; s2vc-dynamic / s2vc-topk: the project's variants, made each "
                        "step; s2vc-topk-keys: s2vc-topk read from a mirror, made as s2vc-keys is) "
                        f"(default: {' '.join(MODES)}; without oracle on a --dataset other than synthetic)")
    p.add_argument("--best", default=None, metavar="ARM",
                   help="the arm that is the project's own variant: its paired differences against tfd and s2vc "
                        "are reported too")
    p.add_argument("--seeds-of", nargs="+", default=[], metavar="ARM=SEEDS",
                   help="arms that run only some of --seeds, e.g. oracle=0,1,2 be=0,1,2 fame=0,1,2 (their "
                        "pairs are taken over the seeds both arms have)")
    add_budget_arguments(p)


def run(args: argparse.Namespace) -> dict:
    from s2vc.training.experiments.runner import ReproduceConfig, reproduce

    return reproduce(common.settings_from_args(ReproduceConfig, args, synthetic=common.synthetic_set(args)))
