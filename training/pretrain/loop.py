"""MoCo pretraining whose positives are made on the fly by the generator: ``pretrain(cfg)``.

The key of each mode (s2vc, moco, tfd, oracle) is made by ``training/pretrain/keys.py``; everything else
is one code path. Settings: ``PretrainConfig`` (``training/pretrain/config.py``), the flags of
``s2vc pretrain``.

Distributed with torchrun (gloo on CPU, nccl on GPU): ``torchrun --nproc-per-node N -m
s2vc.cli pretrain ...``. Checkpoints (RUN/checkpoint.pt) are written atomically every
``ckpt_every`` steps and at each epoch end and hold everything ``resume`` needs to continue
exactly: model (query and key encoders, queue), optimizer, epoch, step, RNG states of every
process, the settings (``PretrainConfig.to_dict``). ``snapshot_every`` also keeps the model
alone every N steps (RUN/snapshots/step_NNNNNN.pt), what the learning curves evaluate.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from s2vc.engine.checkpoint import atomic_torch_save, atomic_write_text, load_flow

from ..distributed import ResumableSampler, barrier, gather_objects, rng_state, set_rng_state, setup_distributed
from .keys import MODES, PREGENERATED_MODES, KeyMaker, OracleKeys
from ..models import Encoder
from ..run_files import CHECKPOINT, snapshot_path
from .moco import MoCo
from .rng import isolated_rng
from .config import RESUME_MUST_MATCH, PretrainConfig, describe_changes
from .curves import write_run_curves
from .video_log import log_clip_pair
from ..data.transforms import normalize_clip

__all__ = ["MODES", "CHECKPOINT", "RESUME_MUST_MATCH", "PretrainConfig", "pretrain", "learning_rate",
           "snapshot_path", "snapshots", "build_data", "mirror_expectations", "setup_run", "check_inputs",
           "time_steps"]


def snapshots(run: str | Path) -> dict[int, Path]:
    """The snapshots of a run folder, {step: path}, in step order."""
    found = sorted((Path(run) / "snapshots").glob("step_*.pt"))
    return {int(p.stem.removeprefix("step_")): p for p in found}


def learning_rate(cfg: PretrainConfig, epoch_float: float) -> float:
    """Linear warm-up over ``warmup_epochs``, then x0.1 at each of ``lr_steps`` (the paper's schedule)."""
    lr = cfg.lr * min(1.0, (epoch_float + 1e-9) / cfg.warmup_epochs) if cfg.warmup_epochs > 0 else cfg.lr
    return lr * 0.1 ** sum(epoch_float >= s for s in cfg.lr_steps)


def build_data(cfg: PretrainConfig, rank: int = 0, world: int = 1, flow=None):
    """(dataset, sampler, loader) of two-clip training items: "q" and "k" (3, T, H, W) in [0, 1]
    after the query / key augmentations, plus "k_mask" (1, T, H, W) for the oracle."""
    from ..data.datasets import build_dataset, collate_clips
    from ..data.transforms import key_transform, query_transform
    oracle = cfg.mode == "oracle"
    keys = {"path": cfg.keys, "expect": mirror_expectations(cfg, flow)} if cfg.keys else None
    ds = build_dataset(cfg.dataset, cfg.root, split="train", fold=cfg.fold, frames=cfg.frames, stride=cfg.stride,
                       size=cfg.decode_size, two_clips=True, transform_q=query_transform(cfg.size),
                       transform_k=None if oracle else key_transform(cfg.size), strict=cfg.strict, seed=cfg.seed,
                       cache_videos=cfg.cache_videos,
                       synthetic=cfg.synthetic if cfg.dataset == "synthetic" else None, keys=keys)
    if cfg.cache_videos:
        # decoded here, before the DataLoader forks its workers: they share the frames (copy on
        # write) instead of each decoding its own copy every epoch
        t0 = time.perf_counter()
        kept = ds.preload()
        if rank == 0:
            print(f"pretrain: {kept}/{len(ds)} videos decoded into memory in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
    if oracle:
        ds = OracleKeys(ds, ds.root, key_transform(cfg.size))
    sampler = ResumableSampler(len(ds), cfg.batch_size, cfg.seed, rank, world)
    # pinned batches make the step's non_blocking copies to the GPU asynchronous; workers persist
    # across epochs (the dataset's epoch is in shared memory, so they still draw new clips)
    on_cuda = torch.cuda.is_available() and torch.device(cfg.device or "cuda").type == "cuda"
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                                         collate_fn=collate_clips, drop_last=True, pin_memory=on_cuda,
                                         generator=torch.Generator().manual_seed(cfg.seed),
                                         persistent_workers=cfg.workers > 0)
    return ds, sampler, loader


def check_flow(cfg: PretrainConfig, flow=None):
    """The domain check before an s2vc run: the flow's bits/dim on a sample of the training
    frames against its own held-out figure (``training/flow/fit_check.py``); says so, with the command
    that fits a flow, when it does not fit; ``require_flow_fit`` makes that fatal."""
    from ..flow.fit_check import check_flow_for_dataset
    report = check_flow_for_dataset(flow if flow is not None else cfg.flow, cfg.dataset, cfg.root, cfg.fold,
                                    cfg.synthetic if cfg.dataset == "synthetic" else None,
                                    decode_size=cfg.decode_size, strict=cfg.require_flow_fit)
    tqdm.write(f"pretrain: {report.message}", file=sys.stderr)
    return report


def mirror_expectations(cfg: PretrainConfig, flow=None) -> dict:
    """What a mirror must have been generated with to serve this run's keys (``--keys``): the
    dataset, the clip's frames, stride and decode size, the mode, the flow, and for s2vc the
    alpha (the flow's calibrated one when none is given) and the strategy. ``flow``: the run's
    flow when loaded already (else ``cfg.flow`` is loaded)."""
    from s2vc.engine import load_flow
    from s2vc.engine.suppression import resolve_alpha, resolve_keep_fraction
    flow = flow if flow is not None else load_flow(cfg.flow)
    expect = {"dataset": cfg.dataset, "fold": cfg.fold, "frames": cfg.frames, "stride": cfg.stride,
              "decode_size": cfg.decode_size, "method": cfg.mode, "flow_sha256": flow.sha256 or "",
              "flow_resolution": flow.config.resolution}
    if cfg.mode == "s2vc":
        expect.update(alpha=resolve_alpha(flow, cfg.alpha), strategy=cfg.strategy)
        if cfg.strategy == "topk":
            expect["keep_fraction"] = resolve_keep_fraction(flow, cfg.keep_fraction)
    return expect


@dataclass
class _Run:
    """One process's view of a run: what setup built and where the loop stands."""

    cfg: PretrainConfig                # with the alpha actually used (the flow's, when not given)
    out: Path
    device: torch.device
    rank: int
    world: int
    ds: object
    sampler: ResumableSampler
    loader: torch.utils.data.DataLoader
    model: torch.nn.Module             # MoCo, DDP-wrapped when world > 1
    moco: MoCo                         # the unwrapped one (what checkpoints hold)
    opt: torch.optim.Optimizer
    keys: KeyMaker
    scaler: torch.amp.GradScaler
    writer: object = None              # TensorBoard, rank 0 only
    bar: object = None                 # progress over the whole run (steps), with its ETA
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)

    @property
    def ckpt_path(self) -> Path:
        return self.out / CHECKPOINT

    @property
    def finished(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps


def pretrain(cfg: PretrainConfig) -> dict:
    """Pretrain (or continue, with ``cfg.resume``); returns {"history": per-step records of this
    process (loss, lr, acc, preserved, timings), "out": the run folder}. Raises ValueError for
    settings that cannot work or that differ from the checkpoint being resumed."""
    cfg.check()
    run = setup_run(cfg)
    try:
        if cfg.snapshot_every and run.step == 0:
            _save_snapshot(run, 0)                 # the random initialisation: where every curve starts
        if run.finished and run.step == 0:         # --max-steps 0: the start every arm of the seed shares
            _save_checkpoint(run, 0, 0)
            if run.rank == 0:
                print(f"pretrain: the initial state (step 0) written to {run.ckpt_path}", file=sys.stderr)
        elif run.finished and run.rank == 0:
            print(f"pretrain: {run.ckpt_path} has already run {run.step} >= --max-steps {cfg.max_steps} steps",
                  file=sys.stderr)
        total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * run.sampler.batches_per_epoch
        run.bar = tqdm(total=max(total, run.step), initial=run.step, desc=f"pretrain {cfg.mode}", unit="step",
                       disable=cfg.no_progress or run.rank != 0, file=sys.stderr, leave=False)
        start_epoch = run.epoch
        for epoch in range(start_epoch, cfg.epochs if not run.finished else start_epoch):
            _train_epoch(run, epoch, run.batch_in_epoch if epoch == start_epoch else 0)
            if run.finished:
                if cfg.snapshot_every and run.step % cfg.snapshot_every:
                    _save_snapshot(run, epoch)     # the last step is evaluated too
                _save_checkpoint(run, epoch, run.batch_in_epoch)
                break
            _save_checkpoint(run, epoch + 1, 0)
            _report_epoch(run, epoch)
    finally:
        if run.bar is not None:
            run.bar.close()
        if run.writer is not None:
            run.writer.close()
    if run.rank == 0:                              # RUN/curves.png: the loss (and any scored snapshot)
        write_run_curves(run.out, run.history, title=f"pretrain {cfg.mode}: {run.out.name}")
    barrier(run.world)
    return {"history": run.history, "out": str(run.out)}


# -- setup ------------------------------------------------------------------------------------
def setup_run(cfg: PretrainConfig) -> "_Run":
    """Device, process group, seeds, data, model, optimizer, key maker; then the checkpoint's
    state when resuming. The order is fixed: it decides what the seeded RNGs draw. The run folder
    is made after the cheap checks (``check_inputs``) and removed again when setup fails before
    anything is written in it."""
    check_inputs(cfg)                          # before the run folder exists: a typo leaves nothing behind
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world = setup_distributed(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if cfg.batch_size * world > cfg.queue or cfg.queue % (cfg.batch_size * world):
        raise ValueError(f"the queue ({cfg.queue}) must be a multiple of the global batch "
                         f"({cfg.batch_size} x {world} processes)")
    out = Path(cfg.out)
    created = [f for f in (out, *out.parents) if not f.exists()]    # deepest first
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _build_run(cfg, out, device, rank, world)
    except BaseException:
        # a run that failed before writing anything leaves no empty folder; one that wrote
        # something (a checkpoint resumed, logs) keeps it
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def check_inputs(cfg: PretrainConfig) -> None:
    """The cheap preconditions of a run, checked before its folder is made: the flow checkpoint
    (modes that use one) and the mirror of ``--keys`` exist. FileNotFoundError names the path."""
    if cfg.mode in PREGENERATED_MODES and cfg.flow not in (None, "bundled") and not Path(cfg.flow).is_file():
        raise FileNotFoundError(f"flow checkpoint not found: {cfg.flow}")
    if cfg.keys is not None and not Path(cfg.keys).is_dir():
        raise FileNotFoundError(f"--keys {cfg.keys}: no such folder (a mirror made by s2vc generate --dataset ... "
                                f"--out MIRROR)")


def _build_run(cfg: PretrainConfig, out: Path, device: torch.device, rank: int, world: int) -> "_Run":
    """``setup_run`` once the run folder ``out`` exists: seeds, model, flow, data, key maker,
    the checkpoint's state when resuming, the writer and config.json."""
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)

    # the model first, from the freshly seeded streams; everything an arm does differently
    # (its flow, fit check, mirror, key maker) runs with the streams isolated, so every arm of a
    # seed starts from the same weights, queue, clips and augmentations (training/pretrain/rng.py)
    moco = MoCo(Encoder(cfg.backbone, cfg.dim), dim=cfg.dim, K=cfg.queue, m=cfg.moco_m, T=cfg.moco_t).to(device)
    opt = torch.optim.Adam(moco.encoder_q.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    with isolated_rng(device):
        # the flow, loaded once for the fit check, the mirror check and the key maker
        flow = load_flow(cfg.flow, device=device) if cfg.mode in PREGENERATED_MODES else None
        if cfg.mode == "s2vc" and cfg.keys is None and rank == 0:
            check_flow(cfg, flow)
        ds, sampler, loader = build_data(cfg, rank, world, flow)
        keys = KeyMaker(cfg.mode, flow=flow if flow is not None else cfg.flow, alpha=cfg.alpha,
                        strategy=cfg.strategy, keep_fraction=cfg.keep_fraction, detail=cfg.detail,
                        gen_backend=cfg.gen_backend, clamp=cfg.clamp_key, seed=cfg.seed, device=device,
                        pregenerated=cfg.keys is not None)
    if rank == 0 and flow is not None and cfg.mode == "s2vc" and cfg.alpha is None and cfg.strategy != "topk":
        from ..flow.alpha_clip import alpha_clip_note
        note = alpha_clip_note(flow, cfg.frames, cfg.stride, flow_path=cfg.flow, dataset=cfg.dataset, root=cfg.root,
                               fold=cfg.fold, decode_size=cfg.decode_size, synthetic=cfg.synthetic)
        if note:
            tqdm.write(f"pretrain: {note}", file=sys.stderr)
    # the record says which alpha was used, so a resume with the flow's default compares to it
    cfg = dataclasses.replace(cfg, alpha=keys.alpha if keys.alpha is not None else cfg.alpha,
                              keep_fraction=keys.keep_fraction if keys.keep_fraction is not None else cfg.keep_fraction)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    run = _Run(cfg, out, device, rank, world, ds, sampler, loader, moco, moco, opt, keys, scaler)
    if cfg.resume and run.ckpt_path.exists():
        _resume(run)
    if world > 1:
        run.model = torch.nn.parallel.DistributedDataParallel(
            moco, device_ids=[device.index] if device.type == "cuda" else None)
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        run.writer = SummaryWriter(str(out / "logs"))
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2, default=str))
    return run


