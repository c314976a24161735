"""``s2vc generate``: write motion-preserved versions of video files (``s2vc.engine.video_files``).

Its flags (all but the VIDEO list) are also ``s2vc demo``'s: ``add_arguments(p, videos=False)``,
``generator_from_args`` and ``generate_from_args`` are what the demo builds on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2vc.commands import common
from s2vc.commands.common import add_device_argument, deprecated_alias

HELP = "write motion-preserved versions of video files"


def add_arguments(p: argparse.ArgumentParser, videos: bool = True) -> argparse.ArgumentParser:
    from s2vc.engine.generator import BACKENDS
    from s2vc.engine.strategies import STRATEGIES, help_text

    if videos:
        p.add_argument("videos", nargs="*", metavar="VIDEO",
                       help="video files (default: the sample videos installed packages ship)")
    p.add_argument("--out", default="s2vc_out", help="output folder")
    p.add_argument("--flow", default=None,
                   help="flow checkpoint (default: the bundled one; a --dataset mirror of ucf101, hmdb51 or kinetics "
                        "needs a flow fitted to it, s2vc train-flow --dataset ...; 'bundled' forces the bundled one)")
    p.add_argument("--alpha", type=float, default=None,
                   help="STD threshold of eq. (4) (default: the flow checkpoint's recommended value, else 0.5)")
    p.add_argument("--preserve", type=float, default=None,
                   help="choose alpha so that this fraction of latents is kept on the given videos (with --dataset: on "
                        "its training split's windows of --frames frames --stride apart; overrides --alpha)")
    p.add_argument("--strategy", choices=STRATEGIES, default="zero", help=f"suppression strategy: {help_text()}")
    p.add_argument("--keep-fraction", type=float, default=None,
                   help="for --strategy topk: fraction of latents kept, in (0, 1] (default: the fraction the "
                        "flow's alpha was calibrated for, else 0.227)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="what runs the flow: auto picks the fastest one available here (s2vc info lists them)")
    p.add_argument("--model", default=None,
                   help="the exported model --backend onnxruntime / tensorrt runs: an ONNX file (s2vc export onnx) "
                        "or a TensorRT engine (s2vc export trt)")
    deprecated_alias(p, "--decode-size", old="--size", dest="size", type=int, default=None,
                     help="shorter side frames are decoded at (default 128; with --dataset: as stored, "
                        "like pretrain's --decode-size)")
    deprecated_alias(p, "--frames", old="--clip-len", dest="clip_len", type=int, default=None,
                     help="frames per window (T of the temporal STD; default 16, pretrain's --frames)")
    p.add_argument("--max-frames", type=int, default=None, help="frames per video at most")
    deprecated_alias(p, "--batch-size", old="--batch", dest="batch", type=int, default=4,
                     help="windows per generator call")
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest",
                   help="how the flow-resolution key is brought back to the frame size")
    p.add_argument("--clamp", action="store_true", help="clip the output to [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random strategies")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="dtype of the flow's decode (autocast; fp16 on CUDA only); the encode, which "
                        "decides the mask, stays fp32 (BENCHMARKS.md: reduced precision)")
    add_device_argument(p, "the generator runs on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    if videos:
        _add_dataset_arguments(p)
    return p


def _add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    from s2vc.training.data.datasets import DATASETS
    from s2vc.engine.video_write import STORAGES
    from s2vc.training.pretrain.mirror import METHODS, SPLITS

    from .common import add_synthetic_arguments

    g = p.add_argument_group("a whole dataset: a motion-preserved mirror with the same layout and file names "
                             "(then: s2vc pretrain --keys MIRROR)")
    g.add_argument("--dataset", choices=DATASETS, default=None, help="generate the mirror of this dataset into --out")
    g.add_argument("--root", default=None, help="dataset root (synthetic: its cache folder by default)")
    g.add_argument("--fold", type=int, default=1, help=common.FOLD_HELP)
    g.add_argument("--split", choices=SPLITS, default="train", help="which videos (pretraining reads train)")
    g.add_argument("--stride", type=int, default=2, help="frame step inside a window (pretrain's --stride)")
    deprecated_alias(g, "--mode", old="--method", dest="method", choices=METHODS, default="s2vc",
                     help="s2vc (the flow) or tfd (the pixel baseline), pretrain's --mode")
    g.add_argument("--require-flow-fit", action="store_true",
                   help="stop when the flow does not fit the dataset's training frames (default: say so and go on)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decode processes and encoding threads of the pipeline (decode, generate, write "
                        "overlapped); 0 = one video after the other (default: half the cores, 1 to 8, with "
                        "a GPU --device; 0 on the CPU, where the generator takes every core)")
    g.add_argument("--storage", choices=tuple(STORAGES), default="lossless",
                   help="lossless: bit-exact frames; compact: near-lossless H.264 4:4:4 (a fourth to a sixth "
                        "of the disk at 44-47 dB; the manifest records its measured PSNR); residual: only the "
                        "generator's change at the flow's resolution (1/24 of lossless measured; the keys are "
                        "rebuilt from the source videos, which must stay; docs/MIRROR.md)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="this process writes videos I, I+N, ... (default: torchrun's RANK/WORLD_SIZE, else all)")
    add_synthetic_arguments(g)


FILE_SIZE, FILE_CLIP_LEN = 128, 16     # --decode-size / --frames when writing files (not a dataset)
DATASET_FRAMES = 16                    # --frames of a --dataset mirror: pretrain's default clip


def file_settings(args: argparse.Namespace) -> tuple[int, int]:
    """(size, clip_len) for video files: the flags, else the file defaults."""
    return args.size or FILE_SIZE, args.clip_len or FILE_CLIP_LEN


def generator_from_args(args: argparse.Namespace, videos: list[Path]):
    """The ``MotionPreservingGenerator`` the flags name; with ``--preserve``, alpha is chosen on
    ``videos`` (and printed). Its ``.alpha`` is the alpha used."""
    from s2vc.engine.checkpoint import load_flow
    from s2vc.engine.video_files import build_generator, preserving_alpha

    flow = load_flow(args.flow)
    alpha = args.alpha
    if args.preserve is not None:
        size, clip_len = file_settings(args)
        alpha = preserving_alpha(flow, videos, args.preserve, clip_len=clip_len, size=size)
        print(f"alpha = {alpha:.4f} keeps {100 * args.preserve:.1f}% of latents on these videos")
    return build_generator(flow, alpha=alpha, strategy=args.strategy, backend=args.backend,
                           keep_fraction=args.keep_fraction, upsample=args.upsample, clamp=args.clamp,
                           seed=args.seed, device=args.device, model=args.model,
                           precision=getattr(args, "precision", "fp32"))


def generate_from_args(args: argparse.Namespace, videos: list[Path], gen) -> tuple[list, list[str]]:
    """Run ``gen`` over ``videos`` with the flags' settings, printing a line per file (errors on
    stderr); returns (the ``FileResult``s, one "path: error" per file that failed)."""
    from s2vc.engine.video_files import describe_result, generate_files

    failures: list[str] = []

    def on_error(path: Path, exc: Exception) -> None:
        # video_io's messages already start with the path; others get it in front
        line = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        failures.append(line)
        print(f"error: {line}", file=sys.stderr)

    size, clip_len = file_settings(args)
    results = generate_files(videos, args.out, gen, clip_len=clip_len, size=size,
                             max_frames=args.max_frames, batch=args.batch, device=args.device,
                             progress=not args.no_progress, on_error=on_error,
                             on_done=lambda r: print(describe_result(r)))
    return results, failures


def _shard(text: str | None) -> tuple[int, int] | None:
    from .common import UsageError

    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def run_dataset(args: argparse.Namespace) -> int:
    """``--dataset``: the mirror of a whole dataset (``training.mirror.generate_mirror``)."""
    import os

    from s2vc.training.pretrain.mirror import MirrorConfig, describe, generate_mirror
    from s2vc.training.pretrain.mirror_pipeline import default_workers

    from .common import UsageError, require_fitted_flow, synthetic_set

    if args.videos:
        raise UsageError(f"--dataset generates a whole dataset: give no VIDEO files (got {args.videos[:2]})")
    if args.preserve is not None:
        _check_preserve_applies(args)
    if args.precision != "fp32":
        raise UsageError(f"--precision {args.precision} applies to VIDEO files; a --dataset mirror runs fp32")
    flow = require_fitted_flow("generate --dataset", dataset=args.dataset, mode=args.method, flow=args.flow,
                               root=args.root, fold=args.fold, frames=args.clip_len or DATASET_FRAMES,
                               stride=args.stride, decode_size=args.size)
    device = args.device
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"   # one GPU per torchrun process
    alpha = args.alpha
    if args.preserve is not None:
        alpha = _alpha_on_training_split(args, flow, device)
    cfg = MirrorConfig(dataset=args.dataset, root=args.root, out=args.out, fold=args.fold, split=args.split,
                       synthetic=synthetic_set(args), frames=args.clip_len or DATASET_FRAMES, stride=args.stride,
                       decode_size=args.size, method=args.method, flow=flow, alpha=alpha,
                       strategy=args.strategy, keep_fraction=args.keep_fraction, backend=args.backend,
                       model=args.model, seed=args.seed, device=device, batch=args.batch,
                       shard=_shard(args.shard), progress=not args.no_progress,
                       require_flow_fit=args.require_flow_fit, storage=args.storage,
                       workers=default_workers(device) if args.workers is None else args.workers)
    if cfg.workers < 0:
        raise UsageError(f"--workers must be >= 0 (0: one video after the other), got {cfg.workers}")
    report = generate_mirror(cfg)
    print(describe(report))
    return 0


def _check_preserve_applies(args: argparse.Namespace) -> None:
    """``--dataset ... --preserve``: UsageError where there is no alpha to choose (TFD; topk reads
    none) or where each process would choose its own (a sharded run)."""
    import os

    from .common import UsageError

    if args.method != "s2vc":
        raise UsageError(f"--preserve chooses the s2vc key's alpha; --mode {args.method} has none")
    if args.strategy == "topk":
        raise UsageError("--strategy topk keeps a fixed fraction of each clip and reads no alpha: give that "
                         "fraction as --keep-fraction instead of --preserve")
    if args.shard is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--preserve would calibrate alpha in every process of a sharded run, and each shard "
                         "must use the same alpha: calibrate once first (s2vc calibrate --dataset ... --frames F "
                         "--stride S --preserve P --write, or a single-process generate --dataset ... --preserve "
                         "prints it) and give --alpha")


def _alpha_on_training_split(args: argparse.Namespace, flow: str | None, device: str) -> float:
    """``--dataset ... --preserve P``: the alpha at which the flow keeps P of the latents of the
    dataset's training-split windows at this mirror's clip (``--frames`` frames ``--stride``
    apart, decoded at ``--decode-size``), as ``train-flow`` calibrates; said in one line."""
    from s2vc.engine.checkpoint import load_flow
    from s2vc.engine.suppression import check_preserved_fraction
    from s2vc.training.flow.alpha_clip import alphas_on_training_split

    from .common import UsageError, synthetic_set

    try:
        check_preserved_fraction(args.preserve)
    except ValueError as e:
        raise UsageError(f"--preserve: {e}") from None
    frames = args.clip_len or DATASET_FRAMES
    alphas, windows = alphas_on_training_split(
        load_flow(flow, device=device), args.dataset, args.root, fractions=[args.preserve], frames=frames,
        stride=args.stride, size=args.size, fold=args.fold, synthetic=synthetic_set(args),
        progress=not args.no_progress)
    alpha = alphas[args.preserve]
    # in full: pretrain --keys checks that its alpha is the mirror's, so it must be given back exactly
    print(f"generate: alpha = {alpha!r} keeps {args.preserve:.1%} of the latents on {windows} windows of "
          f"{frames} frames {args.stride} apart of the {args.dataset} training split"
          + (f" (overrides --alpha {args.alpha})" if args.alpha is not None else "")
          + f"; pretrain on this mirror with --alpha {alpha!r}", file=sys.stderr)
    return alpha


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.samples import require_sample_videos

    if getattr(args, "dataset", None) is not None:
        return run_dataset(args)
    videos = [Path(v) for v in args.videos] or require_sample_videos()
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:   # before any work: nothing is half-done for a typo
        from .common import UsageError
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UsageError(f"no such video file: {missing[0]}{more}")
    gen = generator_from_args(args, videos)
    _, failures = generate_from_args(args, videos, gen)
    if failures:
        print(f"{len(failures)} of {len(videos)} files failed", file=sys.stderr)
        return 1
    return 0
