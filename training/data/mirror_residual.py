"""The residual storage of a mirror (``s2vc generate --dataset --storage residual``): instead of the
generated video, what the generator changed, at the flow's resolution; the key is rebuilt from the
source clip, which the training loader decodes anyway for the query.

The generator (``engine/generator.py``, detail "keep", nearest upsampling: the mirror's) computes

    low = avgpool(frames, r x r);  out = frames + upsample_nearest(low_p - low, H x W)

so everything it adds to the source frames is ``d = low_p - low``: (N, 3, r, r) per video, r the
flow's resolution (32: 3072 values a frame, against 3 x 128 x 171 = 65,664 in the frame). The
mirror's 8-bit key is ``round(255 * clip(out, 0, 1))``, and the source frames are ``k / 255`` with
integer k, so with ``q = round(255 * d)``

    key = clip(k + upsample_nearest(q), 0, 255)

equals the lossless mirror's frames except where ``255 * d`` lies within float32's rounding
(about 1e-5 of a level) of a half level: measured on ``bikes.mp4``, 6 pixels in a million differ,
by one level. q is clipped to [-255, 255] (anything beyond gives the same clipped key), so it takes
9 bits. Nothing else is stored: the step is one 8-bit level (``STEP``), exact by construction;
coarser steps (2 and 4 levels: 51 and 46 dB against the 8-bit frames) saved less than a third of
a file that is already ~1/24 of the lossless one (docs/MIRROR.md).

File: ``<mirror>/<the video's relative path>.residual`` (``residual_path``; no video suffix, so no
video reader mistakes it for one), Matroska holding one FFV1 stream of r x r frames in 9-bit planar
RGB (``q + OFFSET``; the smallest of the lossless coders measured: zlib, lzma, byte planes, a
temporal delta, x264 qp 0), one frame per video frame, written atomically and deterministically
(bitexact, one thread). Its header (a Matroska tag, ``TAG``) records what it fits: the decoded
frame count and size, the flow's resolution and SHA-256, the source file's size. ``check_residual``
turns a mismatch with the source a loader decoded into a one-line ``ResidualMismatchError``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import torch

from s2vc.engine.graph import nearest_index
from s2vc.engine.video_read import VideoDecodeError
from s2vc.engine.video_write import STORAGES, atomic_path

# the file's name is the mirror's layout (mirror_manifest); re-exported here, where it is read
from .mirror_manifest import RESIDUAL_SUFFIX, MirrorMismatchError, residual_path

RESIDUAL_FORMAT = 1
TAG = "S2VC_RESIDUAL"
STEP = 1                 # 8-bit levels per stored unit
LIMIT = 255              # |q| beyond this gives the same clipped key
OFFSET = 256             # q + OFFSET in [1, 511]: 9 bits unsigned
KEY_EVERY = 12           # FFV1 key frames (FFmpeg's default): a key clip's frames decode from the one before


class ResidualMismatchError(MirrorMismatchError):
    """A residual file that does not fit the source it is composed with (frames, size, flow)."""


def _block_ends(size: int, r: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, last) positions of each of the r blocks that nearest upsampling fills from one value."""
    idx = nearest_index(size, r).to(device)
    pos = torch.arange(size, device=device)
    first = torch.full((r,), size, dtype=torch.long, device=device).scatter_reduce(0, idx, pos, "amin")
    last = torch.full((r,), -1, dtype=torch.long, device=device).scatter_reduce(0, idx, pos, "amax")
    return first, last