def _resume(run: _Run) -> None:
    """Load the checkpoint's model, optimizer, position and RNGs; refuse one made with other
    settings (``RESUME_MUST_MATCH``), which would mix two runs. Reads checkpoints of the old
    command-line code too: their ``config`` has the same keys."""
    path = run.ckpt_path
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved = ckpt["config"]
    if saved["backbone"] != run.cfg.backbone:
        raise ValueError(f"{path} is a {saved['backbone']} run, not {run.cfg.backbone}")
    changed = run.cfg.changed_from(saved)
    if changed:
        raise ValueError(f"{path} was trained with other settings than asked, so --resume would mix two runs: "
                         + describe_changes(changed) + "; use another --out or the same settings")
    run.moco.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.epoch, run.batch_in_epoch, run.step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
    run.history = list(ckpt["history"])
    set_rng_state(ckpt["rng"][run.rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
    if run.rank == 0:
        print(f"pretrain: resuming {path} at epoch {run.epoch}, step {run.step}", file=sys.stderr)


def time_steps(run: "_Run", steps: int) -> list[dict]:
    """Run ``steps`` more training steps of a run made by ``setup_run`` (epoch 0 from its start,
    no checkpoints) and return their records ("t_data", "t_gen", "t_model" in seconds): what the
    pretraining benchmark times, mode against mode on one config."""
    run.sampler.set_epoch(0, 0)
    run.ds.set_epoch(0)
    run.model.train()
    records: list[dict] = []
    while len(records) < steps:
        t_data = time.perf_counter()
        for i, batch in enumerate(run.loader):
            if batch["label"].numel() == run.cfg.batch_size:
                records.append(_train_step(run, batch, 0, i, t_data))
            if len(records) == steps:
                break
            t_data = time.perf_counter()
    return records


# -- the loop ---------------------------------------------------------------------------------
def _train_epoch(run: _Run, epoch: int, start_batch: int) -> None:
    """Steps of ``epoch`` from ``start_batch`` on, until the epoch or ``max_steps`` ends;
    checkpoints and snapshots on their cadence. Leaves ``run.batch_in_epoch`` after the last."""
    cfg = run.cfg
    run.sampler.set_epoch(epoch, start_batch)
    run.ds.set_epoch(epoch)
    skipped: list[str] = []
    run.model.train()
    t_data = time.perf_counter()
    for i, batch in enumerate(run.loader, start=start_batch):
        skipped += batch["skipped"]
        run.batch_in_epoch = i + 1
        if batch["label"].numel() != cfg.batch_size:
            # a video of the batch was unusable (counted in "skipped"): the queue takes whole
            # batches only, so this batch is left out
            continue
        rec = _train_step(run, batch, epoch, i, t_data)
        run.bar.set_postfix(epoch=epoch + 1, loss=f"{rec['loss']:.3f}", gen=f"{rec['t_gen']:.2f}s",
                            model=f"{rec['t_model']:.2f}s")
        run.bar.update(1)
        if cfg.snapshot_every and run.step % cfg.snapshot_every == 0:
            _save_snapshot(run, epoch)
        if run.step % cfg.ckpt_every == 0:
            _save_checkpoint(run, epoch, i + 1)
        if run.finished:
            break
        t_data = time.perf_counter()
    if skipped and run.rank == 0:
        tqdm.write(f"epoch {epoch + 1}: skipped {len(skipped)} videos:\n  " + "\n  ".join(sorted(set(skipped))),
                   file=sys.stderr)                 # above the progress bar, not through it


def _train_step(run: _Run, batch: dict, epoch: int, i: int, t_data: float) -> dict:
    """One optimisation step on ``batch`` ("q", "k" (B, 3, T, H, W) in [0, 1]), the ``i``-th of
    ``epoch``; appends and returns its record (loss, lr, acc = share of queries whose positive
    scores highest, preserved, seconds of data / key generation / model)."""
    cfg, device = run.cfg, run.device
    lr = learning_rate(cfg, epoch + i / run.sampler.batches_per_epoch)
    for group in run.opt.param_groups:
        group["lr"] = lr
    q, k = batch["q"].to(device, non_blocking=True), batch["k"].to(device, non_blocking=True)
    t_gen = time.perf_counter()
    with torch.no_grad(), isolated_rng(device):  # the key never moves the augmentations' (or, on
        # CUDA, the shuffle-BN permutation's) streams
        k, preserved = run.keys(k, batch, run.step)
    _sync(device)
    t_model = time.perf_counter()
    with torch.autocast(device.type, enabled=cfg.amp and device.type == "cuda"):
        logits, labels = run.model(normalize_clip(q), normalize_clip(k))
        loss = F.cross_entropy(logits.float(), labels)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss at step {run.step}; lower --lr or check the data")
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    _sync(device)
    t_end = time.perf_counter()
    run.step += 1
    # the step's record reads its numbers back once, here (the key maker's preserved fraction
    # stays a device tensor until now: reading it during the step would wait for the device)
    rec = {"step": run.step, "epoch": epoch, "loss": loss.item(), "lr": lr,
           "acc": (logits.argmax(1) == 0).float().mean().item(), "preserved": float(preserved),
           "t_data": t_gen - t_data, "t_gen": t_model - t_gen, "t_model": t_end - t_model}
    run.history.append(rec)
    if run.writer is not None:
        for key in ("loss", "lr", "acc", "t_data", "t_gen", "t_model"):
            run.writer.add_scalar(f"train/{key}", rec[key], run.step)
        if not math.isnan(rec["preserved"]):
            run.writer.add_scalar("train/preserved", rec["preserved"], run.step)
        if cfg.log_videos and run.step % cfg.log_videos == 0:
            log_clip_pair(run.writer, "train/query_key", q, k, run.step)
    return rec


def _sync(device: torch.device) -> None:
    """Wait for the GPU, so the step's timings measure the work and not its queueing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _report_epoch(run: _Run, epoch: int) -> None:
    """The epoch's mean loss and where a step's time went (rank 0, stderr)."""
    ep = [h for h in run.history if h["epoch"] == epoch]
    if run.rank == 0 and ep:
        mean = {key: np.mean([h[key] for h in ep]) for key in ("loss", "t_data", "t_gen", "t_model")}
        tqdm.write(f"epoch {epoch + 1}: loss {mean['loss']:.4f}, step time data {mean['t_data']:.3f}s / generation "
                   f"{mean['t_gen']:.3f}s / backbone {mean['t_model']:.3f}s", file=sys.stderr)


# -- checkpoints ------------------------------------------------------------------------------
def _save_checkpoint(run: _Run, epoch: int, batch_in_epoch: int) -> None:
    """Everything a resume needs, written atomically by rank 0 (the RNG states of every process
    are gathered first, so each rank resumes its own streams)."""
    rngs = gather_objects(rng_state(), run.world)
    if run.rank == 0:
        atomic_torch_save({"model": run.moco.state_dict(), "optimizer": run.opt.state_dict(), "epoch": epoch,
                           "batch_in_epoch": batch_in_epoch, "step": run.step, "rng": rngs,
                           "history": run.history, "config": run.cfg.to_dict()}, run.ckpt_path)


def _save_snapshot(run: _Run, epoch: int) -> None:
    """The model alone (what the evaluations read), kept beside the resumable checkpoint."""
    if run.rank == 0:
        atomic_torch_save({"model": run.moco.state_dict(), "epoch": epoch, "step": run.step,
                           "config": run.cfg.to_dict()}, snapshot_path(run.out, run.step))
