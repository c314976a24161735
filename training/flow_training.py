"""Maximum-likelihood training of the flow on frames: ``train_flow(FlowTrainConfig(...))``
(``s2vc train-flow`` is its command).

Uniform dequantisation, Adam (as AdvFlow), bits/dim per epoch on the training batches and on a
held-out split, atomic checkpoints after every epoch, ``--resume`` continuing where a killed run
stopped, a progress bar and TensorBoard scalars.

Files written for ``out=CKPT``:
    CKPT              the flow (config + weights + hash + training record), what load_flow reads
    CKPT.resume.pt    optimizer, epoch, RNG state and history: what ``resume=True`` reads
    CKPT.logs/        TensorBoard event files (unless ``tensorboard`` names another folder)
"""
from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from s2vc.engine.checkpoint import (atomic_torch_save, flow_checkpoint, flow_from_checkpoint, load_flow,
                                    read_checkpoint)
from s2vc.engine.flow import AdvFlow, FlowConfig

from .frames import FrameSampler, FrameSource, collect_media, load_sources, split_holdout, synthetic_frames


@dataclass
class FlowTrainConfig:
    """Settings of one flow-training run (``s2vc train-flow`` fills it from its flags).

    data / val_data: video or image files or folders ('samples': the sample media installed
    packages ship); without val_data the last ``holdout`` fraction of each training video is held
    out. out: the checkpoint to write; resume: continue from ``out``.resume.pt if it exists;
    init: start from this flow checkpoint instead of a new flow of the given architecture.
    lr: peak learning rate (linear warm-up over ``warmup_steps``, then cosine to a tenth);
    decode_size: shorter side frames are decoded at; max_frames: frames per video at most;
    synthetic: procedural frames added to training; val_frames: held-out views per source.
    command: the command line recorded in the checkpoint's meta.
    """

    data: list[str]
    out: str
    val_data: list[str] | None = None
    holdout: float = 0.1
    resume: bool = False
    init: str | None = None
    resolution: int = 32
    high_blocks: int = 4
    low_blocks: int = 6
    fc_blocks: int = 6
    hidden: int = 32
    fc_hidden: int = 64
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 50.0
    warmup_steps: int = 100
    decode_size: int = 128
    max_frames: int = 400
    synthetic: int = 0
    val_frames: int = 32
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    tensorboard: str | None = None
    progress: bool = True
    command: str = "s2vc train-flow ..."

    def __post_init__(self):
        if not self.data:
            raise ValueError("train-flow: no training data named (expected video/image files or folders)")
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"train-flow: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"train-flow: holdout must be in [0, 1), got {self.holdout}")


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume.pt")


def evaluate_bpd(flow: AdvFlow, views: torch.Tensor, batch_size: int = 64, seed: int = 1234) -> float:
    """Mean bits/dim of fixed views with fixed dequantisation noise (comparable across epochs)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(views.shape, generator=g)
    was_training = flow.training
    flow.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, views.shape[0], batch_size):
            v = views[i:i + batch_size].to(next(flow.parameters()).device)
            n = noise[i:i + batch_size].to(v.device)
            total += flow.nll_bits_per_dim(v, noise=n).sum().item()
    flow.train(was_training)
    return total / views.shape[0]


def _learning_rate(cfg: FlowTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``cfg.lr`` over the whole run."""
    total = max(1, cfg.epochs * cfg.steps_per_epoch)
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    return cfg.lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, step / total))))


def _build_data(cfg: FlowTrainConfig, log):
    """(training sampler, held-out views float (N, 3, r, r) or None, skipped files)."""
    files = collect_media(cfg.data)
    if not files:
        raise FileNotFoundError(f"train-flow: no video or image files found in {cfg.data} "
                                "(expected video/image files or folders holding them)")
    sources, skipped = load_sources(files, cfg.decode_size, cfg.max_frames, log=log)
    if cfg.val_data:
        val_sources, val_skipped = load_sources(collect_media(cfg.val_data), cfg.decode_size,
                                                cfg.max_frames, log=log)
        skipped += val_skipped
        train_sources = sources
    else:
        train_sources, val_sources = split_holdout(sources, cfg.holdout)
    if cfg.synthetic:
        train_sources.append(FrameSource("synthetic", synthetic_frames(cfg.synthetic, cfg.decode_size, cfg.seed)))
    if not train_sources:
        raise ValueError(f"train-flow: none of the {len(files)} inputs could be decoded "
                         f"(first: {skipped[0] if skipped else 'none'})")
    train = FrameSampler(train_sources, cfg.resolution)
    val_views = FrameSampler(val_sources, cfg.resolution).fixed_views(cfg.val_frames) if val_sources else None
    return train, val_views, skipped


def _new_flow(cfg: FlowTrainConfig) -> AdvFlow:
    if cfg.init:
        return load_flow(cfg.init)
    return AdvFlow(FlowConfig(resolution=cfg.resolution, high_blocks=cfg.high_blocks, low_blocks=cfg.low_blocks,
                              fc_blocks=cfg.fc_blocks, hidden=cfg.hidden, fc_hidden=cfg.fc_hidden))


