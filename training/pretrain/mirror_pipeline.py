"""The stages of a mirror pass (``training/pretrain/mirror.py``) and the pipeline that overlaps them.

One video goes through three stages: decode (``decode_one``: PyAV, at training's decode size),
generate (``generate_video``: the generator over the video's windows) and write (``write_one``:
encode the chosen storage and rename it into place; for the residual storage, what the generator
changed at the flow's resolution, ``training/data/mirror_residual.py``). The serial loop of ``mirror.py`` runs them one
after the other (``--workers 0``). ``run_pipeline`` runs them at once, with bounded queues between:

    N DataLoader workers (processes) -> main thread (generator) -> N writer threads (encode, rename)
        decode_one, prefetch 2 each       windows of several videos     PyAV releases the GIL while
                                          in one call (``WindowBatcher``) it encodes; the part line is
                                                                         added after the rename

so a pass takes about as long as its slowest stage instead of the sum of the three.

Same bytes either way. Cross-video batches change which windows share a generator call, never a
window's output: each window's frames are computed on their own (the flow is per frame, the
temporal STD per window; on this CPU the outputs of a window alone and inside any batch are
bit-identical, which ``tests/test_mirror.py`` checks through the files). Random strategies draw
per video (``video_seed``), so their windows are batched per video, as in the serial loop. The
part file's line of a video is written only after its file is in place, so a kill anywhere in
the pipeline loses at most the videos in flight, which the next run generates again.
"""
from __future__ import annotations

import hashlib
import math
import os
import queue
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from s2vc.engine import video_io
from s2vc.engine.video_io import VideoDecodeError

from ..data.layouts import VideoRecord
from ..data.mirror_manifest import mirror_file, source_stamp
from ..data.mirror_residual import compose, read_residual, write_residual
# the generate stage (re-exported: callers import the stages from here)
from .mirror_batcher import MAX_PENDING, WindowBatcher, generate_video, mirror_windows  # noqa: F401

PREFETCH = 2             # decoded videos each DataLoader worker keeps ready
WRITE_QUEUE = 4          # generated videos waiting for the writer
SAMPLE_EVERY = 50        # compact / residual storage: PSNR and lossless size measured on every 50th video


