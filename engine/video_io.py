"""Video and image input/output: PyAV for video, Pillow for images.

Layouts. The decoder side is channel-last uint8: a frame is ``(H, W, 3)`` RGB, a clip is
``(T, H, W, 3)``. The model side is channel-first float: ``(3, T, H, W)`` or
``(B, 3, T, H, W)`` in [0, 1]. ``to_float_video`` / ``to_uint8_frames`` move between the two.

Decoding runs FFmpeg's threaded decoder (``thread_type = "AUTO"``) and, when a size is asked,
resizes inside swscale while converting to RGB (``frame.to_ndarray(width=..., height=...)``), so
a full-size RGB frame is never materialised. What that saves is mostly memory: a 132-frame
1280x720 clip is 365 MB as uint8 RGB and ~1 MB at 32 px, while the decode itself costs about the
same (on a shared 2-core CPU, 0.3-0.6 s at 32 px against 0.5-1.8 s at full size for that clip).
The default scaler is swscale's ``AREA``: closest to the ``avg_pool`` / ``F.interpolate(mode=
"area")`` that the rest of the pipeline uses (``BILINEAR`` is also antialiased but ~3x further
off on fine detail; ``FAST_BILINEAR`` and ``POINT`` alias).

What is ignored: rotation metadata (phone videos come out as stored, not as displayed), a
non-square sample aspect ratio (frames keep their coded pixel grid) and audio.

Errors. A file that exists but cannot give the frames asked for raises ``VideoDecodeError`` (or
``ImageDecodeError``) naming the file and what went wrong; dataset code catches these to skip,
count and report a bad video. A missing path raises ``FileNotFoundError`` instead: a wrong root
or split file is a configuration mistake, not a bad video, and should not be skipped quietly.

Writers are atomic: they write ``.<name>.<pid>.<random>.part`` in the target folder and
``os.replace`` it onto the target only once it is complete, so an interrupted run leaves either
the old file or the new one (a SIGKILL may leave the hidden ``.part`` file behind, never a
half-written target).
"""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

__all__ = [
    "VideoDecodeError",
    "ImageDecodeError",
    "VideoInfo",
    "probe_video",
    "iter_video_frames",
    "read_video",
    "write_video",
    "write_contact_sheet",
    "to_float_video",
    "to_uint8_frames",
    "read_image",
]

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


# --------------------------------------------------------------------------------------------
# decoding


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


@contextlib.contextmanager
def _open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """Open ``path`` and its first video stream with threaded decoding; errors name the file."""
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
        stream.thread_type = "AUTO"  # frame + slice threads; the default is slice only
        yield container, stream
    finally:
        container.close()


def _output_size(size: Size, height: int, width: int) -> tuple[int, int]:
    """(H, W) to decode to: int = shorter side (aspect kept, rounded), tuple = exact (H, W)."""
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


