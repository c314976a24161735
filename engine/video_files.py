"""Motion-preserved versions of video files (the library behind ``s2vc generate`` and ``s2vc demo``).

Each video is decoded with PyAV window by window (``clip_len`` frames, the temporal extent over
which the STD of eq. (4) is taken), run through a ``MotionPreservingGenerator`` and written as:

    <stem>_s2vc.mp4          the motion-preserved video
    <stem>_side_by_side.mp4  original | motion-preserved | how much each pixel changed
    <stem>_sheet.png         a contact sheet of the three rows

    flow = load_flow(path)
    gen = build_generator(flow, alpha=None)                  # or alpha=preserving_alpha(flow, videos, 0.227)
    results = generate_files(videos, "out/", gen, clip_len=16, size=128)
    gen.alpha                                                # the alpha the files were made with
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from . import video_io
from .generator import MotionPreservingGenerator
from .defaults import check_preserved_fraction
from .suppression import alpha_for_preserved_fraction

CHANGE_GAIN = 4.0   # the change map shows |out - in| x 4, so a change of 1/4 is white
SHEET_COLUMNS = 8

# What a video file that cannot be read raises: a missing path, a folder, a broken container.
# (Not every OSError: an unwritable --out or a full disk must stop the run, not skip each video.)
UNREADABLE_VIDEO_ERRORS = (video_io.VideoDecodeError, FileNotFoundError, IsADirectoryError)


@dataclass
class FileResult:
    """One written video: ``frames`` generated in ``seconds``; ``preserved`` the mean fraction of
    latents kept over its windows (in [0, 1]); ``outputs`` the three files written."""

    path: Path
    frames: int
    seconds: float
    preserved: float
    outputs: list[Path] = field(default_factory=list)


def describe_result(r: FileResult) -> str:
    """The one line ``s2vc generate`` prints for a written file."""
    rate = r.frames / r.seconds if r.seconds > 0 else float("inf")
    return (f"{r.path.name}: {r.frames} frames, preserved {100 * r.preserved:.1f}% of latents, "
            f"{rate:.1f} frames/s -> {', '.join(str(o) for o in r.outputs)}")


# ---------------------------------------------------------------------------------------------
# Building the generator
# ---------------------------------------------------------------------------------------------
def preserving_alpha(flow, videos: Sequence[str | os.PathLike], fraction: float, *, clip_len: int = 16,
                     size: int = 128) -> float:
    """The alpha at which ``fraction`` (in (0, 1)) of ``flow``'s latents is kept on windows of
    ``clip_len`` frames of ``videos`` decoded at ``size`` (``s2vc generate --preserve``). The flow
    is measured on the CPU and left on the device it was on."""
    from .calibrate import latent_stds

    check_preserved_fraction(fraction)
    device = next(iter(flow.parameters()), torch.empty(0)).device
    try:
        stds = latent_stds(flow.cpu(), [Path(v) for v in videos], clip_len=clip_len, size=size)
    finally:
        flow.to(device)
    return alpha_for_preserved_fraction(stds, fraction)


def build_generator(flow, *, alpha: float | None = None, strategy: str = "zero", backend: str = "auto",
                    keep_fraction: float | None = None, upsample: str = "nearest", clamp: bool = False,
                    seed: int | None = 0, device: str | torch.device = "cpu",
                    model: str | None = None, precision: str = "fp32") -> MotionPreservingGenerator:
    """A generator for ``flow`` on ``device``; ``alpha=None`` is the flow's calibrated alpha
    (``resolve_alpha``); ``model``: the exported file backends onnxruntime / tensorrt run. A bad
    alpha, strategy or backend raises ``ValueError`` naming it (the generator checks them).
    ``precision``: the decode's autocast dtype (``MotionPreservingGenerator``'s precision)."""
    device = torch.device(device)
    gen = MotionPreservingGenerator(flow.to(device), alpha=alpha, strategy=strategy, backend=backend,
                                    keep_fraction=keep_fraction, upsample=upsample, clamp=clamp, seed=seed,
                                    model=model, precision=precision)
    return gen.to(device)


# ---------------------------------------------------------------------------------------------
# Running it over files
# ---------------------------------------------------------------------------------------------
def _windows(frames_iter: Iterable, clip_len: int) -> Iterator[tuple[list, int]]:
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


def _batches(windows: Iterable[tuple[np.ndarray, int]], batch: int) -> Iterator[list[tuple[np.ndarray, int]]]:
    """Windows grouped ``batch`` at a time; a window of another length (the last) starts a new
    group, since a batch is one tensor."""
    pending: list = []
    for window, keep in windows:
        if pending and window.shape[0] != pending[0][0].shape[0]:
            yield pending
            pending = []
        pending.append((window, keep))
        if len(pending) == batch:
            yield pending
            pending = []
    if pending:
        yield pending


def change_map(original: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """float (3, T, H, W) pair -> float (3, T, H, W) in [0, 1]: per-pixel |out - in| x gain, grey."""
    m = (generated - original).abs().mean(dim=0, keepdim=True).mul(CHANGE_GAIN).clamp(0, 1)
    return m.expand(3, -1, -1, -1)


def output_paths(path: Path, out_dir: Path) -> list[Path]:
    """The motion-preserved video, the side-by-side video and the contact sheet for ``path``."""
    stem = path.stem
    return [out_dir / f"{stem}_s2vc.mp4", out_dir / f"{stem}_side_by_side.mp4", out_dir / f"{stem}_sheet.png"]


def _write_sheet(path: Path, sheet: list[tuple[torch.Tensor, torch.Tensor]], gen: MotionPreservingGenerator):
    """The contact sheet of the sampled (original, generated) frames, each float (3, 1, H, W)."""
    orig = torch.cat([v for v, _ in sheet], dim=1)
    gen_v = torch.cat([o for _, o in sheet], dim=1)
    rows = [video_io.to_uint8_frames(orig), video_io.to_uint8_frames(gen_v),
            video_io.to_uint8_frames(change_map(orig, gen_v))]
    labels = ["original", f"motion-preserved ({gen.strategy}, alpha={gen.alpha:.3g})",
              f"change |out - in| x {CHANGE_GAIN:g}"]
    video_io.write_contact_sheet(path, rows, labels=labels, max_cols=SHEET_COLUMNS)


def generate_file(path: Path, gen: MotionPreservingGenerator, out_dir: Path, *, clip_len: int = 16,
                  size: int = 128, max_frames: int | None = None, batch: int = 4,
                  device: str | torch.device = "cpu", progress: bool = True) -> FileResult:
    """Run the generator over ``path`` window by window, streaming the two videos to disk, so
    memory stays bounded by one batch of windows however long the video is. A video that cannot
    be read raises one of ``UNREADABLE_VIDEO_ERRORS`` naming the file."""
    path = Path(path)
    info = video_io.probe_video(path, exact=False)
    total = min(max_frames or info.num_frames, info.num_frames) or None
    sheet_at = set(np.linspace(0, (total or 1) - 1, SHEET_COLUMNS).round().astype(int).tolist())
    sheet: list[tuple[torch.Tensor, torch.Tensor]] = []
    preserved: list[float] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = output_paths(path, out_dir)
    t0 = time.time()
    done = 0
    bar = tqdm(total=total, desc=path.stem, unit="frame", disable=not progress, file=sys.stderr, leave=False)
    frames = video_io.iter_video_frames(path, size=size, max_frames=max_frames)
    windows = ((np.stack(w), keep) for w, keep in _windows(frames, clip_len))
    fps = info.fps or 25.0
    with video_io.VideoWriter(outputs[0], fps) as mp_out, video_io.VideoWriter(outputs[1], fps) as side_out:
        for group in _batches(windows, batch):
            video = torch.stack([video_io.to_float_video(torch.as_tensor(w)) for w, _ in group]).to(device)
            out, stats = gen(video)
            for (_, keep), o, v, p in zip(group, out.cpu(), video.cpu(), stats.preserved.cpu()):
                v, o = v[:, keep:], o[:, keep:]            # float (3, T', H, W): the window's new frames
                mp_out.write(video_io.to_uint8_frames(o))
                side_out.write(video_io.to_uint8_frames(torch.cat([v, o, change_map(v, o)], dim=3)))
                sheet += [(v[:, i:i + 1], o[:, i:i + 1]) for i in range(v.shape[1]) if done + i in sheet_at]
                done += v.shape[1]
                preserved.append(float(p))
                bar.update(v.shape[1])
    bar.close()
    seconds = time.time() - t0
    _write_sheet(outputs[2], sheet, gen)
    return FileResult(path, done, seconds, float(np.mean(preserved)), outputs)


def generate_files(videos: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   generator: MotionPreservingGenerator, *, clip_len: int = 16, size: int = 128,
                   max_frames: int | None = None, batch: int = 4, device: str | torch.device | None = None,
                   progress: bool = True, on_error: Callable[[Path, Exception], None] | None = None,
                   on_done: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    """Write the motion-preserved outputs of every video to ``out_dir``; returns one
    ``FileResult`` per written file, in order. The alpha used is ``generator.alpha``.

    clip_len: frames per window (>= 2); size: the shorter side frames are decoded at;
    max_frames: frames per video at most (None: all); batch: windows per generator call;
    device: where the windows go (None: the generator's). A file that cannot be read is passed to
    ``on_error(path, exc)`` and skipped, the others still run; without ``on_error`` its error is
    raised. ``on_done(result)`` is called as each file is finished.
    """
    if clip_len < 2:
        raise ValueError(f"clip_len must be >= 2 frames (the temporal STD needs two), got {clip_len}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1 window, got {batch}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if device is None:
        device = next(iter(generator.parameters()), torch.empty(0)).device
    results = []
    for video in videos:
        path = Path(video)
        try:
            r = generate_file(path, generator, Path(out_dir), clip_len=clip_len, size=size,
                              max_frames=max_frames, batch=batch, device=device, progress=progress)
        except UNREADABLE_VIDEO_ERRORS as e:
            if on_error is None:
                raise
            on_error(path, e)
            continue
        results.append(r)
        if on_done is not None:
            on_done(r)
    return results
