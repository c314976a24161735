"""``s2vc train-flow``: maximum-likelihood training of the flow on frames.

Uniform dequantisation, Adam (as AdvFlow), bits/dim per epoch on the training batches and on a
held-out split, atomic checkpoints after every epoch, ``--resume`` continuing where a killed run
stopped, a progress bar and TensorBoard scalars.

Files written for ``--out CKPT``:
    CKPT              the flow (config + weights + hash + training record), what load_flow reads
    CKPT.resume.pt    optimizer, epoch, RNG state and history: what --resume reads
    CKPT.logs/        TensorBoard event files (unless --tensorboard names another folder)
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from s2vc.engine.checkpoint import atomic_torch_save, flow_checkpoint, flow_from_checkpoint, load_flow
from s2vc.engine.flow import AdvFlow, FlowConfig

from .frames import FrameSampler, FrameSource, collect_media, load_sources, split_holdout, synthetic_frames


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", required=True,
                   help="video/image files or folders; 'samples' = the sample media installed packages ship")
    p.add_argument("--val-data", nargs="+", default=None,
                   help="held-out files or folders (default: the last --holdout of each training video)")
    p.add_argument("--holdout", type=float, default=0.1, help="tail fraction of each video held out (no --val-data)")
    p.add_argument("--out", required=True, help="flow checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume.pt if it exists")
    p.add_argument("--init", default=None, help="start from this flow checkpoint instead of a new flow")
    g = p.add_argument_group("architecture (new flows)")
    g.add_argument("--resolution", type=int, default=32)
    g.add_argument("--high-blocks", type=int, default=4)
    g.add_argument("--low-blocks", type=int, default=6)
    g.add_argument("--fc-blocks", type=int, default=6)
    g.add_argument("--hidden", type=int, default=32)
    g.add_argument("--fc-hidden", type=int, default=64)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--steps-per-epoch", type=int, default=100)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=50.0, help="max gradient norm")
    g.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up")
    g = p.add_argument_group("data")
    g.add_argument("--decode-size", type=int, default=128, help="shorter side frames are decoded at")
    g.add_argument("--max-frames", type=int, default=400, help="frames decoded per video at most")
    g.add_argument("--synthetic", type=int, default=0, help="add this many procedural frames to training")
    g.add_argument("--val-frames", type=int, default=32, help="evaluation views per held-out source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tensorboard", default=None, help="TensorBoard folder (default OUT.logs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


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


def _learning_rate(args, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of --lr over the whole run."""
    total = max(1, args.epochs * args.steps_per_epoch)
    warm = min(1.0, (step + 1) / max(1, args.warmup_steps))
    return args.lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, step / total))))


def _build_data(args, log):
    files = collect_media(args.data)
    if not files:
        raise SystemExit(f"train-flow: no video or image files found in {args.data}")
    sources, skipped = load_sources(files, args.decode_size, args.max_frames, log=log)
    if args.val_data:
        val_sources, val_skipped = load_sources(collect_media(args.val_data), args.decode_size,
                                                args.max_frames, log=log)
        skipped += val_skipped
        train_sources = sources
    else:
        train_sources, val_sources = split_holdout(sources, args.holdout)
    if args.synthetic:
        train_sources.append(FrameSource("synthetic", synthetic_frames(args.synthetic, args.decode_size, args.seed)))
    if not train_sources:
        raise SystemExit("train-flow: none of the inputs could be decoded:\n  " + "\n  ".join(skipped))
    train = FrameSampler(train_sources, args.resolution)
    val_views = FrameSampler(val_sources, args.resolution).fixed_views(args.val_frames) if val_sources else None
    return train, val_views, skipped


def _new_flow(args) -> AdvFlow:
    if args.init:
        return load_flow(args.init)
    return AdvFlow(FlowConfig(resolution=args.resolution, high_blocks=args.high_blocks, low_blocks=args.low_blocks,
                              fc_blocks=args.fc_blocks, hidden=args.hidden, fc_hidden=args.fc_hidden))


