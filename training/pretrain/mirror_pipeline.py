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

import collections
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
from ..data.mirror_residual import compose, read_residual, residual_of, write_residual

PREFETCH = 2             # decoded videos each DataLoader worker keeps ready
WRITE_QUEUE = 4          # generated videos waiting for the writer
MAX_PENDING = 32         # decoded videos waiting for a full batch before partial batches run
SAMPLE_EVERY = 50        # compact / residual storage: PSNR and lossless size measured on every 50th video


def default_workers(device: str | torch.device = "cuda") -> int:
    """``--workers`` when not given: with the generator on a GPU, half the usable cores, 1 to 8
    (decode processes, and as many writer threads); with the generator on the CPU, 0 (the serial
    loop): the generator then takes every core and ~90% of the work, so the pipeline has nothing
    to overlap and its extra processes and threads only compete with it (BENCHMARKS.md measured
    0.74-0.93x of the serial loop on the idle 2-core VM)."""
    if torch.device(device).type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // 2))


def main_threads(device: str | torch.device, workers: int, threads: int) -> int:
    """The pipeline main process's intra-op threads (``threads``: torch's now). With the generator
    on a GPU the main thread's CPU work is light (batching, copies, the uint8 conversion): it gets
    the cores the ``workers`` decode processes and writer threads leave, at least 1; more threads
    spun on the cores those needed (on the idle 2-core VM, a passthrough generator: 1.5x the serial
    loop with 1 thread, 1.1x with 2; BENCHMARKS.md). With the generator on the CPU it keeps them
    all: the generator is ~90% of the work, and 1 thread halved the pass."""
    if torch.device(device).type == "cpu":
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(threads, cores - workers))


# ---------------------------------------------------------------------------------------------
# windows and generation
# ---------------------------------------------------------------------------------------------
def mirror_windows(num_frames: int, frames: int, stride: int) -> list[list[int]]:
    """The windows a video of ``num_frames`` frames is generated in: lists of frame indices,
    ``stride`` apart, ``frames`` long (fewer only for a phase shorter than that), covering every
    frame exactly once. A phase's last window, when it would be short, takes the phase's last
    ``frames`` frames instead (overlapping the one before; only its new frames are kept), so every
    STD is over ``frames`` frames wherever the video is long enough. Empty when some phase has
    fewer than 2 frames (``num_frames < 2 * stride``): the temporal STD needs T >= 2."""
    if frames < 2 or stride < 1:
        raise ValueError(f"need frames >= 2 and stride >= 1, got frames={frames}, stride={stride}")
    if num_frames < 2 * stride:
        return []
    windows = []
    for phase in range(stride):
        idx = list(range(phase, num_frames, stride))
        for start in range(0, len(idx), frames):
            chunk = idx[start:start + frames]
            if len(chunk) < frames and len(idx) >= frames:
                chunk = idx[-frames:]
            windows.append(chunk)
    return windows


def _as_index(window: list[int]) -> slice | list[int]:
    """A window's frame indices as a slice when evenly spaced (``mirror_windows``' always are):
    indexing with a slice is a view, ten times faster than gathering with the list."""
    step = window[1] - window[0] if len(window) > 1 else 1
    if step > 0 and window == list(range(window[0], window[-1] + 1, step)):
        return slice(window[0], window[-1] + 1, step)
    return window


class _Video:
    """One video inside ``WindowBatcher``: its frames, output, and windows still to generate."""

    def __init__(self, item: dict, frames: int, stride: int, resolution: int | None = None,
                 keep_frames: bool = True):
        self.item = item
        video = item.get("video")
        self.windows = mirror_windows(len(video), frames, stride) if video is not None else []
        if video is not None and not self.windows:
            raise ValueError(f"too short: {len(video)} frames, the mirror needs at least {2 * stride} "
                             f"(stride {stride}) for a temporal STD")
        self.out = torch.empty_like(video) if video is not None and keep_frames else None
        self.residual = (torch.empty(len(video), 3, resolution, resolution, dtype=torch.int16)
                         if video is not None and resolution is not None else None)
        self.written = torch.zeros(len(video), dtype=torch.bool) if video is not None else None
        self.preserved = [0.0] * len(self.windows)
        self.remaining = len(self.windows)

    def take(self, k: int, frames_out: torch.Tensor, preserved: float, residual: torch.Tensor | None = None) -> None:
        """Window ``k``'s uint8 (T, H, W, 3) output (and int16 (T, 3, r, r) residual): frames no
        earlier window wrote are kept."""
        idx = torch.tensor(self.windows[k])
        new = ~self.written[idx]
        if self.out is not None:
            self.out[idx[new]] = frames_out[new]
        if self.residual is not None:
            self.residual[idx[new]] = residual[new]
        self.written[idx] = True
        self.preserved[k] = preserved
        self.remaining -= 1

    def result(self) -> dict:
        """The item with ``shape`` ((N, H, W) of the frames), ``out`` (the uint8 (N, H, W, 3)
        frames, unless the video was added with ``keep_frames`` false), ``preserved`` (mean over
        windows) and ``windows`` (their number) added; the decoded frames dropped, except with a
        residual (``residual`` int16 (N, 3, r, r) added), which is composed with them."""
        keep_video = self.residual is not None
        item = {k: v for k, v in self.item.items() if k != "video" or keep_video}
        if self.windows:
            item.update(shape=tuple(self.item["video"].shape[:3]), windows=len(self.windows),
                        preserved=math.fsum(self.preserved) / len(self.windows))
            if self.out is not None:
                item["out"] = self.out
            if self.residual is not None:
                item["residual"] = self.residual
        return item