def residual_of(generated: torch.Tensor, video: torch.Tensor, resolution: int) -> torch.Tensor:
    """The stored residual of generated windows: int16 (B, T, 3, r, r) = round(255 (low_p - low)),
    clipped to [-LIMIT, LIMIT]. generated / video: float (B, 3, T, H, W), the generator's unclipped
    output and its input. ``generated - video`` is ``upsample_nearest(low_p - low)`` up to float32
    rounding (~1e-7): constant on each block of pixels one low-resolution value fills, so the first
    pixel of each block gives that value (any backend: only the output is read). The last pixel of
    each block is read too, and a change that is not constant on the blocks (another upsampling,
    detail "dynamic") is refused."""
    h, w = video.shape[-2:]
    fh, lh = _block_ends(h, resolution, video.device)
    fw, lw = _block_ends(w, resolution, video.device)
    # one gather over the flattened frame: the first pixel of every block, then the last
    flat = torch.cat([(fh[:, None] * w + fw[None, :]).reshape(-1), (lh[:, None] * w + lw[None, :]).reshape(-1)])
    both = (generated.flatten(-2).index_select(-1, flat) - video.flatten(-2).index_select(-1, flat)).float()
    low, last = both.unflatten(-1, (2, resolution, resolution)).unbind(-3)      # (B, 3, T, r, r) each
    if (last - low).abs().max() > 1e-4:
        raise ValueError("the generator's change is not constant on the blocks of nearest upsampling "
                         "from its resolution: the residual storage needs detail 'keep' and upsample 'nearest'")
    q = (low * (255.0 / STEP)).round_().clamp_(-LIMIT, LIMIT).to(torch.int16)
    return q.transpose(1, 2).contiguous()


def compose(frames: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The key: uint8 (T, H, W, 3) source ``frames`` plus the upsampled int16 (T, 3, r, r)
    ``residual``, clipped to [0, 255] (as the mirror's 8-bit frames and the clipped on-the-fly key
    are), in integers: the lossless mirror's frames (see the module docstring)."""
    t, h, w, _ = frames.shape
    r = residual.shape[-1]
    up = residual.permute(0, 2, 3, 1)                                  # (T, r, r, 3)
    up = up.index_select(1, nearest_index(h, r)).index_select(2, nearest_index(w, r))
    return (frames.to(torch.int16) + up * STEP).clamp_(0, 255).to(torch.uint8)


def write_residual(path: str | os.PathLike, residual: torch.Tensor, header: dict) -> int:
    """Write int16 (N, 3, r, r) ``residual`` to ``path`` (atomic, deterministic) with ``header``
    (what the caller records: height, width, flow_sha256, source_size, ...; frames, resolution,
    step and format are added). Returns the file's bytes."""
    q = residual.detach().cpu()
    if q.ndim != 4 or q.shape[1] != 3 or q.shape[2] != q.shape[3] or len(q) < 1:
        raise ValueError(f"{path}: expected a residual (N, 3, r, r) with N >= 1, got {tuple(q.shape)}")
    if int(q.abs().max()) > LIMIT:
        raise ValueError(f"{path}: residual values beyond +-{LIMIT}")
    codec, pix_fmt, options = STORAGES["residual"]["matroska"]
    planes = (q.to(torch.int32) + OFFSET).permute(0, 2, 3, 1).numpy().astype(np.uint16)   # (N, r, r, 3)
    head = {**header, "format": RESIDUAL_FORMAT, "frames": len(q), "resolution": int(q.shape[-1]),
            "step_levels": STEP, "offset": OFFSET}
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="matroska", options={"fflags": "+bitexact"}) as container:
            container.metadata[TAG] = json.dumps(head, sort_keys=True)
            stream = container.add_stream(codec, rate=25, options=dict(options))
            stream.width = stream.height = int(q.shape[-1])
            stream.pix_fmt = pix_fmt
            stream.codec_context.thread_count = 1
            stream.codec_context.gop_size = KEY_EVERY
            for plane in planes:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format=pix_fmt)))
            container.mux(stream.encode(None))
    return Path(path).stat().st_size