def _usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: str | torch.device = "cuda") -> int:
    """``--workers`` when not given: with the generator on a GPU, half the usable cores, 1 to 8
    (decode processes, and as many writer threads); with the generator on the CPU, 0 (the serial
    loop): the generator then takes every core and ~90% of the work, so the pipeline has nothing
    to overlap and its extra processes and threads only compete with it (BENCHMARKS.md measured
    0.65-0.90x of the serial loop on the idle 2-core VM)."""
    if torch.device(device).type == "cpu":
        return 0
    return max(1, min(8, _usable_cores() // 2))


def main_threads(device: str | torch.device, workers: int, threads: int) -> int:
    """The pipeline main process's intra-op threads (``threads``: torch's now). With the generator
    on a GPU the main thread's CPU work is light (batching, copies, the uint8 conversion): it gets
    the cores the ``workers`` decode processes and writer threads leave, at least 1; more threads
    spun on the cores those needed (on the idle 2-core VM, a passthrough generator: ~1.5x the
    serial loop with 1 thread, ~1.1x with 2). With the generator on the CPU it keeps them all: the
    generator is ~90% of the work, and 1 thread cut the pipelined pass to about half
    (BENCHMARKS.md, "The main process's intra-op threads")."""
    if torch.device(device).type == "cpu":
        return threads
    return max(1, min(threads, _usable_cores() - workers))


# ---------------------------------------------------------------------------------------------
# decode and write
# ---------------------------------------------------------------------------------------------
def decode_one(record: VideoRecord, rel: str, decode_size: int | None, stride: int,
               threads: int | None = None) -> dict:
    """{"entry": the manifest entry so far, "video": uint8 (N, H, W, 3), "fps"}; a video that
    cannot be decoded or is too short gives {"entry": {..., "skipped": why}} instead. ``threads``:
    the decoder's (``video_io.read_video``; None = FFmpeg's threaded decoding)."""
    entry = {"path": rel, **source_stamp(record.path)}
    try:
        video = video_io.read_video(record.path, size=decode_size, threads=threads)
        fps = video_io.probe_video(record.path, exact=False).fps
    except (VideoDecodeError, OSError) as exc:
        return {"entry": {**entry, "skipped": f"cannot decode: {str(exc).splitlines()[0]}"}}
    if len(video) < 2 * stride:
        return {"entry": {**entry, "skipped": f"too short: {len(video)} frames, needs {2 * stride}"}}
    return {"entry": entry, "video": video, "fps": fps if fps == fps and fps > 0 else 25.0}


def write_one(out: Path, rel: str, frames: torch.Tensor | None, fps: float, storage: str, sample: bool = False, *,
              residual: torch.Tensor | None = None, source: torch.Tensor | None = None,
              header: dict | None = None) -> dict:
    """Encode uint8 (N, H, W, 3) ``frames`` to ``out/rel`` in ``storage`` (atomic, deterministic);
    returns the entry's storage fields: "bytes", and with ``sample`` (compact and residual storages)
    "psnr_db" of the file against ``frames`` and "lossless_bytes" (the same frames written
    losslessly). Storage "residual" writes int16 (N, 3, r, r) ``residual`` to ``out/<rel>.residual``
    with ``header`` (flow_sha256, source_size, ...) instead of the frames; its sample composes the
    file read back with ``source``, the decoded uint8 (N, H, W, 3) source frames; ``frames`` is
    read only by a sample (None otherwise)."""
    path = mirror_file(out, rel, storage)
    if storage == "residual":
        if residual is None or source is None:
            raise ValueError("storage 'residual' writes the generator's residual: pass residual= and source=")
        if sample and frames is None:
            raise ValueError("a sampled residual is checked against the generated frames: pass frames")
        write_residual(path, residual, {**(header or {}), "height": int(source.shape[1]),
                                        "width": int(source.shape[2])})
    else:
        with video_io.VideoWriter(path, fps=fps, storage=storage, deterministic=True) as writer:
            writer.write(frames)
    fields = {"bytes": path.stat().st_size}
    if sample and storage != "lossless":
        back = compose(source, read_residual(path)[0]) if storage == "residual" else video_io.read_video(path)
        mse = float(((back.double() - frames.double()) ** 2).mean())
        fields["psnr_db"] = round(psnr_db(mse), 3)
        video = out / rel
        # the size the same frames take losslessly, in the video's own container where the writer has
        # it (a residual mirror of .mpg sources: in .mkv)
        suffix = video.suffix if video.suffix.lower() in video_io.CONTAINER_FORMATS else ".mkv"
        probe = video.with_name(f".{video.name}.lossless-probe{suffix}")
        try:
            with video_io.VideoWriter(probe, fps=fps, storage="lossless", deterministic=True) as writer:
                writer.write(frames)
            fields["lossless_bytes"] = probe.stat().st_size
        finally:
            probe.unlink(missing_ok=True)
    return fields


def psnr_db(mse: float) -> float:
    """PSNR of 8-bit frames from their mean squared error (in levels²); 99 dB stands for equal."""
    return 99.0 if mse <= 0 else 10.0 * math.log10(255.0 ** 2 / mse)


class _Decoding(torch.utils.data.Dataset):
    """The decode stage as a dataset over the videos to do, for a DataLoader's worker processes:
    each decodes with one thread: the processes are the parallelism, one a core, and FFmpeg's
    frame threads in every process would compete for the cores the other stages need (part of the
    cuts BENCHMARKS.md measured together; not timed alone)."""

    def __init__(self, todo: list[tuple[VideoRecord, str]], decode_size: int | None, stride: int):
        self.todo, self.decode_size, self.stride = todo, decode_size, stride

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> dict:
        record, rel = self.todo[i]
        return decode_one(record, rel, self.decode_size, self.stride, threads=1)


class _Writers:
    """The write stage: ``threads`` threads encode what ``put`` gives them (PyAV releases the GIL
    while it encodes, so they run on as many cores) and hand each finished entry to ``done``, one
    at a time. The first error stops them all and is raised by the next ``put`` or by ``finish``."""

    def __init__(self, write: Callable[[dict], dict], done: Callable[[dict], None], threads: int):
        self.write, self.done = write, done
        self.queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE + threads)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"mirror-writer-{i}", daemon=True)
                        for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                item = self.queue.get()
                if item is None:
                    return
                entry = self.write(item)
                with self.lock:
                    self.done(entry)
        except BaseException as exc:       # raised in the main thread
            self.error = self.error or exc
            self.stop.set()

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def put(self, item: dict) -> None:
        while True:
            if self.error is not None or self.stop.is_set() or not self._alive():
                raise RuntimeError("the mirror's writer stopped") from self.error
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self, drain: bool) -> None:
        """Wait for the queued videos (``drain``) or only those being written; re-raise an error."""
        if not drain:
            self.stop.set()
        for thread in self.threads:
            while thread.is_alive():
                if not drain:                # unblock writers waiting on an empty queue
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass
                try:
                    self.queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error


