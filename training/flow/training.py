"""Maximum-likelihood training of the flow on frames: ``train_flow(FlowTrainConfig(...))``
(``s2vc train-flow`` is its command).

Uniform dequantisation, Adam (as AdvFlow), bits/dim per epoch on the training batches and on a
held-out split, atomic checkpoints after every epoch and when a time budget ends, ``resume``
continuing where a killed run stopped (mid-epoch too), a progress bar with ETA and TensorBoard
scalars. The frames: named files or a dataset's training split (``training/flow/data.py``).
When training ends, alpha is calibrated on windows of training videos for ``preserve`` and
stored in the checkpoint (meta["alpha"], the clip it was read off as meta["alpha_frames"] /
["alpha_stride"], meta["alpha_calibration"]) beside the held-out bits/dim
(meta["heldout_bpd"]); a checkpoint of an unfinished run has no alpha yet.

Under torchrun every process trains on its own shard (dataset) or its own random crops (files)
with its own seed, DistributedDataParallel averages the gradients (gloo on CPU, nccl on CUDA),
rank 0 scores, calibrates and writes. ``amp`` trains in mixed precision on CUDA.

Files written for ``out=CKPT``:
    CKPT              the flow (config + weights + hash + training record), what load_flow reads
    CKPT.resume.pt    optimizer, position, every process's RNG state and history: what
                      ``resume=True`` reads
    CKPT.logs/        TensorBoard event files (unless ``tensorboard`` names another folder)
"""
from __future__ import annotations

import copy
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from s2vc.engine.calibrate import Calibration, latent_stds
from s2vc.engine.checkpoint import (atomic_torch_save, flow_checkpoint, flow_from_checkpoint, load_flow,
                                    read_checkpoint)
from s2vc.engine.flow import AdvFlow, FlowConfig
from s2vc.engine.suppression import alpha_for_preserved_fraction

from ..distributed import barrier, gather_objects, setup_distributed
from .bpd import evaluate_bpd, heldout_bpd, mean_and_se, view_bpds  # noqa: F401  (re-exported)
from .config import FlowTrainConfig
from .data import FlowData, build_flow_data, calibration_plan

__all__ = ["FlowTrainConfig", "train_flow", "evaluate_bpd", "calibrate_alpha", "heldout_bpd", "resume_path"]

MAX_SKIPPED_STEPS = 10


def resume_path(out: str | os.PathLike) -> Path:
    """The resume file of the checkpoint ``out``: ``out``.resume.pt."""
    out = Path(out)
    return out.with_name(out.name + ".resume.pt")


def calibrate_alpha(flow: AdvFlow, videos: list[Path], *, preserve: float, clip_len: int, size: int,
                    windows_per_video: int, checkpoint: str | os.PathLike = "", stride: int = 1) -> Calibration:
    """The alpha at which ``flow`` keeps ``preserve`` of the latents of windows of ``clip_len``
    frames ``stride`` apart (the pretraining clip) of ``videos`` (decoded at shorter side
    ``size``); runs on a CPU copy of the flow."""
    cpu_flow = copy.deepcopy(flow).cpu().eval()
    stds = latent_stds(cpu_flow, videos, clip_len=clip_len, size=size, max_windows=windows_per_video, stride=stride)
    return Calibration(checkpoint=Path(checkpoint), videos=list(videos), clip_len=clip_len, size=size,
                       windows=len(stds), preserve=preserve,
                       alpha=alpha_for_preserved_fraction(stds, preserve), table=[], stride=stride)


class _BitsPerDim(torch.nn.Module):
    """The training loss as a forward, which DistributedDataParallel needs to sync gradients:
    frames float (N, 3, r, r) in [0, 1] -> mean bits/dim, a scalar."""

    def __init__(self, flow: AdvFlow):
        super().__init__()
        self.flow = flow

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.flow.bits_per_dim(frames)


@dataclass
class _Run:
    """The state a run carries from step to step (and saves for ``resume``). ``epoch``:
    finished epochs; ``epoch_step``: iterations done in the current one (skipped ones too);
    ``step``: optimizer steps (the schedule's clock); ``seconds``: training time so far."""

    cfg: FlowTrainConfig
    flow: AdvFlow
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    rng: np.random.Generator
    device: torch.device
    rank: int = 0
    world: int = 1
    history: list[dict] = field(default_factory=list)
    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    seconds: float = 0.0
    loss_sum: float = 0.0
    loss_count: int = 0
    skipped_steps: int = 0
    stopped: str | None = None
    calibration: dict | None = None
    fit_views: dict | None = None           # how the held-out figure was measured (the fit check's views)
    log: Callable[[str], None] = print      # rank 0's lines (a no-op on the others)

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.cfg.steps_per_epoch