@dataclass
class _Run:
    """The state a run carries from epoch to epoch (and saves for ``resume``)."""

    flow: AdvFlow
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    history: list[dict]
    epoch: int = 0
    step: int = 0
    skipped_steps: int = 0


def _start(cfg: FlowTrainConfig, device: torch.device, log) -> _Run:
    """A new run, or the one saved in OUT.resume.pt when ``cfg.resume`` and it exists."""
    resume_file = _resume_path(Path(cfg.out))
    state = None
    if cfg.resume and resume_file.exists():
        state = read_checkpoint(resume_file)
        flow = flow_from_checkpoint(state["flow"], source=str(resume_file))
        log(f"resuming from {resume_file} after epoch {state['epoch']}")
    else:
        flow = _new_flow(cfg)
        if cfg.resume:
            log(f"no {resume_file} yet: starting a new run")
    flow.to(device).train()
    flow.requires_grad_(True)
    run = _Run(flow, torch.optim.Adam(flow.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
               np.random.default_rng(cfg.seed), [])
    if state is not None:
        run.opt.load_state_dict(state["optimizer"])
        run.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        run.history = list(state["history"])
        run.epoch, run.step = int(state["epoch"]), int(state["step"])
    return run


def _train_epoch(cfg: FlowTrainConfig, run: _Run, train: FrameSampler, device: torch.device, writer) -> float:
    """One epoch of ``cfg.steps_per_epoch`` steps; returns the mean training bits/dim."""
    run.flow.train()
    losses = []
    bar = tqdm(range(cfg.steps_per_epoch), desc=f"epoch {run.epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
               leave=False, file=sys.stderr)
    for _ in bar:
        batch = train.sample(cfg.batch_size, run.rng).to(device)
        for group in run.opt.param_groups:
            group["lr"] = _learning_rate(cfg, run.step)
        loss = run.flow.bits_per_dim(batch)
        if not torch.isfinite(loss):
            run.skipped_steps += 1
            if run.skipped_steps > 10:
                raise RuntimeError("train-flow: more than 10 non-finite losses; lower --lr or check the data")
            continue
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.flow.parameters(), cfg.grad_clip)
        run.opt.step()
        run.step += 1
        losses.append(loss.item())
        bar.set_postfix(bpd=f"{loss.item():.3f}")
        writer.add_scalar("bpd/train_step", loss.item(), run.step)
    return float(np.mean(losses)) if losses else math.nan


def _save(cfg: FlowTrainConfig, run: _Run, skipped: list[str]) -> None:
    """The flow to OUT and the whole run to OUT.resume.pt, each atomically."""
    out = Path(cfg.out)
    meta = {
        "command": cfg.command, "data": [str(d) for d in cfg.data], "val_data": cfg.val_data,
        "epochs_done": run.epoch, "steps": run.step, "history": run.history, "torch": str(torch.__version__),
        "machine": platform.machine(), "skipped_files": skipped,
    }
    ckpt = flow_checkpoint(run.flow, meta)
    atomic_torch_save(ckpt, out)
    atomic_torch_save({"flow": ckpt, "optimizer": run.opt.state_dict(), "epoch": run.epoch, "step": run.step,
                       "numpy_rng": run.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                       "history": run.history}, _resume_path(out))


def train_flow(cfg: FlowTrainConfig, log=tqdm.write) -> dict:
    """Train; returns {"history": per epoch train and held-out bits/dim and seconds, "skipped":
    files that could not be decoded, "out": the checkpoint}. ``log`` takes one line at a time."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    train, val_views, skipped = _build_data(cfg, log)
    log(f"train-flow: {len(train.sources)} training sources ({train.num_frames} frames), "
        f"{0 if val_views is None else val_views.shape[0]} held-out views, {len(skipped)} skipped files")
    run = _start(cfg, device, log)

    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(cfg.tensorboard or f"{cfg.out}.logs")
    if not run.history and val_views is not None:
        untrained = evaluate_bpd(run.flow, val_views)
        log(f"epoch 0 (untrained): held-out {untrained:.3f} bits/dim")
        run.history.append({"epoch": 0, "train_bpd": None, "val_bpd": untrained, "seconds": 0.0})
        writer.add_scalar("bpd/val", untrained, 0)

    while run.epoch < cfg.epochs:
        t0 = time.time()
        train_bpd = _train_epoch(cfg, run, train, device, writer)
        run.epoch += 1
        val_bpd = evaluate_bpd(run.flow, val_views) if val_views is not None else None
        seconds = time.time() - t0
        run.history.append({"epoch": run.epoch, "train_bpd": train_bpd, "val_bpd": val_bpd, "seconds": seconds})
        writer.add_scalar("bpd/train", train_bpd, run.epoch)
        if val_bpd is not None:
            writer.add_scalar("bpd/val", val_bpd, run.epoch)
        writer.flush()
        log(f"epoch {run.epoch}: train {train_bpd:.3f} bits/dim"
            + (f", held-out {val_bpd:.3f}" if val_bpd is not None else "") + f" ({seconds:.0f} s)")
        _save(cfg, run, skipped)
    writer.close()
    return {"history": run.history, "skipped": skipped, "out": str(cfg.out)}
