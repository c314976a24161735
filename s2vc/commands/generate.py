"""``s2vc generate``: write motion-preserved versions of video files (``s2vc.engine.generate``).

Its flags (all but the VIDEO list) are also ``s2vc demo``'s: ``add_arguments(p, videos=False)``,
``generator_from_args`` and ``generate_from_args`` are what the demo builds on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write motion-preserved versions of video files"


def add_arguments(p: argparse.ArgumentParser, videos: bool = True) -> argparse.ArgumentParser:
    from s2vc.engine.generator import BACKENDS
    from s2vc.engine.suppression import STRATEGIES

    if videos:
        p.add_argument("videos", nargs="*", metavar="VIDEO",
                       help="video files (default: the sample videos installed packages ship)")
    p.add_argument("--out", default="s2vc_out", help="output folder")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--alpha", type=float, default=None,
                   help="STD threshold of eq. (4) (default: the flow checkpoint's recommended value, else 0.5)")
    p.add_argument("--preserve", type=float, default=None,
                   help="choose alpha so that this fraction of latents is kept on the given videos (overrides --alpha)")
    p.add_argument("--strategy", choices=STRATEGIES, default="zero")
    p.add_argument("--keep-fraction", type=float, default=None, help="for --strategy topk")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--size", type=int, default=128, help="shorter side frames are decoded at")
    p.add_argument("--clip-len", type=int, default=16, help="frames per window (T of the temporal STD)")
    p.add_argument("--max-frames", type=int, default=None, help="frames per video at most")
    p.add_argument("--batch", type=int, default=4, help="windows per generator call")
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest")
    p.add_argument("--clamp", action="store_true", help="clip the output to [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random strategies")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def generator_from_args(args: argparse.Namespace, videos: list[Path]):
    """The ``MotionPreservingGenerator`` the flags name; with ``--preserve``, alpha is chosen on
    ``videos`` (and printed). Its ``.alpha`` is the alpha used."""
    from s2vc.engine.checkpoint import load_flow
    from s2vc.engine.generate import build_generator, preserving_alpha

    flow = load_flow(args.flow)
    alpha = args.alpha
    if args.preserve is not None:
        alpha = preserving_alpha(flow, videos, args.preserve, clip_len=args.clip_len, size=args.size)
        print(f"alpha = {alpha:.4f} keeps {100 * args.preserve:.1f}% of latents on these videos")
    return build_generator(flow, alpha=alpha, strategy=args.strategy, backend=args.backend,
                           keep_fraction=args.keep_fraction, upsample=args.upsample, clamp=args.clamp,
                           seed=args.seed, device=args.device)


def generate_from_args(args: argparse.Namespace, videos: list[Path], gen) -> tuple[list, list[str]]:
    """Run ``gen`` over ``videos`` with the flags' settings, printing a line per file (errors on
    stderr); returns (the ``FileResult``s, one "path: error" per file that failed)."""
    from s2vc.engine.generate import describe_result, generate_files

    failures: list[str] = []

    def on_error(path: Path, exc: Exception) -> None:
        # video_io's messages already start with the path; others get it in front
        line = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        failures.append(line)
        print(f"error: {line}", file=sys.stderr)

    results = generate_files(videos, args.out, gen, clip_len=args.clip_len, size=args.size,
                             max_frames=args.max_frames, batch=args.batch, device=args.device,
                             progress=not args.no_progress, on_error=on_error,
                             on_done=lambda r: print(describe_result(r)))
    return results, failures


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.samples import require_sample_videos

    videos = [Path(v) for v in args.videos] or require_sample_videos()
    gen = generator_from_args(args, videos)
    _, failures = generate_from_args(args, videos, gen)
    if failures:
        print(f"{len(failures)} of {len(videos)} files failed", file=sys.stderr)
        return 1
    return 0