def _learning_rate(run: _Run) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``cfg.lr`` over the whole run (over the
    time budget when that ends first)."""
    cfg = run.cfg
    progress = run.step / max(1, run.total_steps)
    if cfg.minutes is not None:
        progress = max(progress, run.seconds / (60.0 * cfg.minutes))
    warm = min(1.0, (run.step + 1) / max(1, cfg.warmup_steps))
    return cfg.lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def _new_flow(cfg: FlowTrainConfig) -> AdvFlow:
    if cfg.init:
        return load_flow(cfg.init)
    return AdvFlow(FlowConfig(resolution=cfg.resolution, high_blocks=cfg.high_blocks, low_blocks=cfg.low_blocks,
                              fc_blocks=cfg.fc_blocks, hidden=cfg.hidden, fc_hidden=cfg.fc_hidden))


def _rng_of(run: _Run) -> dict:
    return {"numpy_rng": run.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}


def _start(cfg: FlowTrainConfig, device: torch.device, rank: int, world: int, log) -> _Run:
    """A new run, or the one saved in OUT.resume.pt when ``cfg.resume`` and it exists."""
    resume_file = resume_path(cfg.out)
    state = None
    if cfg.resume and resume_file.exists():
        state = read_checkpoint(resume_file)
        flow = flow_from_checkpoint(state["flow"], source=str(resume_file))
        log(f"resuming from {resume_file} after epoch {state['epoch']}, step {state.get('epoch_step', 0)} of it")
    else:
        flow = _new_flow(cfg)
        if cfg.resume:
            log(f"no {resume_file} yet: starting a new run")
    flow.to(device).train()
    flow.requires_grad_(True)
    model: torch.nn.Module = _BitsPerDim(flow)
    if world > 1:   # rank 0's weights are broadcast here, so every process starts alike
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    seed = cfg.seed if rank == 0 else [cfg.seed, rank]     # rank 0 draws what a single process draws
    run = _Run(cfg, flow, model, torch.optim.Adam(flow.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
               torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"),
               np.random.default_rng(seed), device, rank, world, log=log)
    if state is not None:
        _restore(run, state, log)
    return run


def _restore(run: _Run, state: dict, log) -> None:
    """Position, optimizer, history and this process's RNGs from a resume file (files of the
    earlier single-process code have no per-process states and no mid-epoch position)."""
    run.opt.load_state_dict(state["optimizer"])
    run.history = list(state["history"])
    run.epoch, run.step = int(state["epoch"]), int(state["step"])
    run.epoch_step = int(state.get("epoch_step", 0))
    run.seconds = float(state.get("seconds", 0.0))
    run.loss_sum, run.loss_count = state.get("epoch_loss", (0.0, 0))
    run.skipped_steps = int(state.get("skipped_steps", 0))
    if "scaler" in state and run.scaler.is_enabled():
        run.scaler.load_state_dict(state["scaler"])
    ranks = state.get("ranks") or [{"numpy_rng": state["numpy_rng"], "torch_rng": state["torch_rng"]}]
    if len(ranks) == run.world:
        run.rng.bit_generator.state = ranks[run.rank]["numpy_rng"]
        torch.set_rng_state(ranks[run.rank]["torch_rng"])
    else:       # another number of processes: fresh streams, seeded by the position
        log(f"resume: the run had {len(ranks)} processes, this one {run.world}; reseeding every process")
        run.rng = np.random.default_rng([run.cfg.seed, run.rank, run.step])
        torch.manual_seed(run.cfg.seed + 1000 * run.step + run.rank)


def _any_rank(flag: bool, run: _Run) -> bool:
    """True when ``flag`` is true on any process."""
    if run.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=run.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _rank0_seconds(seconds: float, run: _Run) -> float:
    """Rank 0's clock on every process, so all of them take the same schedule and stop together."""
    if run.world == 1:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=run.device)
    dist.broadcast(t, src=0)
    return float(t.item())


