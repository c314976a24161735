"""``s2vc pretrain``: MoCo pretraining with motion-preserved positives (``training.pretrain``).

Flags, or a TOML file of them (``--config configs/*.toml``; flags given on the command line win
over the file), become a ``PretrainConfig``; ``pretrain(cfg)`` does the work. torchrun runs it
in several processes: ``torchrun --nproc-per-node N -m s2vc.cli pretrain ...``.
"""
from __future__ import annotations

import argparse

from s2vc.commands import common

HELP = "MoCo pretraining with motion-preserved positives (torchrun for several processes)"
COMMAND = "pretrain"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from s2vc.training.data.datasets import DATASETS
    from s2vc.training.pretrain.keys import MODES
    from s2vc.engine.generator import BACKENDS as GEN_BACKENDS
    from s2vc.engine.strategies import STRATEGIES
    from s2vc.training.models import BACKBONES

    p.add_argument("--dataset", choices=DATASETS, default="synthetic", help="videos to pretrain on")
    p.add_argument("--root", default=None, help="dataset root (synthetic: cache folder)")
    p.add_argument("--fold", type=int, default=1, help=common.FOLD_HELP)
    p.add_argument("--mode", choices=MODES, default="s2vc",
                   help="the MoCo key: s2vc (motion-preserved), moco (plain), tfd, oracle, ...")
    p.add_argument("--out", required=True, help="run folder (checkpoint, TensorBoard logs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=BACKBONES, default="small", help="video encoder")
    g.add_argument("--dim", type=int, default=128, help="dimension of the MoCo embedding")
    g.add_argument("--queue", type=int, default=2048, help="MoCo queue size K")
    g.add_argument("--moco-m", type=float, default=0.999, help="momentum of the key encoder m")
    g.add_argument("--moco-t", type=float, default=0.07, help="softmax temperature T")
    g = p.add_argument_group("clips")
    g.add_argument("--frames", type=int, default=16,
                   help="frames per clip (the paper's R3D-18 clip, and the windows train-flow calibrates alpha on)")
    g.add_argument("--stride", type=int, default=2, help="frame step inside a clip")
    common.deprecated_alias(g, "--crop-size", old="--size", dest="size", type=int, default=64,
                            help="crop size fed to the backbone")
    g.add_argument("--decode-size", type=int, default=None,
                   help="shorter side frames are decoded at (default: as stored; set it for real datasets, e.g. 128)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader decoding workers (0: in this process)")
    g.add_argument("--strict", action="store_true", help="a video that cannot be used is fatal")
    g.add_argument("--cache-videos", action="store_true",
                   help="decode every video into memory once, before the workers fork (they share it): "
                        "for small sets such as the synthetic one")
    g = p.add_argument_group("generator")
    g.add_argument("--flow", default=None,
                   help="flow checkpoint (default: the bundled one; mode s2vc on ucf101, hmdb51 or kinetics needs a "
                        "flow fitted to it, s2vc train-flow --dataset ...; on a folder the fit check says whether the "
                        "flow fits; 'bundled' forces the bundled one)")
    g.add_argument("--alpha", type=float, default=None, help="default: the flow checkpoint's calibrated alpha")
    g.add_argument("--strategy", default="zero", choices=STRATEGIES,
                   help="suppression strategy of the latents below alpha (s2vc generate --help)")
    g.add_argument("--keep-fraction", type=float, default=None,
                   help="--strategy topk: the fraction of most-varying latents kept per clip (default: the fraction "
                        "the flow's alpha was calibrated for)")
    g.add_argument("--detail", default="keep", choices=("keep", "dynamic"),
                   help="mode s2vc: the detail finer than the flow's resolution is kept as is (the paper) or loses "
                        "its static part, its mean over the clip ('dynamic', docs/RESULTS.md)")
    common.deprecated_alias(g, "--backend", old="--gen-backend", dest="gen_backend", default="auto", choices=GEN_BACKENDS,
                            help="what runs the flow of the key (s2vc generate --backend)")
    common.deprecated_alias(g, "--clamp", old="--clamp-key", dest="clamp_key",
                            action=argparse.BooleanOptionalAction, default=True,
                            help="clip the generated key to [0, 1] (default), as a mirror (--keys) must store it; "
                                 "--no-clamp passes the generator's values outside [0, 1] on (the official code)")
    g.add_argument("--require-flow-fit", action="store_true",
                   help="mode s2vc: stop when the flow does not fit the training frames (default: say so and go on)")
    g.add_argument("--keys", default=None, metavar="MIRROR",
                   help="modes s2vc/tfd: read the key clips from this motion-preserved mirror of the dataset "
                        "(s2vc generate --dataset ... --out MIRROR) instead of generating them each step")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20, help="passes over the training videos")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all (0: write the initial checkpoint, "
                   "the start every arm of this --seed shares, and stop)")
    g.add_argument("--batch-size", type=int, default=16, help="per process")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (per process batch)")
    g.add_argument("--weight-decay", type=float, default=1e-5, help="optimiser weight decay")
    g.add_argument("--warmup-epochs", type=float, default=1, help="epochs of linear learning-rate warm-up")
    g.add_argument("--lr-steps", type=int, nargs="*", default=[], help="epochs where lr is multiplied by 0.1")
    g.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--ckpt-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, clips and keys")
    common.add_device_argument(p, "the run trains on (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    common.add_synthetic_arguments(p)
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also keep the model every N steps as OUT/snapshots/step_NNNNNN.pt (learning curves)")
    p.add_argument("--log-videos", type=int, default=0, metavar="N",
                   help="every N steps, log the first query/key clip pair of the batch to TensorBoard as an "
                        "animated image (OUT/logs; default 0: never)")


def settings(args: argparse.Namespace):
    """The ``PretrainConfig`` the flags (and ``--config``'s file, applied when the command line
    was parsed: ``common.parse_command_line``) name."""
    from s2vc.training.pretrain.loop import PretrainConfig

    flow = common.require_fitted_flow("pretrain", dataset=args.dataset, mode=args.mode, flow=args.flow,
                                      root=args.root, fold=args.fold, frames=args.frames, stride=args.stride,
                                      decode_size=args.decode_size)
    return common.settings_from_args(PretrainConfig, args, flow=flow, synthetic=common.synthetic_set(args))


def run(args: argparse.Namespace) -> dict:
    from s2vc.training.pretrain.loop import pretrain

    return pretrain(settings(args))
