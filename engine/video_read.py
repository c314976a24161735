"""Reading media: videos through PyAV (FFmpeg), images through Pillow.

Everything comes out channel-last uint8 RGB: a frame ``(H, W, 3)``, a clip ``(T, H, W, 3)``.
Decoding runs FFmpeg's threaded decoder and resizes inside swscale while converting to RGB (see
``engine/video_io.py`` for why). A file that exists but cannot give the frames asked for raises
``VideoDecodeError`` / ``ImageDecodeError`` naming the file; a missing path raises
``FileNotFoundError`` (a configuration mistake, not a bad video).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "Size",
    "VideoDecodeError",
    "ImageDecodeError",
    "VideoInfo",
    "output_size",
    "probe_video",
    "iter_video_frames",
    "read_video",
    "read_image",
]

# file suffixes (lower case) taken for videos / images when a folder is searched for media
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

Size = int | tuple[int, int] | None


class VideoDecodeError(RuntimeError):
    """A video file exists but cannot give the frames asked for; the message names the file."""


class ImageDecodeError(RuntimeError):
    """An image file exists but Pillow cannot read it; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` found.

    ``num_frames_source`` says where ``num_frames`` came from: ``"container"`` (the header's
    frame count), ``"decoded"`` (every frame decoded and counted; exact) or ``"estimated"``
    (``round(duration_s * fps)``, only with ``probe_video(..., exact=False)``).
    """

    path: Path
    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float
    num_frames_source: str


def output_size(size: Size, height: int, width: int) -> tuple[int, int]:
    """(H, W) to resize a ``height`` x ``width`` picture to: None = as it is, int = shorter
    side (aspect kept, rounded), ``(H, W)`` = exact. Raises ValueError for sizes < 1."""
    if size is None:
        return height, width
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if height <= width:
            return size, max(1, round(width * size / height))
        return max(1, round(height * size / width)), size
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be an int or a (H, W) pair of ints >= 1, got {size!r}")
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------------------------
# videos


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


@contextlib.contextmanager
def _open_video(path: Path, threads: int | None = None
                ) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """Open ``path`` and its first video stream with threaded decoding (``threads``: None =
    FFmpeg's choice, frame + slice threads; 1 = one thread); errors name the file."""
    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: not a readable video container ({e})") from e
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(
                f"{path}: no video stream (streams found: {', '.join(kinds)})"
            )
        stream = container.streams.video[0]
        if threads is None:
            stream.thread_type = "AUTO"  # frame + slice threads; the default is slice only
        else:
            stream.codec_context.thread_count = threads
        yield container, stream
    finally:
        container.close()


def iter_video_frames(
    path: str | os.PathLike,
    *,
    size: Size = None,
    max_frames: int | None = None,
    start_frame: int = 0,
    step: int = 1,
    interpolation: str = "AREA",
    threads: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames ``start_frame, start_frame + step, ...`` as uint8 ``(H, W, 3)`` RGB arrays.

    Frame indices count decoded frames from the start of the first video stream (no seeking:
    decoding always starts at frame 0, but skipped frames are not converted to RGB).
    ``size``: None keeps the first frame's size (later frames of another size are resized to
    it); an int is the shorter side, aspect kept; ``(H, W)`` is exact. ``interpolation`` is a
    swscale algorithm name (``"AREA"``, ``"BILINEAR"``, ``"BICUBIC"``, ...). Stops after
    ``max_frames`` frames and closes the file when the generator is closed or exhausted.
    ``threads``: decoder threads, None = FFmpeg's threaded decoding (frame + slice threads, as
    many as cores); 1 where one process per core decodes already (the mirror's decode workers).

    Raises ``VideoDecodeError`` if the file is not a video, has no video stream, decodes no
    frame at all, fails while decoding, or ends before ``start_frame``.
    """
    path = Path(path)
    if start_frame < 0 or step < 1:
        raise ValueError(f"need start_frame >= 0 and step >= 1, got {start_frame}, {step}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    with _open_video(path, threads) as (container, stream):
        out_hw: tuple[int, int] | None = None
        index = yielded = 0
        try:
            for frame in container.decode(stream):
                if out_hw is None:
                    out_hw = output_size(size, frame.height, frame.width)
                if index >= start_frame and (index - start_frame) % step == 0:
                    yield frame.to_ndarray(
                        format="rgb24",
                        height=out_hw[0],
                        width=out_hw[1],
                        interpolation=interpolation,
                    )
                    yielded += 1
                    if max_frames is not None and yielded >= max_frames:
                        return
                index += 1
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{path}: decoding failed after {index} frames ({e})") from e
        if index == 0:
            raise VideoDecodeError(f"{path}: zero decodable frames (corrupt or truncated?)")
        if yielded == 0:
            raise VideoDecodeError(
                f"{path}: shorter than asked: {index} frames, start_frame={start_frame}"
            )


def read_video(
    path: str | os.PathLike,
    *,
    size: Size = None,
    max_frames: int | None = None,
    start_frame: int = 0,
    step: int = 1,
    min_frames: int = 1,
    interpolation: str = "AREA",
    threads: int | None = None,
) -> torch.Tensor:
    """Decode a video to uint8 ``(T, H, W, 3)`` RGB; ``T <= max_frames``.

    Selection and resizing as in ``iter_video_frames``. Raises ``VideoDecodeError`` when fewer
    than ``min_frames`` frames are selected (a clip loader asks ``min_frames=max_frames`` to
    reject short videos instead of padding them).
    """
    frames = list(
        iter_video_frames(
            path,
            size=size,
            max_frames=max_frames,
            start_frame=start_frame,
            step=step,
            interpolation=interpolation,
            threads=threads,
        )
    )
    if len(frames) < min_frames:
        raise VideoDecodeError(
            f"{path}: shorter than asked: {len(frames)} frames from start_frame={start_frame} "
            f"with step={step}, need at least {min_frames}"
        )
    return torch.from_numpy(np.stack(frames))


def probe_video(path: str | os.PathLike, *, exact: bool = True) -> VideoInfo:
    """Size, frame rate, frame count and duration of the first video stream.

    Decodes the first frame to make sure the file is usable (a truncated or corrupt file
    raises ``VideoDecodeError`` here, not later). When the container does not store a frame
    count (e.g. Matroska/WebM), ``exact=True`` decodes the whole stream to count frames;
    ``exact=False`` estimates ``round(duration_s * fps)``. ``fps`` is the stream's average
    rate (NaN if the file gives none).
    """
    path = Path(path)
    with _open_video(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else float("nan")
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = float("nan")
        try:
            frames = container.decode(stream)
            first = next(frames, None)
            if first is None:
                raise VideoDecodeError(f"{path}: zero decodable frames (corrupt or truncated?)")
            width, height = first.width, first.height
            if stream.frames > 0:
                num_frames, source = stream.frames, "container"
            elif exact or not np.isfinite(duration_s * fps):
                num_frames, source = 1 + sum(1 for _ in frames), "decoded"
            else:
                num_frames, source = max(1, round(duration_s * fps)), "estimated"
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{path}: decoding failed ({e})") from e
    if not np.isfinite(duration_s) and np.isfinite(fps) and fps > 0:
        duration_s = num_frames / fps
    return VideoInfo(path, width, height, fps, num_frames, duration_s, source)


# --------------------------------------------------------------------------------------------
# images


def read_image(path: str | os.PathLike, size: Size = None) -> torch.Tensor:
    """Read an image as uint8 ``(H, W, 3)`` RGB (EXIF orientation applied, alpha dropped).

    ``size`` as in ``read_video`` (int = shorter side, ``(H, W)`` = exact), resized with
    Pillow's antialiased bilinear filter. Raises ``FileNotFoundError`` for a missing path and
    ``ImageDecodeError`` for a file Pillow cannot read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")  # convert() forces the full decode
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{path}: not an image Pillow can identify") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"{path}: cannot decode image ({e})") from e
    h, w = output_size(size, img.height, img.width)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy())