def _step(run: _Run, train) -> float | None:
    """One iteration on a batch of ``train``; the loss, or None when it was not finite (on any
    process) and the step was skipped."""
    cfg = run.cfg
    batch = train.sample(cfg.batch_size, run.rng).to(run.device)
    for group in run.opt.param_groups:
        group["lr"] = _learning_rate(run)
    with torch.autocast(run.device.type, enabled=run.scaler.is_enabled()):
        loss = run.model(batch)
    run.opt.zero_grad(set_to_none=True)
    if _any_rank(not bool(torch.isfinite(loss)), run):
        run.skipped_steps += 1
        if run.skipped_steps > MAX_SKIPPED_STEPS:
            raise RuntimeError(f"train-flow: more than {MAX_SKIPPED_STEPS} non-finite losses; lower --lr "
                               "or check the data")
        if run.world > 1:   # every process must join the gradient all-reduce: a zero gradient
            (sum(p.sum() for p in run.flow.parameters()) * 0.0).backward()
            run.opt.zero_grad(set_to_none=True)
        return None
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.opt)
    torch.nn.utils.clip_grad_norm_(run.flow.parameters(), cfg.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.step += 1
    return loss.item()


def _record(run: _Run, val_views: torch.Tensor | None, writer, seconds: float, **extra) -> dict:
    """Score the held-out views (rank 0), append the history entry of the epoch (or part of one)
    just done, log it."""
    done = run.epoch + run.epoch_step / run.cfg.steps_per_epoch
    train_bpd = run.loss_sum / run.loss_count if run.loss_count else math.nan
    val_bpd = evaluate_bpd(run.flow, val_views) if val_views is not None else None
    entry = {"epoch": run.epoch if run.epoch_step == 0 else round(done, 3), "train_bpd": train_bpd,
             "val_bpd": val_bpd, "seconds": seconds, **extra}
    run.history.append(entry)
    if writer is not None:
        writer.add_scalar("bpd/train", train_bpd, run.step)
        if val_bpd is not None:
            writer.add_scalar("bpd/val", val_bpd, run.step)
        writer.flush()
    run.log(f"epoch {entry['epoch']}: train {train_bpd:.3f} bits/dim"
            + (f", held-out {val_bpd:.3f}" if val_bpd is not None else "") + f" ({seconds:.0f} s)"
            + (f"; stopped: {extra['stopped']}" if "stopped" in extra else ""))
    return entry


def _save(run: _Run, data: FlowData) -> None:
    """The flow to OUT and the whole run to OUT.resume.pt, each atomically, by rank 0 (every
    process's RNG state is gathered first, so each resumes its own streams)."""
    ranks = gather_objects(_rng_of(run), run.world)
    if run.rank != 0:
        return
    cfg, out = run.cfg, Path(run.cfg.out)
    meta = {"command": cfg.command, "data": None, "val_data": None, **data.record,
            "epochs_done": run.epoch, "steps": run.step, "history": run.history,
            "heldout_bpd": heldout_bpd(run.history), "train_seconds": run.seconds, "minutes": cfg.minutes,
            "stopped": run.stopped, "torch": str(torch.__version__), "machine": platform.machine(),
            "processes": run.world, "skipped_files": data.skipped}
    for extra in (run.calibration, run.fit_views):
        meta.update(extra or {})
    ckpt = flow_checkpoint(run.flow, meta)
    atomic_torch_save(ckpt, out)
    state = {"flow": ckpt, "optimizer": run.opt.state_dict(), "epoch": run.epoch, "epoch_step": run.epoch_step,
             "step": run.step, "seconds": run.seconds, "epoch_loss": (run.loss_sum, run.loss_count),
             "skipped_steps": run.skipped_steps, "history": run.history, "ranks": ranks, **ranks[0]}
    if run.scaler.is_enabled():
        state["scaler"] = run.scaler.state_dict()
    atomic_torch_save(state, resume_path(out))


def _train(run: _Run, data: FlowData, writer) -> None:
    """Iterations until ``epochs`` are done or the time budget is spent; a history entry and a
    checkpoint after every epoch and at a stop mid-epoch."""
    cfg, spe = run.cfg, run.cfg.steps_per_epoch
    budget = None if cfg.minutes is None else 60.0 * cfg.minutes
    bar = tqdm(total=run.total_steps, initial=min(run.total_steps, run.epoch * spe + run.epoch_step),
               desc="train-flow", unit="step", disable=not cfg.progress or run.rank != 0, file=sys.stderr)
    t0, seconds0, epoch_t0 = time.perf_counter(), run.seconds, run.seconds
    unrecorded = 0      # iterations of this call since the last history entry
    while run.epoch < cfg.epochs:
        run.seconds = _rank0_seconds(seconds0 + time.perf_counter() - t0, run)
        if budget is not None and run.seconds >= budget:
            run.stopped = f"time budget of {cfg.minutes:g} min spent after {run.step} steps"
            break
        loss = _step(run, data.train)
        run.epoch_step += 1
        unrecorded += 1
        if loss is not None:
            run.loss_sum, run.loss_count = run.loss_sum + loss, run.loss_count + 1
            bar.set_postfix(epoch=f"{run.epoch + 1}/{cfg.epochs}", bpd=f"{loss:.3f}",
                            **({"budget_left": f"{max(0.0, budget - run.seconds) / 60:.1f}min"} if budget else {}))
            if writer is not None:
                writer.add_scalar("bpd/train_step", loss, run.step)
        bar.update(1)
        if run.epoch_step == spe:
            run.epoch, run.epoch_step = run.epoch + 1, 0
            run.seconds = seconds0 + time.perf_counter() - t0     # this clock only records and saves
            if run.rank == 0:
                _record(run, data.val_views, writer, run.seconds - epoch_t0)
            run.loss_sum, run.loss_count, epoch_t0, unrecorded = 0.0, 0, run.seconds, 0
            _save(run, data)
    bar.close()
    if run.stopped and run.epoch_step and unrecorded:          # the part of an epoch done before the budget ran out
        if run.rank == 0:
            _record(run, data.val_views, writer, run.seconds - epoch_t0, stopped=run.stopped)
        _save(run, data)


def _finish(run: _Run, data: FlowData) -> None:
    """Calibrate alpha on windows of training videos (rank 0), record how the held-out figure was
    measured and its noise (what the fit check compares with), write the final checkpoint."""
    cfg = run.cfg
    if run.rank == 0:
        views = {"decode_size": cfg.decode_size, "views": "centre square of whole frames"}
        if data.val_views is not None:
            _, se, sources = mean_and_se(view_bpds(run.flow, data.val_views), data.val_sources)
            views.update(heldout_bpd_se=se, heldout_sources=sources)
        if data.check_videos:      # the fit check's own figure on this data: what it compares with
            from .fit_check import own_data_figure
            try:
                views.update(own_data_figure(run.flow, data.check_videos, cfg.decode_size))
            except ValueError as e:  # nothing decodable for it: keep the weights, the held-out figure stands
                run.log(f"train-flow: the fit check's own figure was not measured ({e})")
        run.fit_views = {"fit_views": views}
    if run.rank == 0:
        videos, windows = calibration_plan(data.calibration_videos)
        try:
            cal = calibrate_alpha(run.flow, videos, preserve=cfg.preserve, clip_len=cfg.clip_len,
                                  size=cfg.decode_size, windows_per_video=windows, checkpoint=cfg.out,
                                  stride=cfg.stride)
        except ValueError as e:     # no video has clip_len frames (or none at all): keep the weights
            run.log(f"train-flow: alpha not calibrated ({e}); the checkpoint has no meta['alpha']")
        else:
            run.calibration = cal.meta()
            run.log(f"alpha {cal.alpha:.4f} keeps {cfg.preserve:.1%} of the latents ({cal.windows} windows of "
                    f"{cfg.clip_len} frames {cfg.stride} apart of {len(videos)} training videos)")
    _save(run, data)


def train_flow(cfg: FlowTrainConfig, log=None) -> dict:
    """Train; returns {"history": per epoch train and held-out bits/dim and seconds, "skipped":
    files that could not be decoded, "out": the checkpoint, "alpha": the calibrated alpha (None
    when no window could be read), "heldout_bpd", "stopped": why the run ended early (None when
    every epoch ran)}. ``log`` takes one line at a time (default: above the progress bar)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    rank, world = setup_distributed(device) if cfg.distributed else (0, 1)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    log = log or tqdm.write
    say = log if rank == 0 else (lambda line: None)
    if cfg.amp and device.type != "cuda":
        say("train-flow: --amp works on CUDA only; training in float32")
    torch.manual_seed(cfg.seed + rank)
    data = build_flow_data(cfg, rank, world, say)
    say(f"train-flow: {len(data.train.sources)} training sources ({data.train.num_frames} frames)"
        + (f" per process x {world}" if world > 1 else "")
        + f", {0 if data.val_views is None else data.val_views.shape[0]} held-out views, "
        f"{len(data.skipped)} skipped files")
    run = _start(cfg, device, rank, world, say)

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(cfg.tensorboard or f"{cfg.out}.logs")
        if not run.history and data.val_views is not None:
            untrained = evaluate_bpd(run.flow, data.val_views)
            say(f"epoch 0 (untrained): held-out {untrained:.3f} bits/dim")
            run.history.append({"epoch": 0, "train_bpd": None, "val_bpd": untrained, "seconds": 0.0})
            writer.add_scalar("bpd/val", untrained, 0)
    try:
        _train(run, data, writer)
        _finish(run, data)
    finally:
        if writer is not None:
            writer.close()
    barrier(world)
    return {"history": run.history, "skipped": data.skipped, "out": str(cfg.out),
            "alpha": (run.calibration or {}).get("alpha"), "heldout_bpd": heldout_bpd(run.history),
            "stopped": run.stopped}
