"""Writing media: videos through PyAV (libx264, or FFmpeg's mpeg4 where it is missing) and
PNG contact sheets through Pillow. Frames come in channel-last uint8 RGB ``(T, H, W, 3)``.

Writers are atomic: they write ``.<name>.<pid>.<random>.part`` in the target folder and
``os.replace`` it onto the target only once it is complete, so an interrupted run leaves either
the old file or the new one (a SIGKILL may leave the hidden ``.part`` file behind, never a
half-written target).
"""
from __future__ import annotations

import contextlib
import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "CONTAINER_FORMATS",
    "FRAME_STORAGES",
    "LABEL_HEIGHT",
    "STORAGES",
    "VideoWriter",
    "atomic_path",
    "pick_encoder",
    "write_video",
    "write_contact_sheet",
]

# file suffix -> FFmpeg container format of the video writer
CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
                     ".webm": "webm"}
# lossless encoder per container, RGB in and RGB out (no chroma subsampling, no colour matrix):
# every one reads back bit-exact (tests/test_video_io.py)
LOSSLESS = {"mp4": ("libx264rgb", "rgb24", {"qp": "0"}), "mov": ("libx264rgb", "rgb24", {"qp": "0"}),
            "matroska": ("ffv1", "bgr0", {}), "avi": ("ffv1", "bgr0", {}),
            "webm": ("libvpx-vp9", "gbrp", {"lossless": "1"})}
# near-lossless encoder per container: H.264 in 4:4:4 (no chroma subsampling) at 10 bits, rate
# control tuned for PSNR at CRF 9. On 128-px frames of a generated real video (bikes.mp4) it
# measured 45.8 dB against the 8-bit frames at 0.82 GB per hour of video, against 5.2 GB/h for
# libx264rgb qp 0 and 3.2 GB/h for FFV1 (docs/MIRROR.md has the table: 8-bit 4:4:4 at CRF 4,
# libx264rgb at CRF 4-12 and x265 give less PSNR per byte; x265 encodes 3x slower)
NEAR_LOSSLESS = ("libx264", "yuv444p10le", {"crf": "9", "tune": "psnr"})
COMPACT = {fmt: NEAR_LOSSLESS for fmt in ("mp4", "mov", "matroska", "avi")}
# the residual storage of a mirror (training/data/mirror_residual.py) holds no frames: what the
# generator changed, at the flow's resolution, in FFV1 9-bit planar RGB inside Matroska, whatever the
# dataset's container (the smallest lossless coding of it measured: docs/MIRROR.md)
RESIDUAL = ("ffv1", "gbrp9le", {"level": "3", "slices": "1"})
FRAME_STORAGES = ("lossless", "compact")        # the storages VideoWriter writes frames in
# the storage choices of a mirror: container format -> (encoder, pixel format, options)
STORAGES = {"lossless": LOSSLESS, "compact": COMPACT,
            "residual": {fmt: RESIDUAL for fmt in dict.fromkeys(CONTAINER_FORMATS.values())}}

LABEL_HEIGHT = 16  # pixels of the label strip above each contact-sheet row, when labels are given


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
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
    """``frames`` as a uint8 (T, H, W, 3) array with T >= 1; ``what`` names them in errors."""
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


def pick_encoder() -> str:
    """libx264 where this FFmpeg build has it, else FFmpeg's built-in MPEG-4 Part 2 encoder."""
    try:
        av.Codec("libx264", "w")
        return "libx264"
    except (av.codec.codec.UnknownCodecError, ValueError):
        return "mpeg4"