def video_seed(seed: int, rel: str) -> int:
    """The random strategies' seed of one video: the same in any shard layout."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{rel}".encode()).digest()[:4], "little")


def video_entry(item: dict, storage_fields: dict, backend: str | None) -> dict:
    """The manifest entry of a generated and written ``item`` (``WindowBatcher``'s result)."""
    n, h, w = item["shape"]
    return {**item["entry"], "frames": int(n), "windows": item["windows"],
            "preserved": round(item["preserved"], 6), "height": int(h), "width": int(w),
            "fps": item["fps"], "backend": backend, **storage_fields}


def residual_header(settings, entry: dict) -> dict:
    """What a residual file records of the mirror and its source (``mirror_residual.check_residual``)."""
    return {"flow_sha256": settings.flow_sha256, "flow_resolution": settings.flow_resolution,
            "source_size": entry["source_size"]}


def run_pipeline(gen, cfg, todo: list[tuple[VideoRecord, str]], out: Path, done: Callable[[dict], None],
                 settings=None) -> None:
    """Mirror ``todo`` with the three stages overlapped (see the module docstring). ``cfg``: the
    ``MirrorConfig`` (workers: decode processes and as many writer threads; decode_size, frames,
    stride, batch, device, storage, method, strategy, seed); ``settings``: the ``MirrorSettings``
    (the residual storage records its flow); ``done(entry)`` is called by a writer
    thread, one at a time, once a video's file is in place (or the video was skipped); with several
    writers not necessarily in input order. Sampled (``SAMPLE_EVERY``): every 50th decoded video in
    input order, as in the serial loop. The main process's intra-op threads while it runs:
    ``main_threads``."""
    from s2vc.engine.strategies import RANDOM_STRATEGIES

    loader = torch.utils.data.DataLoader(_Decoding(todo, cfg.decode_size, cfg.stride), batch_size=None,
                                         num_workers=cfg.workers, prefetch_factor=PREFETCH if cfg.workers else None)
    per_video = cfg.method == "s2vc" and cfg.strategy in RANDOM_STRATEGIES

    def seed_video(item: dict) -> None:
        gen.seed = video_seed(cfg.seed, item["entry"]["path"])

    residual = settings.flow_resolution if cfg.storage == "residual" else None
    batcher = WindowBatcher(gen, cfg.frames, cfg.stride, cfg.batch, cfg.device, per_video=per_video,
                            on_video=seed_video if per_video else None, residual=residual,
                            keep_frames=(lambda item: item["sample"]) if residual else None)

    def write(item: dict) -> dict:
        if "windows" not in item:
            return item["entry"]
        fields = write_one(out, item["entry"]["path"], item.get("out"), item["fps"], cfg.storage, item["sample"],
                           residual=item.get("residual"), source=item.get("video"),
                           header=residual_header(settings, item["entry"]) if residual else None)
        return video_entry(item, fields, item["backend"])

    def numbered(items: Iterable[dict]) -> Iterator[dict]:
        decoded = 0
        for item in items:
            if "video" in item:
                item["sample"] = decoded % SAMPLE_EVERY == 0
                decoded += 1
            yield item

    def generated(items: Iterable[dict]) -> Iterator[dict]:
        for item in batcher(numbered(items)):
            yield {**item, "backend": gen.last_backend}

    threads = torch.get_num_threads()
    torch.set_num_threads(main_threads(cfg.device, cfg.workers, threads))
    try:
        writer = _Writers(write, done, threads=cfg.workers)
        ok = False
        try:
            for item in generated(loader):
                writer.put(item)
            ok = True
        finally:
            writer.finish(drain=ok)           # re-raises a writer's error
    finally:
        torch.set_num_threads(threads)


__all__ = ["WindowBatcher", "decode_one", "default_workers", "generate_video", "main_threads", "mirror_windows", "psnr_db",
           "residual_header", "run_pipeline", "video_entry", "video_seed", "write_one"]