def main(args: argparse.Namespace) -> dict:
    """Train; returns the history (per epoch: train and held-out bits/dim, seconds)."""
    log = tqdm.write
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    resume_file = _resume_path(out)
    device = torch.device(args.device)

    train, val_views, skipped = _build_data(args, log)
    log(f"train-flow: {len(train.sources)} training sources ({train.num_frames} frames), "
        f"{0 if val_views is None else val_views.shape[0]} held-out views, {len(skipped)} skipped files")

    state = None
    if args.resume and resume_file.exists():
        state = torch.load(resume_file, map_location="cpu", weights_only=True)
        flow = flow_from_checkpoint(state["flow"], source=str(resume_file))
        log(f"resuming from {resume_file} after epoch {state['epoch']}")
    else:
        flow = _new_flow(args)
        if args.resume:
            log(f"no {resume_file} yet: starting a new run")
    flow.to(device).train()
    flow.requires_grad_(True)
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    history: list[dict] = []
    start_epoch, step = 0, 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        start_epoch, step = int(state["epoch"]), int(state["step"])

    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(args.tensorboard or str(out) + ".logs")
    if not history and val_views is not None:
        untrained = evaluate_bpd(flow, val_views)
        log(f"epoch 0 (untrained): held-out {untrained:.3f} bits/dim")
        history.append({"epoch": 0, "train_bpd": None, "val_bpd": untrained, "seconds": 0.0})
        writer.add_scalar("bpd/val", untrained, 0)

    skipped_steps = 0
    for epoch in range(start_epoch + 1, args.epochs + 1):
        t0 = time.time()
        flow.train()
        losses = []
        bar = tqdm(range(args.steps_per_epoch), desc=f"epoch {epoch}/{args.epochs}", disable=args.no_progress,
                   leave=False, file=sys.stderr)
        for _ in bar:
            batch = train.sample(args.batch_size, rng).to(device)
            lr = _learning_rate(args, step)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = flow.bits_per_dim(batch)
            if not torch.isfinite(loss):
                skipped_steps += 1
                if skipped_steps > 10:
                    raise RuntimeError("train-flow: more than 10 non-finite losses; lower --lr or check the data")
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), args.grad_clip)
            opt.step()
            step += 1
            losses.append(loss.item())
            bar.set_postfix(bpd=f"{loss.item():.3f}")
            writer.add_scalar("bpd/train_step", loss.item(), step)
        train_bpd = float(np.mean(losses)) if losses else math.nan
        val_bpd = evaluate_bpd(flow, val_views) if val_views is not None else None
        seconds = time.time() - t0
        history.append({"epoch": epoch, "train_bpd": train_bpd, "val_bpd": val_bpd, "seconds": seconds})
        writer.add_scalar("bpd/train", train_bpd, epoch)
        if val_bpd is not None:
            writer.add_scalar("bpd/val", val_bpd, epoch)
        writer.flush()
        log(f"epoch {epoch}: train {train_bpd:.3f} bits/dim"
            + (f", held-out {val_bpd:.3f}" if val_bpd is not None else "") + f" ({seconds:.0f} s)")

        meta = {
            "command": "s2vc " + " ".join(shlex.quote(a) for a in getattr(args, "argv", ["train-flow", "..."])),
            "data": [str(d) for d in args.data], "val_data": args.val_data, "epochs_done": epoch,
            "steps": step, "history": history, "torch": str(torch.__version__), "machine": platform.machine(),
            "skipped_files": skipped,
        }
        ckpt = flow_checkpoint(flow, meta)
        atomic_torch_save(ckpt, out)
        atomic_torch_save({"flow": ckpt, "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
                           "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                           "history": history}, resume_file)
    writer.close()
    return {"history": history, "skipped": skipped, "out": str(out)}


if __name__ == "__main__":  # pragma: no cover
    a = get_args_parser().parse_args()
    a.argv = sys.argv[1:]
    main(a)