class VideoWriter:
    """Streaming video writer: ``with VideoWriter(path, fps) as w: w.write(frames) ...``.

    ``lossless=True`` (``storage="lossless"``) keeps every pixel (RGB, any size): libx264rgb at qp 0
    in .mp4/.m4v/.mov, FFV1 in .avi/.mkv, lossless VP9 in .webm — for copies of a dataset that keep
    its file names. ``storage="compact"``: near-lossless H.264 4:4:4 10-bit (``NEAR_LOSSLESS``) in
    .mp4/.m4v/.mov/.mkv/.avi, any size, about a sixth of lossless's bytes at ~46 dB.

    Frames are uint8 ``(T, H, W, 3)`` RGB, any number of ``write`` calls, all of one size (set by
    the first call); memory stays bounded by one call's frames. Encoding as in ``write_video``;
    ``codec`` says which encoder ran (set by the first ``write``). The file appears at ``path``
    only when the block ends without an exception (temp file + rename); otherwise ``path`` is
    left as it was.

    ``deterministic=True`` writes byte-identical files for the same frames, from run to run and
    process to process: libx264 without its macroblock-tree rate control (``mbtree=0``) and
    with one encoder thread. The default rate control is not deterministic: two processes
    encoding the same frames wrote different streams (decoded pixels up to 38 levels apart),
    presumably float SIMD paths that depend on buffer alignment. mpeg4 is deterministic with
    one thread as it is.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = 18, deterministic: bool = False,
                 lossless: bool = False, storage: str | None = None):
        self.path = Path(path)
        self.format = CONTAINER_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"{self.path}: unsupported suffix; use one of {sorted(CONTAINER_FORMATS)}")
        if lossless and storage not in (None, "lossless"):
            raise ValueError(f"lossless=True contradicts storage={storage!r}")
        storage = "lossless" if lossless else storage
        if storage is not None and storage not in FRAME_STORAGES:
            if storage in STORAGES:
                raise ValueError(f"storage {storage!r} holds no frames (the mirror writes it with "
                                 f"training/data/mirror_residual.py); VideoWriter writes {FRAME_STORAGES}")
            raise ValueError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
        if storage is not None and self.format not in STORAGES[storage]:
            raise ValueError(f"{self.path}: storage {storage!r} writes "
                             f"{sorted(s for s, f in CONTAINER_FORMATS.items() if f in STORAGES[storage])}, "
                             f"not {self.path.suffix}")
        if self.format in ("avi", "webm") and storage is None:
            raise ValueError(f"{self.path}: {self.path.suffix} is written only with a storage (lossless=True)")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps, self.crf, self.deterministic = fps, crf, deterministic
        self.storage, self.lossless = storage, storage == "lossless"
        self.codec: str | None = None
        self.frames_written = 0
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = None
        return self

    def _open(self, h: int, w: int) -> None:
        # bitexact: no random segment UID (Matroska) or encoder build strings in the file
        self._container = av.open(str(self._tmp), mode="w", format=self.format,
                                  options={"fflags": "+bitexact"} if self.deterministic else None)
        rate = Fraction(self.fps).limit_denominator(100_000)
        if self.storage is not None:
            self.codec, pix_fmt, options = STORAGES[self.storage][self.format]
            options = dict(options)
            if self.deterministic and self.codec == "libx264":
                options["x264-params"] = "mbtree=0"
            self._stream = self._container.add_stream(self.codec, rate=rate, options=options)
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, pix_fmt
            if self.deterministic:
                self._stream.codec_context.thread_count = 1
            return
        self.codec = pick_encoder()
        options = {}
        if self.codec == "libx264":
            options = {"crf": str(self.crf), **({"x264-params": "mbtree=0"} if self.deterministic else {})}
        self._stream = self._container.add_stream(self.codec, rate=rate, options=options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        if self.deterministic:
            self._stream.codec_context.thread_count = 1
        if self.codec == "mpeg4":  # its default (200 kb/s) smears small clips
            self._stream.codec_context.bit_rate = max(200_000, int(0.4 * w * h * self.fps))

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append uint8 ``(T, H, W, 3)`` RGB frames (an odd H or W is padded, see ``write_video``)."""
        frames = _as_uint8_frames(frames, str(self.path))
        _, h, w, _ = frames.shape
        if self._size is None:
            self._size = (h, w)
            self._open(h, w)
        elif self._size != (h, w):
            raise ValueError(f"{self.path}: frames of {h}x{w} after frames of {self._size[0]}x{self._size[1]}")
        if (h % 2 or w % 2) and self.storage is None:  # yuv420p needs even sizes: repeat the last row/column
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.frames_written  # the frame's index, in units of 1 / fps
            self._container.mux(self._stream.encode(video_frame))
            self.frames_written += 1

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
    deterministic: bool = False,
    lossless: bool = False,
) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames to H.264 (yuv420p) in an MP4, atomically.

    yuv420p needs even dimensions: an odd height or width is PADDED by one row/column that
    repeats the last one (no pixel is dropped; reading back gives the even size). ``crf`` is
    libx264's constant rate factor (18: visually near-lossless). Without libx264 the ``mpeg4``
    encoder is used at about 0.4 bits per pixel. ``.mov`` and ``.mkv`` suffixes select those
    containers; anything else but ``.mp4`` / ``.m4v`` is refused. ``deterministic``: byte-
    identical output for the same frames (see ``VideoWriter``); ``lossless``: bit-exact frames
    (see ``VideoWriter``). Returns ``Path(path)``.
    For long videos written piece by piece, use ``VideoWriter``.
    """
    with VideoWriter(path, fps, crf=crf, deterministic=deterministic, lossless=lossless) as writer:
        writer.write(frames)
    return Path(path)


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
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
