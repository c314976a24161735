"""``s2vc eval EVAL``: evaluations of a pretrained backbone, one sub-subcommand each.

Each evaluation's flags become its library settings (``training.eval_common.EvalSettings`` and
its extensions, ``SimilaritySettings``, ``StaticGainSettings``, ``CamSettings``); the library
writes the JSON / PNG outputs and hands back an ``Evaluation`` whose table this prints.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from s2vc.commands import common
from s2vc.commands.common import (UsageError, add_device_argument, add_synthetic_arguments, deprecated_alias,
                                  require_fitted_flow, settings_from_args, synthetic_set)
from s2vc.training.evaluation.common import EVAL_DATASETS

HELP = ("evaluations of a pretrained backbone: retrieval, linear, finetune, temporal-order, probes, similarity, "
        "static-gain, cam; and of the keys themselves: key-bands")

# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------
def add_backbone_eval_arguments(p: argparse.ArgumentParser, *, batch_help: str = "clips per backbone forward",
                                classifier: dict[str, tuple[float, str | None]] | None = None) -> None:
    """The flags of the evaluations of a backbone on videos (retrieval, linear, temporal-order,
    probes, finetune). ``classifier``: the trained head's ``epochs`` / ``lr`` / ``weight_decay``
    flags as {name: (default, help)}; None: no such flags (retrieval)."""
    from s2vc.training.evaluation.features import PROTOCOLS
    from s2vc.training.models import BACKBONES

    p.add_argument("--checkpoint", default=None, help="pretrain checkpoint (its encoder_q.backbone is evaluated)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="backbone weights trained elsewhere: a state_dict with torchvision r3d_18/s3d names, "
                        "possibly under a prefix (module., backbone., encoder_q., ...), or a pretrain run folder; "
                        "one line says the prefix stripped and the keys dropped")
    p.add_argument("--backbone", default=None, choices=BACKBONES,
                   help="expected backbone (default: the checkpoint's); alone, a randomly initialised baseline")
    p.add_argument("--dataset", default="synthetic", choices=EVAL_DATASETS, help="videos evaluated on")
    p.add_argument("--root", default=None, help="dataset root (synthetic: built there, default a cache)")
    p.add_argument("--fold", type=int, default=1, help=common.FOLD_HELP)
    add_synthetic_arguments(p)
    p.add_argument("--frames", type=int, default=16, help="frames per window")
    p.add_argument("--stride", type=int, default=2, help="temporal stride of a window's frames")
    deprecated_alias(p, "--crop-size", old="--size", dest="size", type=int, default=112,
                     help="centre crop side fed to the backbone")
    p.add_argument("--decode-size", type=int, default=128, help="shorter side the video is decoded to")
    p.add_argument("--num-clips", type=int, default=10, help="windows per video (half-overlapping), averaged")
    p.add_argument("--overlap", type=float, default=0.5, help="overlap of consecutive windows")
    p.add_argument("--protocol", choices=PROTOCOLS, default="coclr",
                   help="coclr: mean of the windows' features; concat: the windows joined along time into one "
                        "clip (the authors' code)")
    p.add_argument("--crops", type=int, choices=(1, 10), default=1,
                   help="test views per window: the centre crop, or ten-crop (corners + centre, flipped)")
    p.add_argument("--batch-size", type=int, default=32, help=batch_help)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader decoding workers (default: up to 4, at most the CPU count)")
    add_device_argument(p, "the backbone runs on")
    p.add_argument("--seed", type=int, default=0, help="seed of a randomly initialised backbone and of the classifier")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    if classifier is not None:
        (epochs, epochs_help), (lr, lr_help), (wd, wd_help) = (classifier[k] for k in ("epochs", "lr", "weight_decay"))
        p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
        p.add_argument("--lr", type=float, default=lr, help=lr_help)
        p.add_argument("--weight-decay", type=float, default=wd, help=wd_help)


def _linear_head(weight_decay: float = 1e-4) -> dict[str, tuple[float, str | None]]:
    """The flags of the linear classifier on frozen features (linear, temporal-order, probes)."""
    return {"epochs": (100, "linear classifier epochs (features precomputed; at least 1000 steps in all)"),
            "lr": (1e-2, "Adam learning rate of the linear classifier"),
            "weight_decay": (weight_decay, "Adam weight decay of the linear classifier")}


def _add_retrieval(p):
    add_backbone_eval_arguments(p)


def _add_linear(p):
    add_backbone_eval_arguments(p, classifier=_linear_head())


def _add_probes(p):
    from s2vc.training.evaluation.probes import PROBE_WEIGHT_DECAY
    add_backbone_eval_arguments(p, classifier=_linear_head(PROBE_WEIGHT_DECAY))
    p.add_argument("--frame-difference", action="store_true",
                   help="probe the learning-free frame-difference feature instead of a backbone")


def _add_finetune(p):
    add_backbone_eval_arguments(p, batch_help="clips per training step and per test forward",
                                classifier={"epochs": (30, "finetuning epochs"),
                                            "lr": (1e-4, "Adam learning rate of the whole network (cosine decay)"),
                                            "weight_decay": (1e-4, "Adam weight decay of the whole network")})
    p.add_argument("--dropout", type=float, default=0.5, help="dropout before the classifier")
    p.add_argument("--static", action="store_true", help="train and test on static clips (one frame repeated)")
    p.add_argument("--save", default=None, help="finetuned checkpoint (default: --out with .pt)")
    p.add_argument("--resume", action="store_true", help="continue from --save")


def _add_similarity(p):
    p.add_argument("--dataset", default="synthetic", choices=EVAL_DATASETS, help="videos measured")
    p.add_argument("--root", default=None, help="dataset root (synthetic: built there, default a cache)")
    p.add_argument("--split", default="train", help="which videos of the dataset (train, test, ...)")
    p.add_argument("--fold", type=int, default=1, help=common.FOLD_HELP)
    add_synthetic_arguments(p)
    p.add_argument("--flow", default=None,
                   help="flow checkpoint (default: the bundled one; with --dataset ucf101, hmdb51 or kinetics a "
                        "flow fitted to it is required: s2vc train-flow --dataset ...; 'bundled' forces the "
                        "bundled one)")
    p.add_argument("--alpha", type=float, default=None, help="default: the flow checkpoint's calibrated alpha")
    p.add_argument("--strategy", default="zero",
                   help="suppression strategy of the latents below alpha (s2vc generate --help)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=1, help="frame step inside a clip")
    p.add_argument("--decode-size", type=int, default=None,
                   help="shorter side frames are decoded at (default: as stored)")
    p.add_argument("--classes", type=int, default=10, help="classes drawn at most")
    p.add_argument("--per-class", type=int, default=8, help="videos drawn per class")
    p.add_argument("--seed", type=int, default=0, help="seed of the classes and videos drawn")
    p.add_argument("--out", required=True, help="output folder (similarity.json, similarity.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _add_static_gain(p):
    p.add_argument("--static", required=True, help="per-class JSON of the static-clip model (finetune --static)")
    # --method is generate's old spelling of --mode elsewhere: here the file is --method-json
    deprecated_alias(p, "--method-json", old="--method", dest="method", required=True, metavar="JSON",
                     help="per-class JSON of the method (e.g. S²VC)")
    p.add_argument("--baseline", required=True, help="per-class JSON of the baseline (e.g. MoCo)")
    p.add_argument("--names", nargs=2, default=("S²VC", "MoCo"), help="labels of method and baseline")
    p.add_argument("--out", default=None, help="JSON of the result")
    p.add_argument("--plot", default=None, help="PNG scatter plot (default: --out with .png)")


def _add_cam(p):
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--checkpoint", required=True, help="finetune checkpoint (CAM) or pretrain checkpoint "
                                                      "(activation map, no classifier)")
    p.add_argument("--out", required=True, help="folder for the PNGs and MP4s")
    p.add_argument("--class", dest="target", default=None, help="class name or index (default: the prediction)")
    p.add_argument("--frames", type=int, default=None, help="default: the finetuned model's, else 16")
    p.add_argument("--stride", type=int, default=None, help="default: the finetuned model's, else 2")
    p.add_argument("--start", type=int, default=0, help="first frame of the clip")
    deprecated_alias(p, "--crop-size", old="--size", dest="size", type=int, default=None,
                     help="centre crop fed to the backbone (default: the finetuned model's, else 112)")
    add_device_argument(p, "the model runs on")


def _add_key_bands(p):
    from s2vc.training.experiments.key_bands import DEFAULT_ARMS
    from s2vc.training.pretrain.keys import MODES
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=MODES, help="the arms whose keys are probed")
    add_synthetic_arguments(p)
    p.add_argument("--flow", default=None, help="flow of the s2vc / tfd keys (default: the synthetic set's own "
                                                "fitted flow; 'bundled': the bundled one)")
    p.add_argument("--alpha", type=float, default=None, help="default: the flow checkpoint's calibrated alpha")
    p.add_argument("--strategy", default="zero",
                   help="suppression strategy of the latents below alpha (s2vc generate --help)")
    p.add_argument("--detail", default="keep", choices=("keep", "dynamic"),
                   help="the s2vc key's detail finer than the flow: kept (the paper) or without its clip mean")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=2, help="frame step inside a clip")
    deprecated_alias(p, "--decode-size", old="--size", dest="size", type=int, default=None,
                     help="frame side (default: the set's)")
    p.add_argument("--grid", type=int, default=8, help="pooled grid of the band features")
    p.add_argument("--probe-steps", type=int, default=1000, help="optimiser steps of each linear probe (at least)")
    p.add_argument("--seed", type=int, default=0, help="seed of the keys' random parts and of the probes")
    add_device_argument(p, "the keys are made and probed on")
    p.add_argument("--out", default=None, help="JSON of the result (a PNG of the heat maps beside it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


# ---------------------------------------------------------------------------------------------
# Runs: flags -> settings -> library -> printed table
# ---------------------------------------------------------------------------------------------
def _show(evaluation):
    """Print an ``Evaluation``'s table (stdout) and notes (stderr); it is the command's result."""
    if evaluation.table:
        print(evaluation.table)
    for note in evaluation.notes:
        print(note, file=sys.stderr)
    return evaluation


def _run_retrieval(args):
    from s2vc.training.evaluation.common import EvalSettings
    from s2vc.training.evaluation.frozen import evaluate_retrieval
    return _show(evaluate_retrieval(settings_from_args(EvalSettings, args, synthetic=synthetic_set(args),
                                                       progress=not args.no_progress)))


def _run_linear(args):
    from s2vc.training.evaluation.common import LinearEvalSettings
    from s2vc.training.evaluation.frozen import evaluate_linear
    return _show(evaluate_linear(settings_from_args(LinearEvalSettings, args, synthetic=synthetic_set(args),
                                                    progress=not args.no_progress)))


def _run_temporal_order(args):
    from s2vc.training.evaluation.common import LinearEvalSettings
    from s2vc.training.evaluation.frozen import evaluate_temporal_order
    return _show(evaluate_temporal_order(settings_from_args(LinearEvalSettings, args, synthetic=synthetic_set(args),
                                                            progress=not args.no_progress)))


def _run_probes(args):
    from s2vc.training.evaluation.probes import ProbeSettings, evaluate_probes
    return _show(evaluate_probes(settings_from_args(ProbeSettings, args, synthetic=synthetic_set(args),
                                                    progress=not args.no_progress)))


def _run_finetune(args):
    from s2vc.training.evaluation.finetune import FinetuneSettings, finetune
    return _show(finetune(settings_from_args(FinetuneSettings, args, synthetic=synthetic_set(args),
                                             progress=not args.no_progress)))


def _run_similarity(args):
    from s2vc.training.evaluation.similarity import SimilaritySettings, evaluate_similarity
    # Z_p is S2VC's key: on a public dataset the bundled flow is refused, as in pretrain/generate
    flow = require_fitted_flow("eval similarity", dataset=args.dataset, mode="s2vc", flow=args.flow,
                               root=args.root, fold=args.fold, frames=args.frames, stride=args.stride,
                               decode_size=args.decode_size)
    return _show(evaluate_similarity(settings_from_args(SimilaritySettings, args, flow=flow,
                                                        synthetic=synthetic_set(args), progress=not args.no_progress)))


def _run_static_gain(args):
    from s2vc.training.evaluation.static_gain import StaticGainSettings, evaluate_static_gain
    return _show(evaluate_static_gain(settings_from_args(StaticGainSettings, args, names=tuple(args.names))))


def _run_key_bands(args):
    from s2vc.training.experiments.key_bands import KeyBandSettings, evaluate_key_bands
    return _show(evaluate_key_bands(settings_from_args(KeyBandSettings, args, arms=tuple(args.arms),
                                                       synthetic=synthetic_set(args), progress=not args.no_progress)))


def _run_cam(args):
    from s2vc.training.evaluation.cam import CamSettings, class_activation_maps
    return _show(class_activation_maps(settings_from_args(CamSettings, args)))


# name -> (help, flags, run), in the order `s2vc eval --help` lists them
EVALS: dict[str, tuple[str, Callable, Callable]] = {
    "retrieval": ("nearest-neighbour retrieval R@1/5/10/20/50 (test queries train)", _add_retrieval, _run_retrieval),
    "linear": ("linear probe top-1 on frozen features", _add_linear, _run_linear),
    "temporal-order": ("natural vs frame-shuffled linear test (paper Fig. 1)", _add_linear, _run_temporal_order),
    "similarity": ("intra-class cosine similarity of Z vs Z_p (paper Fig. 4)", _add_similarity, _run_similarity),
    "finetune": ("finetune the backbone with a classifier; windows x (ten-)crop testing", _add_finetune,
                 _run_finetune),
    "static-gain": ("per-class gain vs static accuracy, Pearson r (paper Fig. 6)", _add_static_gain,
                    _run_static_gain),
    "cam": ("class activation maps over the frames of videos (paper Fig. 7)", _add_cam, _run_cam),
    "probes": ("motion and look probes on the synthetic set's test split", _add_probes, _run_probes),
    "key-bands": ("look and motion probes on each arm's MoCo key, per spatial frequency band", _add_key_bands,
                  _run_key_bands),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    evals = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
    for name, (help_text, add_flags, run_eval) in EVALS.items():
        q = evals.add_parser(name, help=help_text)
        # as after every command (s2vc/cli.py); SUPPRESS keeps an earlier --debug
        q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on an error, show the full traceback instead of one line")
        add_flags(q)
        q.set_defaults(run=run_eval)


def run(args: argparse.Namespace) -> int:
    """Reached only without an evaluation (argparse requires one)."""
    raise UsageError(f"s2vc eval needs an evaluation, one of {list(EVALS)}")
