"""Video and image input/output: PyAV for video, Pillow for images — the one import point.

Reading lives in ``engine/video_read.py``, writing in ``engine/video_write.py``; this module
re-exports both (``from s2vc.engine import video_io``; ``video_io.read_video``,
``video_io.VideoWriter``, ``video_io.VideoDecodeError``, ...) and holds the layout conversions.

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

Writers are atomic (temp file + rename, see ``engine/video_write.py``); ``VideoWriter`` /
``write_video`` with ``deterministic=True`` write byte-identical files for the same frames.
"""
from __future__ import annotations

import numpy as np
import torch

# re-exported: callers use ``video_io.<name>`` (Size, output_size, CONTAINER_FORMATS, LABEL_HEIGHT,
# STORAGES and atomic_path too, though they are not in __all__)
from .video_read import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ImageDecodeError, Size,  # noqa: F401
                         VideoDecodeError, VideoInfo, iter_video_frames, output_size, probe_video, read_image,
                         read_video)
from .video_write import (CONTAINER_FORMATS, LABEL_HEIGHT, STORAGES, VideoWriter, atomic_path,  # noqa: F401
                          pick_encoder, write_contact_sheet, write_video)

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VideoDecodeError",
    "ImageDecodeError",
    "VideoInfo",
    "VideoWriter",
    "probe_video",
    "iter_video_frames",
    "read_video",
    "write_video",
    "write_contact_sheet",
    "to_float_video",
    "to_uint8_frames",
    "read_image",
    "pick_encoder",
]


def to_float_video(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(3, T, H, W)`` in [0, 1]; ``(B, T, H, W, 3)`` ->
    ``(B, 3, T, H, W)``."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 (T, H, W, 3) or (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    video = frames.movedim(-1, -4).float()
    if video.device.type == "cpu":
        return video.div_(255.0)
    # on an accelerator, by a 0-dim tensor made on the device (no host copy, no wait): CUDA turns
    # a division by a Python scalar into x * (1 / 255), one ulp off k / 255 for about half the
    # levels; a tensor divisor divides, so the frames are the CPU's, value for value
    # (tests/test_generator.py, on a GPU)
    return video.div_(torch.full((), 255.0, device=video.device))


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """float ``(3, T, H, W)`` -> uint8 ``(T, H, W, 3)``; ``(B, 3, T, H, W)`` -> ``(B, T, H, W, 3)``.

    Values are clamped to [0, 1] (the generator does not clamp its output) and rounded to the
    nearest of 256 levels; NaN becomes 0.
    """
    if not video.is_floating_point() or video.ndim not in (4, 5) or video.shape[-4] != 3:
        raise ValueError(
            f"expected float (3, T, H, W) or (B, 3, T, H, W), got {video.dtype} {tuple(video.shape)}"
        )
    # one float temporary, changed in place, and one converting copy into the channel-last
    # result: 2.5x faster than a chain of out-of-place ops (0.15 against 0.39 ms a 128x171 frame
    # on the dev VM) and equal to round(255 * clamp(nan_to_num(x), 0, 1)) value for value (x * 255
    # overflows only to +-inf, which nan_to_num maps to the largest float, clamped to 255 alike)
    scaled = video.detach().mul(255.0).nan_to_num_(0.0).clamp_(0.0, 255.0).round_().movedim(-4, -1)
    out = torch.empty(scaled.shape, dtype=torch.uint8, device=scaled.device)
    return out.copy_(scaled)