def read_residual(path: str | os.PathLike, first: int = 0, last: int | None = None) -> tuple[torch.Tensor, dict]:
    """(int16 (n, 3, r, r), header) of a residual file: its frames ``first`` to ``last`` (inclusive;
    None: to the end, fewer where the file ends earlier, which ``check_residual`` reports). Only the
    packets from the key frame at or before ``first`` (one every ``KEY_EVERY`` frames) to ``last``
    are decoded. A missing file raises FileNotFoundError; one that cannot be read,
    ``VideoDecodeError`` (a loader skips the video, as for a broken mirror video); a file of another
    format, ``ResidualMismatchError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"residual file {path} is not there")
    pix_fmt = STORAGES["residual"]["matroska"][1]
    try:
        with av.open(str(path), format="matroska") as container:
            header = json.loads(container.metadata.get(TAG, "null") or "null")
            if not isinstance(header, dict) or header.get("format") != RESIDUAL_FORMAT:
                raise ResidualMismatchError(f"{path} is not a residual file of format {RESIDUAL_FORMAT} "
                                            f"(header {header!r}): generate the mirror again")
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            stop = len(packets) - 1 if last is None else min(last, len(packets) - 1)
            start = max((k for k in range(min(first, stop) + 1) if packets[k].is_keyframe), default=0)
            planes = [f.to_ndarray(format=pix_fmt) for packet in packets[start:stop + 1]
                      for f in stream.decode(packet)]
    except (av.FFmpegError, json.JSONDecodeError, ValueError) as exc:
        raise VideoDecodeError(f"{path}: cannot read the residual ({str(exc).splitlines()[0]})") from None
    if len(packets) != header.get("frames") or len(planes) != stop + 1 - start:
        raise VideoDecodeError(f"{path}: {len(packets)} residual frames, {len(planes)} decoded of "
                               f"{stop + 1 - start}, its header says {header.get('frames')}")
    planes = planes[first - start:]
    if not planes:
        return torch.empty(0, 3, header["resolution"], header["resolution"], dtype=torch.int16), header
    q = torch.from_numpy(np.stack(planes).astype(np.int16) - OFFSET).permute(0, 3, 1, 2).contiguous()
    return q, header


def check_residual(path: str | os.PathLike, header: dict, *, size: tuple[int, int], last_frame: int,
                   source: str | os.PathLike | None = None, flow_sha256: str | None = None,
                   flow_resolution: int | None = None) -> None:
    """Raise a one-line ``ResidualMismatchError`` when the residual at ``path`` (its ``header``) does
    not fit the source it is about to be composed with: frames decoded at (H, W) ``size``, frame
    index ``last_frame`` needed, the source file ``source`` (its size), the mirror's flow."""
    problems = []
    if (header.get("height"), header.get("width")) != tuple(size):
        problems.append(f"it was made for frames of {header.get('height')}x{header.get('width')}, the source "
                        f"decodes to {size[0]}x{size[1]} (another --decode-size?)")
    if last_frame >= header.get("frames", 0):
        problems.append(f"it holds {header.get('frames')} frames, frame {last_frame} of the source is asked for")
    if source is not None and "source_size" in header and Path(source).stat().st_size != header["source_size"]:
        problems.append(f"the source {source} has {Path(source).stat().st_size} bytes, "
                        f"{header['source_size']} when the residual was made")
    if flow_sha256 is not None and header.get("flow_sha256") != flow_sha256:
        problems.append(f"it was made with flow {str(header.get('flow_sha256'))[:12]}, the mirror's is {flow_sha256[:12]}")
    if flow_resolution is not None and header.get("resolution") != flow_resolution:
        problems.append(f"it is at {header.get('resolution')}x{header.get('resolution')}, the flow's resolution "
                        f"is {flow_resolution}")
    if problems:
        raise ResidualMismatchError(f"residual {path} does not match its source: {'; '.join(problems)}: "
                                    "generate the mirror again from these sources")


def residual_at(path: str | os.PathLike, frames: list[int], *, size: tuple[int, int], source: str | os.PathLike,
                cache: dict | None = None, flow_sha256: str | None = None,
                flow_resolution: int | None = None) -> torch.Tensor:
    """The residual of the key clip at source frame indices ``frames`` (ascending), checked
    against the clip it is composed with (``check_residual``: decoded at ``size``, from
    ``source``, the mirror's flow). ``cache`` (a dict, e.g. a dataset's with ``cache_videos``):
    the whole file is read once and kept under its path; else only the frames from the FFV1 key
    frame before ``frames[0]`` to ``frames[-1]`` are decoded."""
    if cache is not None:
        if path not in cache:
            cache[path] = read_residual(path)
        (residual, header), first = cache[path], 0
    else:
        (residual, header), first = read_residual(path, frames[0], frames[-1]), frames[0]
    check_residual(path, header, size=size, last_frame=frames[-1], source=source, flow_sha256=flow_sha256,
                   flow_resolution=flow_resolution)
    return residual[[k - first for k in frames]]


__all__ = ["RESIDUAL_SUFFIX", "ResidualMismatchError", "check_residual", "compose", "read_residual",
           "residual_at", "residual_of", "residual_path", "write_residual"]
