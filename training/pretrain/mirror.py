"""A motion-preserved mirror of a whole dataset, generated once: ``s2vc generate --dataset``.

S²VC's on-the-fly key costs more than the training step it feeds, and every epoch regenerates the
same videos (the flow is frozen; ``zero`` is deterministic). A mirror pays that cost once, as a
throughput-bound pass that the fast backends (ext, compile, ONNX Runtime, TensorRT) serve best,
and pretraining then reads its keys from it (``s2vc pretrain --keys MIRROR``) at MoCo's cost.

What is written: every video of the chosen split, decoded at training's ``decode_size``, run
through the generator and written in the chosen storage (``lossless``: bit-exact RGB; ``compact``:
near-lossless H.264 4:4:4, about 46 dB, its PSNR measured into the manifest) under the same
relative path and file name as in the dataset, or (``residual``) only what the generator changed,
at the flow's resolution, in ``<path>.residual`` beside where that file would be, from which a
loader rebuilds the lossless key with the source clip (``training/data/mirror_residual.py``); the dataset's other files (split lists,
annotations) are copied, so any trainer can read the mirror as that dataset. The 8-bit frames
hold the generator's output clipped to [0, 1]; pretraining clips keys made on the fly the same
way (``clamp_key``), so the two paths give the same key up to the storage's loss.

How: ``workers=0`` runs decode, generation and writing one video after the other; ``workers=N``
overlaps them (``mirror_pipeline.run_pipeline``: N decode processes, the generator over windows of
several videos, N writer threads), to the same bytes. docs/MIRROR.md has the measured costs.

Windows. The temporal STD of eq. (4) is taken over windows of training's clip: ``frames`` frames
``stride`` apart. For each phase p < stride, the frames p, p + stride, ... are cut into
consecutive windows of ``frames`` (``mirror_windows``); every frame of the video is generated in
exactly one window. How this differs from on-the-fly generation: there, the STD window is the key
clip itself (random start, so it straddles the mirror's windows) and the generator sees the
cropped, flipped clip; here the windows are fixed and the crop and flip come after generation. The
reproduction measures whether that matters (docs/RESULTS.md).

Safe and resumable (``training/data/mirror_manifest.py``): each video is written to a temporary name and
renamed; a finished video is recorded in the shard's part file only after that; a killed run
continues where it stopped; a video that cannot be decoded (or is too short) is skipped, listed
and counted, never fatal; another run with other settings into the same folder is refused.
Scale-out: ``shard=(i, n)`` (or torchrun's RANK / WORLD_SIZE) takes every n-th video; the shard
that finishes last merges the parts into ``manifest.json``.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from s2vc.engine.video_write import STORAGES, atomic_path

from ..data.layouts import VIDEO_EXTENSIONS, VideoRecord
from ..data.mirror_manifest import (MirrorSettings, PartWriter, mark_done, merge_if_complete, mirror_file,
                                    pin_settings, read_parts, source_stamp)
from ..data.synthetic import SyntheticSet
from .mirror_pipeline import (SAMPLE_EVERY, WindowBatcher, decode_one, generate_video, mirror_windows,
                              residual_header, run_pipeline, video_entry, video_seed, write_one)

log = logging.getLogger(__name__)

METHODS = ("s2vc", "tfd")
SPLITS = ("train", "test", "all")
COPY_LIMIT = 256 << 20      # non-video files up to this size are copied (split lists, annotations)


@dataclass(frozen=True)
class MirrorConfig:
    """Settings of ``generate_mirror``.

    dataset / root / fold / split / synthetic: which videos (split "all" = train and test);
    out: the mirror folder; frames / stride / decode_size: training's clip length, stride and
    decode size (``s2vc pretrain --frames/--stride/--decode-size``); method: "s2vc" or "tfd";
    flow / alpha / strategy / keep_fraction / backend / model / seed: the generator (``alpha``
    None = the flow's calibrated one); device; batch: windows per generator call; shard: (i, n),
    None = torchrun's RANK / WORLD_SIZE, else (0, 1); require_flow_fit: a flow that does not fit the
    dataset's training frames is fatal (default: say so and go on); workers: decode processes of
    the pipeline (``mirror_pipeline.run_pipeline``), 0 = the serial loop (``s2vc generate`` defaults
    to ``mirror_pipeline.default_workers()``); storage: "lossless" (bit-exact), "compact"
    (near-lossless H.264 4:4:4, ``engine.video_write.STORAGES``) or "residual" (the generator's
    change at the flow's resolution, ``training/data/mirror_residual.py``).
    """

    dataset: str
    out: str
    root: str | None = None
    fold: int = 1
    split: str = "train"
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    frames: int = 16
    stride: int = 2
    decode_size: int | None = 128
    method: str = "s2vc"
    flow: str | None = None
    alpha: float | None = None
    strategy: str = "zero"
    keep_fraction: float | None = None
    backend: str = "auto"
    model: str | None = None
    seed: int = 0
    device: str = "cpu"
    batch: int = 8
    shard: tuple[int, int] | None = None
    progress: bool = True
    require_flow_fit: bool = False
    workers: int = 0
    storage: str = "lossless"


@dataclass
class MirrorReport:
    """What one process did: videos written / skipped / already there, frames and windows it
    generated, its wall time; ``manifest``: the merged manifest's path once every shard is done."""

    out: Path
    shard: tuple[int, int]
    written: int = 0
    skipped: dict = field(default_factory=dict)
    reused: int = 0
    frames: int = 0
    windows: int = 0
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def clips_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------------------------
# the pass over a dataset
# ---------------------------------------------------------------------------------------------
def mirror_generator(cfg: MirrorConfig):
    """(generator, MirrorSettings, flow) for ``cfg``: the flow's generator, or TFD at the flow's
    resolution; the flow is returned so that nothing loads it again."""
    from s2vc.engine import load_flow
    from s2vc.engine.generator import MotionPreservingGenerator
    from s2vc.engine.tfd import tfd_generator

    if cfg.method not in METHODS:
        raise ValueError(f"unknown mirror method {cfg.method!r}; expected one of {METHODS}")
    flow = load_flow(cfg.flow, device=cfg.device)
    if cfg.method == "s2vc":
        # the generator resolves alpha and topk's keep_fraction from the flow; validate=False: the
        # mirror's frames come from the decoder (uint8 / 255), so the per-call value checks, which
        # wait for the device, would only slow it
        gen = MotionPreservingGenerator(flow, alpha=cfg.alpha, strategy=cfg.strategy, backend=cfg.backend,
                                        keep_fraction=cfg.keep_fraction, model=cfg.model, seed=cfg.seed,
                                        validate=False)
        alpha, strategy, keep = gen.alpha, cfg.strategy, gen.keep_fraction
        if cfg.alpha is None and cfg.strategy != "topk":
            from ..flow.alpha_clip import alpha_clip_note
            note = alpha_clip_note(flow, cfg.frames, cfg.stride, flow_path=cfg.flow, dataset=cfg.dataset,
                                   root=cfg.root, fold=cfg.fold, decode_size=cfg.decode_size,
                                   synthetic=cfg.synthetic)
            if note:
                print(f"generate: {note}", file=sys.stderr)
    else:
        gen = tfd_generator(resolution=flow.config.resolution, backend="eager" if cfg.backend == "auto"
                            else cfg.backend)
        alpha, strategy, keep = None, "topk", gen.keep_fraction
    settings = MirrorSettings(dataset=cfg.dataset, fold=cfg.fold, split=cfg.split, method=cfg.method,
                              flow_sha256=flow.sha256 or "", flow_resolution=flow.config.resolution,
                              alpha=alpha, strategy=strategy, keep_fraction=keep, frames=cfg.frames,
                              stride=cfg.stride, decode_size=cfg.decode_size, seed=cfg.seed,
                              storage=cfg.storage)
    return gen, settings, flow


def dataset_records(cfg: MirrorConfig) -> tuple[Path, list[VideoRecord]]:
    """(dataset root, the records of ``cfg.split``, sorted by path, each video once)."""
    from ..data.datasets import dataset_root, split_records

    if cfg.split not in SPLITS:
        raise ValueError(f"unknown split {cfg.split!r}; expected one of {SPLITS}")
    root = dataset_root(cfg.dataset, cfg.root, synthetic=cfg.synthetic)
    splits = ("train", "test") if cfg.split == "all" else (cfg.split,)
    if cfg.dataset == "folder":
        splits = ("train",)
    seen: dict[Path, VideoRecord] = {}
    for split in splits:
        for record in split_records(cfg.dataset, root, split, cfg.fold):
            seen.setdefault(record.path, record)
    return root, sorted(seen.values(), key=lambda r: str(r.path))


def _shard(cfg: MirrorConfig) -> tuple[int, int]:
    if cfg.shard is not None:
        i, n = cfg.shard
    else:
        i, n = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard must be I/N with 0 <= I < N, got {i}/{n}")
    return i, n


def _copy_side_files(root: Path, out: Path) -> int:
    """Copy the dataset's non-video files (split lists, annotations, the synthetic set's masks);
    not hidden files or folders, nor checkpoints (a fitted flow cached beside the set)."""
    copied = 0
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if (not path.is_file() or path.suffix.lower() in VIDEO_EXTENSIONS + (".pt",)
                or any(part.startswith(".") for part in rel.parts) or path.stat().st_size > COPY_LIMIT):
            continue
        target = out / rel
        if not target.exists() or target.stat().st_size != path.stat().st_size:
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
        copied += 1
    return copied


def _mirror_one(gen, cfg: MirrorConfig, record: VideoRecord, rel: str, out: Path, sample: bool = False,
                settings: MirrorSettings | None = None) -> dict:
    """Decode, generate and write one video (the serial loop); returns its manifest entry
    (``skipped`` set when unusable). ``settings``: the mirror's (the residual storage records its flow)."""
    item = decode_one(record, rel, cfg.decode_size, cfg.stride)
    if "video" not in item:
        return item["entry"]
    if gen.seed is not None:
        gen.seed = video_seed(cfg.seed, rel)
    if cfg.storage == "residual":          # the frames only for a sampled video's check
        batcher = WindowBatcher(gen, cfg.frames, cfg.stride, cfg.batch, cfg.device, per_video=True,
                                residual=settings.flow_resolution, keep_frames=lambda _: sample)
        done = list(batcher([item]))[0]
        fields = write_one(out, rel, done.get("out"), item["fps"], cfg.storage, sample, residual=done["residual"],
                           source=item["video"], header=residual_header(settings, item["entry"]))
        return video_entry(done, fields, gen.last_backend)
    frames, preserved, windows = generate_video(gen, item["video"], cfg.frames, cfg.stride, cfg.batch, cfg.device)
    fields = write_one(out, rel, frames, item["fps"], cfg.storage, sample)
    return video_entry({**item, "shape": tuple(frames.shape[:3]), "preserved": preserved, "windows": windows},
                       fields, gen.last_backend)


def generate_mirror(cfg: MirrorConfig) -> MirrorReport:
    """Write (or continue) the mirror of ``cfg``'s videos into ``cfg.out``; see the module docstring."""
    shard, shards = _shard(cfg)
    if cfg.storage not in STORAGES:
        raise ValueError(f"unknown storage {cfg.storage!r}; expected one of {sorted(STORAGES)}")
    if cfg.workers < 0:
        raise ValueError(f"workers must be >= 0 (0: the serial loop), got {cfg.workers}")
    out = Path(cfg.out)
    root, records = dataset_records(cfg)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise ValueError(f"the mirror folder {out} must lie outside the dataset {root}")
    _check_containers(records, cfg.storage)
    gen, settings, flow = mirror_generator(cfg)
    pin_settings(out, settings)
    if cfg.method == "s2vc" and shard == 0:
        from ..flow.fit_check import check_flow_for_dataset
        # the training split in its list's order (never a test video), as train-flow measured the
        # check's own figure and as pretrain checks: the same 32 videos (the mirror's records are
        # sorted by path, and evenly spaced picks of another order are other videos)
        report = check_flow_for_dataset(flow, dataset=cfg.dataset, root=cfg.root, fold=cfg.fold,
                                        synthetic=cfg.synthetic, decode_size=cfg.decode_size,
                                        strict=cfg.require_flow_fit)
        if cfg.progress or report.fits is False:
            tqdm.write(f"mirror: {report.message}", file=sys.stderr)
    if shard == 0:
        _copy_side_files(root, out)
    rels = [r.path.relative_to(root).as_posix() for r in records]
    done = read_parts(out)
    mine = [(r, rel) for k, (r, rel) in enumerate(zip(records, rels)) if k % shards == shard]
    todo = [(r, rel) for r, rel in mine if rel not in done or not _still_valid(done[rel], r, out, cfg.storage)]
    report = MirrorReport(out=out, shard=(shard, shards), reused=len(mine) - len(todo))
    writer = PartWriter(out, shard, shards)
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"mirror {shard + 1}/{shards}", unit="video", disable=not cfg.progress,
               dynamic_ncols=True)

    def done(entry: dict) -> None:
        writer.add(entry)
        bar.update(1)
        if entry.get("skipped"):
            report.skipped[entry["path"]] = entry["skipped"]
            log.warning("skipped %s: %s", entry["path"], entry["skipped"])
        else:
            report.written += 1
            report.frames += entry["frames"]
            report.windows += entry["windows"]
        elapsed = time.perf_counter() - start
        bar.set_postfix(fps=f"{report.frames / elapsed:.0f}", clips_s=f"{report.windows / elapsed:.1f}",
                        skipped=len(report.skipped))

    try:
        if cfg.workers > 0 and todo:
            run_pipeline(gen, cfg, todo, out, done, settings=settings)
        else:
            for record, rel in todo:
                done(_mirror_one(gen, cfg, record, rel, out, sample=report.written % SAMPLE_EVERY == 0,
                                 settings=settings))
    finally:
        writer.close()
        bar.close()
    report.seconds = time.perf_counter() - start
    mark_done(out, shard, shards, {"shard": shard, "written": report.written, "reused": report.reused,
                                   "skipped": len(report.skipped), "frames": report.frames,
                                   "windows": report.windows, "seconds": round(report.seconds, 3),
                                   "workers": cfg.workers})
    report.manifest = merge_if_complete(out, shards, rels)
    return report


def _check_containers(records, storage: str) -> None:
    """A frame storage writes each video at its own path (the mirror reads as the dataset does):
    refuse, before any work, videos whose container the writer cannot hold frames in (.mpg:
    MPEG-PS has no lossless codec), naming the storage that works for them."""
    if storage == "residual":
        return                                   # <rel>.residual: any source container
    from s2vc.engine.video_write import CONTAINER_FORMATS, STORAGES
    writable = sorted(s for s, fmt in CONTAINER_FORMATS.items() if fmt in STORAGES.get(storage, {}))
    bad = sorted({r.path.suffix.lower() or "(none)" for r in records} - set(writable))
    if bad:
        first = next(r.path for r in records if (r.path.suffix.lower() or "(none)") in bad)
        raise ValueError(f"the mirror writes each video at its own path, and storage {storage!r} cannot write "
                         f"{', '.join(bad)} videos (first: {first}); use --storage residual (any container), or "
                         f"convert the set to one of {writable}")


def _still_valid(entry: dict, record: VideoRecord, out: Path, storage: str = "lossless") -> bool:
    """A recorded video counts as done while its source is unchanged and its file is there."""
    stamp = source_stamp(record.path)
    if any(entry.get(k) != v for k, v in stamp.items()):
        return False
    return bool(entry.get("skipped")) or mirror_file(out, entry["path"], storage).is_file()


def describe(report: MirrorReport) -> str:
    """The closing lines of a generation: counts, frames/s and clips/s of this process."""
    lines = [f"shard {report.shard[0] + 1}/{report.shard[1]}: {report.written} videos written, "
             f"{report.reused} already there, {len(report.skipped)} skipped; {report.frames} frames / "
             f"{report.windows} clips in {report.seconds:.1f} s = {report.frames_per_s:.1f} frames/s, "
             f"{report.clips_per_s:.2f} clips/s"]
    for rel, why in list(report.skipped.items())[:10]:
        lines.append(f"  skipped {rel}: {why}")
    if len(report.skipped) > 10:
        lines.append(f"  ... and {len(report.skipped) - 10} more (listed in the manifest)")
    lines.append(f"manifest: {report.manifest}" if report.manifest else
                 "manifest: not yet (other shards are still running; the last to finish writes it)")
    return "\n".join(lines)


__all__ = ["METHODS", "MirrorConfig", "MirrorReport", "describe", "mirror_generator",
           "generate_mirror", "generate_video", "mirror_windows", "video_seed"]   # the last three: mirror_pipeline's
