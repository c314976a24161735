"""``s2vc generate`` and ``s2vc demo``: motion-preserved versions of video files.

Each video is decoded with PyAV window by window (``--clip-len`` frames, the temporal extent
over which the STD of eq. (4) is taken), run through the generator and written as:

    <stem>_s2vc.mp4          the motion-preserved video
    <stem>_side_by_side.mp4  original | motion-preserved | how much each pixel changed
    <stem>_sheet.png         a contact sheet of the three rows
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import video_io
from .checkpoint import load_flow
from .generator import BACKENDS, MotionPreservingGenerator
from .samples import require_sample_videos
from .suppression import STRATEGIES

CHANGE_GAIN = 4.0   # the change map shows |out - in| x 4, so a change of 1/4 is white


def add_arguments(p: argparse.ArgumentParser, videos: bool = True) -> argparse.ArgumentParser:
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


@dataclass
class FileResult:
    path: Path
    frames: int
    seconds: float
    preserved: float
    outputs: list[Path]


def _windows(frames_iter, clip_len: int):
    """Group frames into windows of ``clip_len``; yields (window, keep_from): a window is a list of
    frames and ``keep_from`` the index of its first new frame. A last window of one frame is
    padded in front with frames of the previous window, which are not emitted twice."""
    buf, prev = [], []
    for f in frames_iter:
        buf.append(f)
        if len(buf) == clip_len:
            yield buf, 0
            prev, buf = buf, []
    if len(buf) == 1 and prev:
        yield prev[-(clip_len - 1):] + buf, clip_len - 1
    elif len(buf) >= 2:
        yield buf, 0
    elif buf:
        raise video_io.VideoDecodeError("a video of a single frame has no temporal STD (need >= 2 frames)")


def change_map(original: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """float (3, T, H, W) pair -> float (3, T, H, W) in [0, 1]: per-pixel |out - in| x gain, grey."""
    m = (generated - original).abs().mean(dim=0, keepdim=True).mul(CHANGE_GAIN).clamp(0, 1)
    return m.expand(3, -1, -1, -1)


SHEET_COLUMNS = 8


def generate_file(path: Path, gen: MotionPreservingGenerator, out_dir: Path, args, device) -> FileResult:
    """Run the generator over ``path`` window by window, streaming the two videos to disk, so
    memory stays bounded by one batch of windows however long the video is."""
    info = video_io.probe_video(path, exact=False)
    stem = path.stem
    total = min(args.max_frames or info.num_frames, info.num_frames) or None
    sheet_at = set(np.linspace(0, (total or 1) - 1, SHEET_COLUMNS).round().astype(int).tolist())
    sheet: list[tuple[torch.Tensor, torch.Tensor]] = []
    preserved: list[float] = []
    fps = info.fps or 25.0
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = [out_dir / f"{stem}_s2vc.mp4", out_dir / f"{stem}_side_by_side.mp4", out_dir / f"{stem}_sheet.png"]
    t0 = time.time()
    done = 0
    bar = tqdm(total=total, desc=stem, unit="frame", disable=args.no_progress, file=sys.stderr, leave=False)
    with video_io.VideoWriter(outputs[0], fps) as mp_out, video_io.VideoWriter(outputs[1], fps) as side_out:

        def run(batch):
            nonlocal done
            video = torch.stack([video_io.to_float_video(torch.as_tensor(w)) for w, _ in batch]).to(device)
            out, stats = gen(video)
            for (_, keep), o, v, p in zip(batch, out.cpu(), video.cpu(), stats.preserved.cpu()):
                v, o = v[:, keep:], o[:, keep:]
                mp_out.write(video_io.to_uint8_frames(o))
                side_out.write(video_io.to_uint8_frames(torch.cat([v, o, change_map(v, o)], dim=3)))
                for i in range(v.shape[1]):
                    if done + i in sheet_at:
                        sheet.append((v[:, i:i + 1], o[:, i:i + 1]))
                done += v.shape[1]
                preserved.append(float(p))
                bar.update(v.shape[1])

        pending: list = []
        for window, keep in _windows(video_io.iter_video_frames(path, size=args.size, max_frames=args.max_frames),
                                     args.clip_len):
            window = np.stack(window)
            if pending and window.shape[0] != pending[0][0].shape[0]:
                run(pending)
                pending = []
            pending.append((window, keep))
            if len(pending) == args.batch:
                run(pending)
                pending = []
        if pending:
            run(pending)
    bar.close()
    seconds = time.time() - t0
    orig = torch.cat([v for v, _ in sheet], dim=1)
    gen_v = torch.cat([o for _, o in sheet], dim=1)
    video_io.write_contact_sheet(
        outputs[2],
        [video_io.to_uint8_frames(orig), video_io.to_uint8_frames(gen_v), video_io.to_uint8_frames(change_map(orig, gen_v))],
        labels=["original", f"motion-preserved ({gen.strategy}, alpha={gen.alpha:.3g})",
                f"change |out - in| x {CHANGE_GAIN:g}"], max_cols=SHEET_COLUMNS)
    return FileResult(path, done, seconds, float(np.mean(preserved)), outputs)


def build_generator(args, device, videos=()) -> MotionPreservingGenerator:
    flow = load_flow(args.flow, device=device)
    from s2vc.engine.suppression import resolve_alpha
    alpha = resolve_alpha(flow, args.alpha)
    if getattr(args, "preserve", None) is not None:
        from .calibrate import latent_stds
        from .suppression import alpha_for_preserved_fraction
        alpha = alpha_for_preserved_fraction(latent_stds(flow.cpu(), videos, clip_len=args.clip_len, size=args.size),
                                             args.preserve)
        flow.to(device)
        print(f"alpha = {alpha:.4f} keeps {100 * args.preserve:.1f}% of latents on these videos")
    args.alpha = alpha
    return MotionPreservingGenerator(flow, alpha=alpha, strategy=args.strategy, backend=args.backend,
                                     keep_fraction=args.keep_fraction, upsample=args.upsample,
                                     clamp=args.clamp, seed=args.seed)


def run_files(paths: list[Path], args, log=print, gen: MotionPreservingGenerator | None = None
              ) -> tuple[list[FileResult], list[str]]:
    """Generate for every file; a file that fails is reported and the others still run.
    ``gen``: a generator already built with ``build_generator`` (else one is built here)."""
    device = torch.device(args.device)
    gen = gen or build_generator(args, device, paths)
    out_dir = Path(args.out)
    results, failures = [], []
    for path in paths:
        try:
            r = generate_file(Path(path), gen, out_dir, args, device)
        except (video_io.VideoDecodeError, FileNotFoundError) as e:
            failures.append(f"{path}: {e}")
            log(f"error: {path}: {e}", file=sys.stderr)
            continue
        results.append(r)
        log(f"{r.path.name}: {r.frames} frames, preserved {100 * r.preserved:.1f}% of latents, "
            f"{r.frames / r.seconds:.1f} frames/s -> {', '.join(str(o) for o in r.outputs)}")
    return results, failures


def main(args: argparse.Namespace) -> int:
    paths = [Path(v) for v in args.videos] or require_sample_videos()
    results, failures = run_files(paths, args)
    if failures:
        print(f"{len(failures)} of {len(paths)} files failed", file=sys.stderr)
        return 1
    return 0