def iter_video_frames(
    path: str | os.PathLike,
    *,
    size: Size = None,
    max_frames: int | None = None,
    start_frame: int = 0,
    step: int = 1,
    interpolation: str = "AREA",
) -> Iterator[np.ndarray]:
    """Yield frames ``start_frame, start_frame + step, ...`` as uint8 ``(H, W, 3)`` RGB arrays.

    Frame indices count decoded frames from the start of the first video stream (no seeking:
    decoding always starts at frame 0, but skipped frames are not converted to RGB).
    ``size``: None keeps the first frame's size (later frames of another size are resized to
    it); an int is the shorter side, aspect kept; ``(H, W)`` is exact. ``interpolation`` is a
    swscale algorithm name (``"AREA"``, ``"BILINEAR"``, ``"BICUBIC"``, ...). Stops after
    ``max_frames`` frames and closes the file when the generator is closed or exhausted.

    Raises ``VideoDecodeError`` if the file is not a video, has no video stream, decodes no
    frame at all, fails while decoding, or ends before ``start_frame``.
    """
    path = Path(path)
    if start_frame < 0 or step < 1:
        raise ValueError(f"need start_frame >= 0 and step >= 1, got {start_frame}, {step}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    with _open_video(path) as (container, stream):
        out_hw: tuple[int, int] | None = None
        index = yielded = 0
        try:
            for frame in container.decode(stream):
                if out_hw is None:
                    out_hw = _output_size(size, frame.height, frame.width)
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
# writing


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temp path beside ``path``; on success fsync it and rename it onto ``path``.

    Creates missing parent folders. On any exception (KeyboardInterrupt included) the temp
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _as_uint8_frames(frames: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"{what}: expected frames (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(
            f"{what}: expected uint8 frames, got {frames.dtype} (use to_uint8_frames for float video)"
        )
    return frames


def _pick_encoder() -> str:
    """libx264 where this FFmpeg build has it, else FFmpeg's built-in MPEG-4 Part 2 encoder."""
    try:
        av.Codec("libx264", "w")
        return "libx264"
    except (av.codec.codec.UnknownCodecError, ValueError):
        return "mpeg4"


_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class VideoWriter:
    """Streaming MP4 writer: ``with VideoWriter(path, fps) as w: w.write(frames) ...``.

    Frames are uint8 ``(T, H, W, 3)`` RGB, any number of ``write`` calls, all of one size (set by
    the first call); memory stays bounded by one call's frames. Encoding as in ``write_video``.
    The file appears at ``path`` only when the block ends without an exception (temp file +
    rename); otherwise ``path`` is left as it was.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = 18):
        self.path = Path(path)
        self.format = _CONTAINER_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"{self.path}: unsupported suffix; use one of {sorted(_CONTAINER_FORMATS)}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps, self.crf = fps, crf
        self.frames_written = 0
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> "VideoWriter":
        self._atomic = _atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = None
        return self

    def _open(self, h: int, w: int) -> None:
        self._codec = _pick_encoder()
        self._container = av.open(str(self._tmp), mode="w", format=self.format)
        rate = Fraction(self.fps).limit_denominator(100_000)
        options = {"crf": str(self.crf)} if self._codec == "libx264" else {}
        self._stream = self._container.add_stream(self._codec, rate=rate, options=options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        if self._codec == "mpeg4":  # its default (200 kb/s) smears small clips
            self._stream.codec_context.bit_rate = max(200_000, int(0.4 * w * h * self.fps))

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        frames = _as_uint8_frames(frames, str(self.path))
        _, h, w, _ = frames.shape
        if self._size is None:
            self._size = (h, w)
            self._open(h, w)
        elif self._size != (h, w):
            raise ValueError(f"{self.path}: frames of {h}x{w} after frames of {self._size[0]}x{self._size[1]}")
        if h % 2 or w % 2:  # yuv420p needs even sizes: repeat the last row/column
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            self._container.mux(self._stream.encode(video_frame))
        self.frames_written += len(frames)

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self._container is None:
                raise ValueError(f"{self.path}: no frames were written")
            if self._container is not None:
                if exc_type is None:
                    self._container.mux(self._stream.encode(None))  # flush delayed (B-)frames
                self._container.close()
        except BaseException as e:
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise
        return self._atomic.__exit__(exc_type, exc, tb)


def write_video(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    crf: int = 18,
) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames to H.264 (yuv420p) in an MP4, atomically.

    yuv420p needs even dimensions: an odd height or width is PADDED by one row/column that
    repeats the last one (no pixel is dropped; reading back gives the even size). ``crf`` is
    libx264's constant rate factor (18: visually near-lossless). Without libx264 the ``mpeg4``
    encoder is used at about 0.4 bits per pixel. ``.mov`` and ``.mkv`` suffixes select those
    containers; anything else but ``.mp4`` / ``.m4v`` is refused. Returns ``Path(path)``.
    For long videos written piece by piece, use ``VideoWriter``.
    """
    with VideoWriter(path, fps, crf=crf) as writer:
        writer.write(frames)
    return Path(path)


LABEL_HEIGHT = 16  # pixels of the label strip above each contact-sheet row, when labels are given


def write_contact_sheet(
    path: str | os.PathLike,
    rows: Sequence[torch.Tensor | np.ndarray],
    labels: Sequence[str] | None = None,
    max_cols: int = 8,
) -> Path:
    """Write a PNG with one row per clip: ``min(T, max_cols)`` frames sampled evenly over T.

    ``rows[i]``: uint8 ``(T_i, H_i, W_i, 3)``. Frames keep their size and touch each other.
    With ``labels``, a white ``LABEL_HEIGHT``-pixel strip with the label in black sits above
    each row. The sheet is ``max_i(cols_i * W_i)`` wide and ``sum_i(H_i [+ LABEL_HEIGHT])``
    tall, black where a row is narrower. Written atomically; returns ``Path(path)``.
    """
    if not rows:
        raise ValueError("write_contact_sheet: no rows")
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"write_contact_sheet: {len(rows)} rows but {len(labels)} labels")
    if max_cols < 1:
        raise ValueError(f"max_cols must be >= 1, got {max_cols}")
    strips = []
    for i, row in enumerate(rows):
        row = _as_uint8_frames(row, f"contact sheet row {i}")
        cols = min(len(row), max_cols)
        picks = np.linspace(0, len(row) - 1, cols).round().astype(int)
        strips.append(np.concatenate(list(row[picks]), axis=1))  # (H, cols * W, 3)

    label_h = LABEL_HEIGHT if labels is not None else 0
    width = max(s.shape[1] for s in strips)
    height = sum(s.shape[0] + label_h for s in strips)
    sheet = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    y = 0
    for i, strip in enumerate(strips):
        if labels is not None:
            draw.rectangle((0, y, width - 1, y + label_h - 1), fill=(255, 255, 255))
            draw.text((2, y + 1), str(labels[i]), fill=(0, 0, 0), font=font)
            y += label_h
        sheet.paste(Image.fromarray(strip), (0, y))
        y += strip.shape[0]
    with _atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)


# --------------------------------------------------------------------------------------------
# layouts and images


def to_float_video(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(3, T, H, W)`` in [0, 1]; ``(B, T, H, W, 3)`` ->
    ``(B, 3, T, H, W)``."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 (T, H, W, 3) or (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames.movedim(-1, -4).float().div_(255.0)


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """float ``(3, T, H, W)`` -> uint8 ``(T, H, W, 3)``; ``(B, 3, T, H, W)`` -> ``(B, T, H, W, 3)``.

    Values are clamped to [0, 1] (the generator does not clamp its output) and rounded to the
    nearest of 256 levels; NaN becomes 0.
    """
    if not video.is_floating_point() or video.ndim not in (4, 5) or video.shape[-4] != 3:
        raise ValueError(
            f"expected float (3, T, H, W) or (B, 3, T, H, W), got {video.dtype} {tuple(video.shape)}"
        )
    scaled = video.detach().nan_to_num(0.0).clamp(0.0, 1.0).mul(255.0).round()
    return scaled.to(torch.uint8).movedim(-4, -1).contiguous()


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
    h, w = _output_size(size, img.height, img.width)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy())