class WindowBatcher:
    """The generate stage: windows of consecutive videos fill generator calls of ``batch``
    windows of one shape (length, H, W); a video comes out, in input order, once all its windows
    are done. ``per_video``: each video's windows go alone (random strategies, whose draws are
    seeded per video by ``on_video`` before its calls). ``residual``: the flow's resolution r, to
    keep what the generator changed at r x r too (``mirror_residual.residual_of``; the residual
    storage), None = only the frames. ``keep_frames(item)``: whether a video's uint8 frames are
    made at all (default: every video's; the residual storage needs them only for its sampled
    videos, and converting them is the main thread's largest per-frame cost)."""

    def __init__(self, gen, frames: int, stride: int, batch: int, device: str | torch.device = "cpu",
                 per_video: bool = False, on_video: Callable[[dict], None] | None = None,
                 max_pending: int = MAX_PENDING, residual: int | None = None,
                 keep_frames: Callable[[dict], bool] | None = None):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.gen, self.frames, self.stride, self.batch, self.device = gen, frames, stride, batch, device
        self.per_video, self.on_video, self.max_pending = per_video, on_video, max_pending
        self.residual, self.keep_frames = residual, keep_frames
        self._pending: collections.deque[_Video] = collections.deque()
        self._groups: dict[tuple, list[tuple[_Video, int]]] = {}

    def _run(self, chunk: list[tuple[_Video, int]]) -> None:
        clips = torch.stack([v.item["video"][_as_index(v.windows[k])] for v, k in chunk])  # (B, T, H, W, 3)
        # uint8 to the device, then to float there: a quarter of the bytes moved
        video = video_io.to_float_video(clips.to(self.device))
        result, stats = self.gen(video)
        residuals = [None] * len(chunk)
        if self.residual is not None:
            residuals = residual_of(result, video, self.residual).cpu()                 # (B, T, 3, r, r)
        keep = [i for i, (v, _) in enumerate(chunk) if v.out is not None]
        frames_out = [None] * len(chunk)
        if keep:
            kept = result if len(keep) == len(chunk) else result[torch.tensor(keep, device=result.device)]
            # to 8 bits on the device, then to the CPU: a quarter of the bytes moved
            for i, f in zip(keep, video_io.to_uint8_frames(kept).cpu()):                 # (T, H, W, 3) each
                frames_out[i] = f
        for (v, k), f, p, res in zip(chunk, frames_out, stats.preserved.float().cpu().tolist(), residuals):
            v.take(k, f, p, res)

    def _flush(self, full_only: bool) -> None:
        for key in list(self._groups):
            group = self._groups[key]
            while len(group) >= self.batch or (group and not full_only):
                chunk, group[:] = group[:self.batch], group[self.batch:]
                self._run(chunk)
            if not group:
                del self._groups[key]

    def _ready(self) -> Iterator[dict]:
        while self._pending and self._pending[0].remaining == 0:
            yield self._pending.popleft().result()

    def add(self, item: dict) -> Iterator[dict]:
        """Queue one decoded item ({"video": uint8 (N, H, W, 3) or absent, ...}); yields the items
        whose generation this finished, in input order."""
        v = _Video(item, self.frames, self.stride, self.residual,
                   keep_frames=self.keep_frames is None or "video" not in item or self.keep_frames(item))
        self._pending.append(v)
        if self.on_video is not None and v.windows:
            self.on_video(item)
        video = item.get("video")
        for k, w in enumerate(v.windows):
            self._groups.setdefault((len(w), *video.shape[1:3]), []).append((v, k))
        self._flush(full_only=not self.per_video and len(self._pending) < self.max_pending)
        yield from self._ready()

    def close(self) -> Iterator[dict]:
        """Run the partial batches left; yields the remaining items."""
        self._flush(full_only=False)
        yield from self._ready()

    def __call__(self, items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            yield from self.add(item)
        yield from self.close()


def generate_video(generator, video: torch.Tensor, frames: int, stride: int, batch: int,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, float, int]:
    """Motion-preserved frames of one video. video: uint8 (N, H, W, 3). Returns (uint8 (N, H, W, 3),
    mean preserved fraction over windows, number of windows); windows of one length go through
    ``generator`` ``batch`` at a time."""
    done = list(WindowBatcher(generator, frames, stride, batch, device, per_video=True)([{"video": video}]))
    return done[0]["out"], done[0]["preserved"], done[0]["windows"]


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
        probe = video.with_name(f".{video.name}.lossless-probe{video.suffix}")
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
    each decodes with one thread (the processes are the parallelism; FFmpeg's frame threads in
    every process only added hand-offs: BENCHMARKS.md)."""

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
    writer = _Writers(write, done, threads=cfg.workers)
    ok = False
    try:
        for item in generated(loader):
            writer.put(item)
        ok = True
    finally:
        writer.finish(drain=ok)
        torch.set_num_threads(threads)


__all__ = ["WindowBatcher", "decode_one", "default_workers", "generate_video", "main_threads", "mirror_windows", "psnr_db",
           "residual_header", "run_pipeline", "video_entry", "video_seed", "write_one"]
