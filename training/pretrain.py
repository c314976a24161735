"""``s2vc pretrain``: MoCo pretraining whose positives are made on the fly by the generator.

Modes (one code path; only the key differs):
    s2vc    key = motion-preserved version of the second clip (the paper)
    moco    key = the second clip as is (plain MoCo v2)
    tfd     key = the pixel-level TFD baseline of the paper's Table 4
    oracle  key = the second clip with the background removed through the synthetic set's actor
            masks (synthetic set only): the ceiling any static-cue suppression could reach

Distributed with torchrun (gloo on CPU, nccl on GPU): ``torchrun --nproc-per-node N -m
s2vc.cli pretrain ...``. Checkpoints (RUN/checkpoint.pt) are written atomically every
``--ckpt-every`` steps and at each epoch end and hold everything ``--resume`` needs to continue
exactly: model (query and key encoders, queue), optimizer, epoch, step, RNG states, config.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from s2vc.engine.checkpoint import atomic_torch_save

from .models import BACKBONES, Encoder
from .moco import MoCo
from .transforms import normalize_clip

MODES = ("s2vc", "moco", "tfd", "oracle")
DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics", "folder")
CHECKPOINT = "checkpoint.pt"


# what a resumed run must share with its checkpoint (--max-steps, --epochs, workers, threads,
# device and logging may change)
RESUME_MUST_MATCH = ("mode", "dataset", "root", "fold", "dim", "queue", "moco_m", "moco_t", "frames", "stride",
                     "size", "decode_size", "flow", "alpha", "strategy", "clamp_key", "batch_size", "lr",
                     "weight_decay", "warmup_epochs", "lr_steps", "seed", "synthetic_bias", "synthetic_seed",
                     "synthetic_train_per_class", "synthetic_test_per_class")


def snapshot_path(run: str | Path, step: int) -> Path:
    """Where ``--snapshot-every`` keeps the model of ``step``."""
    return Path(run) / "snapshots" / f"step_{step:06d}.pt"


def snapshots(run: str | Path) -> dict[int, Path]:
    """The snapshots of a run folder, {step: path}, in step order."""
    found = sorted((Path(run) / "snapshots").glob("step_*.pt"))
    return {int(p.stem.removeprefix("step_")): p for p in found}


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description="MoCo pretraining with motion-preserved positives")
    p.add_argument("--config", default=None, help="TOML file of defaults (configs/*.toml); flags override it")
    p.add_argument("--dataset", choices=DATASETS, default="synthetic")
    p.add_argument("--root", default=None, help="dataset root (synthetic: cache folder)")
    p.add_argument("--fold", type=int, default=1, help="split number (UCF101 1-3, HMDB51 1-3)")
    p.add_argument("--mode", choices=MODES, default="s2vc")
    p.add_argument("--out", required=True, help="run folder (checkpoint, TensorBoard logs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=BACKBONES, default="small")
    g.add_argument("--dim", type=int, default=128)
    g.add_argument("--queue", type=int, default=2048, help="MoCo queue size K")
    g.add_argument("--moco-m", type=float, default=0.999)
    g.add_argument("--moco-t", type=float, default=0.07)
    g = p.add_argument_group("clips")
    g.add_argument("--frames", type=int, default=8)
    g.add_argument("--stride", type=int, default=2, help="frame step inside a clip")
    g.add_argument("--size", type=int, default=64, help="crop size fed to the backbone")
    g.add_argument("--decode-size", type=int, default=None,
                   help="shorter side frames are decoded at (default: as stored; set it for real datasets, e.g. 128)")
    g.add_argument("--workers", type=int, default=0)
    g.add_argument("--strict", action="store_true", help="a video that cannot be used is fatal")
    g.add_argument("--cache-videos", action="store_true",
                   help="decode every video into memory once, before the workers fork (they share it): "
                        "for small sets such as the synthetic one")
    g = p.add_argument_group("generator")
    g.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    g.add_argument("--alpha", type=float, default=None, help="default: the flow checkpoint's calibrated alpha")
    g.add_argument("--strategy", default="zero")
    g.add_argument("--gen-backend", default="auto")
    g.add_argument("--clamp-key", action="store_true", help="clip the generated key to [0, 1]")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
    g.add_argument("--batch-size", type=int, default=16, help="per process")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=1e-5)
    g.add_argument("--warmup-epochs", type=float, default=1)
    g.add_argument("--lr-steps", type=int, nargs="*", default=[], help="epochs where lr is multiplied by 0.1")
    g.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--ckpt-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--synthetic-bias", default="strong", help="synthetic set: strong, mild or none")
    p.add_argument("--synthetic-seed", type=int, default=0,
                   help="seed of the synthetic set itself (the evaluations use set 0); --seed is the run's")
    p.add_argument("--synthetic-train-per-class", type=int, default=20, help="synthetic set: train videos per class")
    p.add_argument("--synthetic-test-per-class", type=int, default=10, help="synthetic set: test videos per class")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also keep the model every N steps as OUT/snapshots/step_NNNNNN.pt (learning curves)")
    return p


def load_config(path: str, parser: argparse.ArgumentParser) -> dict:
    """A TOML config (safe: tomllib parses data only), keys = flag names with '_' or '-'."""
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    known = {a.dest for a in parser._actions}
    cfg = {k.replace("-", "_"): v for k, v in cfg.items()}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise SystemExit(f"pretrain: unknown keys in {path}: {unknown}")
    return cfg


# -- distribution ---------------------------------------------------------------------------
def setup_distributed(device: torch.device) -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ResumableSampler(torch.utils.data.Sampler):
    """A per-epoch permutation (seed + epoch), sharded over ranks, that can start mid-epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start_batch = 0, 0
        self.batches_per_epoch = n // (batch_size * world)
        if self.batches_per_epoch == 0:
            raise ValueError(f"the dataset ({n} videos) is smaller than one global batch ({batch_size * world})")

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.batches_per_epoch * self.batch_size * self.world]
        mine = perm[self.rank::self.world]
        return iter(mine[self.start_batch * self.batch_size:].tolist())

    def __len__(self):
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


# -- keys -------------------------------------------------------------------------------------
class KeyMaker:
    """Turns the second clip (B, 3, T, H, W) in [0, 1] into the MoCo key of the chosen mode."""

    def __init__(self, args, device: torch.device):
        self.mode, self.clamp = args.mode, args.clamp_key
        self.gen = None
        if args.mode == "s2vc":
            from s2vc.engine import load_flow
            from s2vc.engine.generator import MotionPreservingGenerator
            flow = load_flow(args.flow, device=device)
            from s2vc.engine.suppression import resolve_alpha
            alpha = resolve_alpha(flow, args.alpha)
            args.alpha = alpha
            self.gen = MotionPreservingGenerator(flow, alpha=alpha, strategy=args.strategy,
                                                 backend=args.gen_backend, seed=args.seed)
        elif args.mode == "tfd":
            from s2vc.engine import load_flow
            from s2vc.engine.tfd import tfd_generator
            res = load_flow(args.flow).config.resolution
            self.gen = tfd_generator(resolution=res)

    def __call__(self, k: torch.Tensor, batch: dict, step: int) -> tuple[torch.Tensor, float]:
        """Returns (key, preserved fraction or nan)."""
        if self.mode == "oracle":
            mask = batch.get("k_mask")
            if mask is None:
                raise ValueError("mode 'oracle' needs actor masks: only the synthetic set has them")
            return k * mask.to(k.device, k.dtype), math.nan
        if self.gen is None:
            return k, math.nan
        self.gen.seed = None if self.gen.seed is None else step   # fresh randomness every step
        out, stats = self.gen(k)
        if self.clamp:
            out = out.clamp(0, 1)
        return out, float(stats.preserved.mean())


# -- the loop ---------------------------------------------------------------------------------
def learning_rate(args, epoch_float: float) -> float:
    """Linear warm-up over --warmup-epochs, then x0.1 at each of --lr-steps (the paper's schedule)."""
    lr = args.lr * min(1.0, (epoch_float + 1e-9) / args.warmup_epochs) if args.warmup_epochs > 0 else args.lr
    return lr * 0.1 ** sum(epoch_float >= s for s in args.lr_steps)


def _rng_state() -> dict:
    """Every RNG a step may draw from, as plain types (checkpoints load with weights_only)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": keys.tolist(), "numpy_pos": int(pos),
            "numpy_gauss": [int(has_gauss), float(gauss)], "python": list(py_state),
            "python_gauss": py_gauss, "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", np.array(s["numpy"], dtype=np.uint32), s["numpy_pos"],
                         s["numpy_gauss"][0], s["numpy_gauss"][1]))
    random.setstate((3, tuple(s["python"]), s["python_gauss"]))
    if torch.cuda.is_available() and s["cuda"]:
        torch.cuda.set_rng_state_all(s["cuda"])


class OracleKeys(torch.utils.data.Dataset):
    """The synthetic set with the key's actor mask: the key clip and its mask go through one
    key transform (crop and flip drawn once), so "k_mask" (1, T, H, W) covers the key's actor."""

    def __init__(self, dataset, root: Path, transform_k):
        self.dataset, self.root, self.transform_k = dataset, Path(root), transform_k

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, i):
        from .synthetic import load_mask
        item = self.dataset[i]
        if not isinstance(item, dict):
            return item                                           # a Skipped record
        ds = self.dataset
        mask = load_mask(self.root, ds.records[i].video_id)       # (T_video, H, W)
        m = torch.from_numpy(mask[item["start_k"]:item["start_k"] + ds.span:ds.stride]).float()[None]
        k = item["k"]
        if m.shape[-2:] != k.shape[-2:]:
            m = F.interpolate(m, size=k.shape[-2:], mode="nearest")
        both = torch.cat([k, m], dim=0)                           # (4, T, H, W)
        if self.transform_k is not None:                          # crop/flip take any channel count
            both = self.transform_k.transform(both.transpose(0, 1)).transpose(0, 1)
        item["k"], item["k_mask"] = both[:3], (both[3:] > 0.5).float()
        return item


def build_data(args, rank: int, world: int):
    from .datasets import build_dataset, collate_clips, synthetic_kwargs
    from .transforms import key_transform, query_transform
    kwargs = {}
    if args.dataset == "synthetic":
        kwargs["synthetic_kwargs"] = synthetic_kwargs(args)
    oracle = args.mode == "oracle"
    ds = build_dataset(args.dataset, args.root, split="train", fold=args.fold, frames=args.frames,
                       stride=args.stride, size=args.decode_size, two_clips=True,
                       transform_q=query_transform(args.size),
                       transform_k=None if oracle else key_transform(args.size), strict=args.strict,
                       seed=args.seed, cache_videos=args.cache_videos, **kwargs)
    if args.cache_videos:
        # decoded here, before the DataLoader forks its workers: they share the frames (copy on
        # write) instead of each decoding its own copy every epoch
        t0 = time.perf_counter()
        kept = ds.preload()
        if rank == 0:
            print(f"pretrain: {kept}/{len(ds)} videos decoded into memory in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
    if oracle:
        ds = OracleKeys(ds, Path(ds.records[0].path).parents[2], key_transform(args.size))  # root/UCF-101/Class/v
    sampler = ResumableSampler(len(ds), args.batch_size, args.seed, rank, world)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                                         collate_fn=collate_clips, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed),
                                         persistent_workers=False)
    return ds, sampler, loader


def main(args: argparse.Namespace) -> dict:
    """Pretrain; returns the per-step history of this process (loss, lr, timings)."""
    if args.config:
        parser = get_args_parser()
        cfg = load_config(args.config, parser)
        defaults = vars(parser.parse_args(["--out", args.out]))
        for k, v in cfg.items():                 # a flag left at its default takes the config's value
            if getattr(args, k) == defaults.get(k):
                setattr(args, k, v)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = setup_distributed(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if args.max_steps is not None and args.max_steps < 1 or args.snapshot_every < 0 or args.ckpt_every < 1:
        raise SystemExit(f"pretrain: need --max-steps >= 1 (or none), --snapshot-every >= 0 and --ckpt-every >= 1, got "
                         f"{args.max_steps}, {args.snapshot_every}, {args.ckpt_every}")
    if (args.batch_size * world) > args.queue or args.queue % (args.batch_size * world):
        raise SystemExit(f"pretrain: the queue ({args.queue}) must be a multiple of the global batch "
                         f"({args.batch_size} x {world} processes)")
    if args.mode == "oracle" and args.dataset != "synthetic":
        raise SystemExit("pretrain: mode 'oracle' needs the actor masks of the synthetic set (--dataset synthetic)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    random.seed(args.seed + rank)

    ds, sampler, loader = build_data(args, rank, world)
    model = MoCo(Encoder(args.backbone, args.dim), dim=args.dim, K=args.queue, m=args.moco_m, T=args.moco_t).to(device)
    opt = torch.optim.Adam(model.encoder_q.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    keys = KeyMaker(args, device)

    start_epoch, start_batch, step, history = 0, 0, 0, []
    ckpt_path = out / CHECKPOINT
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["config"]["backbone"] != args.backbone:
            raise SystemExit(f"pretrain: {ckpt_path} is a {ckpt['config']['backbone']} run, not {args.backbone}")
        changed = {k: (ckpt["config"][k], getattr(args, k)) for k in RESUME_MUST_MATCH
                   if k in ckpt["config"] and ckpt["config"][k] != getattr(args, k)}
        if changed:
            raise SystemExit(f"pretrain: {ckpt_path} was trained with other settings than asked, so --resume would "
                             f"mix two runs: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
                             + "; use another --out or the same settings")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, start_batch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        history = list(ckpt["history"])
        _set_rng_state(ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
        if rank == 0:
            print(f"pretrain: resuming {ckpt_path} at epoch {start_epoch}, step {step}", file=sys.stderr)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    moco = model.module if world > 1 else model
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "logs"))
        (out / "config.json").write_text(json.dumps(vars(args), indent=2, default=str))
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")

    def config() -> dict:
        return {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, type(None)))}

    def snapshot(epoch: int) -> None:
        """The model alone (what the evaluations read), kept beside the resumable checkpoint."""
        if rank == 0:
            atomic_torch_save({"model": moco.state_dict(), "epoch": epoch, "step": step, "config": config()},
                              snapshot_path(out, step))

    def save(epoch: int, batch_in_epoch: int) -> None:
        rngs = [None] * world
        state = _rng_state()
        if world > 1:
            dist.all_gather_object(rngs, state)
        else:
            rngs = [state]
        if rank == 0:
            atomic_torch_save({"model": moco.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                               "batch_in_epoch": batch_in_epoch, "step": step, "rng": rngs,
                               "history": history, "config": config()}, ckpt_path)

    steps_per_epoch = sampler.batches_per_epoch
    done = bool(args.max_steps and step >= args.max_steps)
    if done and rank == 0:
        print(f"pretrain: {ckpt_path} has already run {step} >= --max-steps {args.max_steps} steps", file=sys.stderr)
    if args.snapshot_every and step == 0:
        snapshot(0)                                # the random initialisation: where every curve starts
    for epoch in range(start_epoch, args.epochs if not done else start_epoch):
        sampler.set_epoch(epoch, start_batch if epoch == start_epoch else 0)
        ds.set_epoch(epoch)
        skipped: list[str] = []
        bar = tqdm(total=steps_per_epoch, initial=sampler.start_batch, desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress or rank != 0, file=sys.stderr, leave=False)
        model.train()
        t_data = time.perf_counter()
        for i, batch in enumerate(loader, start=sampler.start_batch):
            skipped += batch["skipped"]
            if batch["label"].numel() != args.batch_size:
                # a video of the batch was unusable (counted in "skipped"): the queue takes whole
                # batches only, so this batch is left out
                continue
            lr = learning_rate(args, epoch + i / steps_per_epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            q, k = batch["q"].to(device, non_blocking=True), batch["k"].to(device, non_blocking=True)
            t_gen = time.perf_counter()
            with torch.no_grad():
                k, preserved = keys(k, batch, step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t_model = time.perf_counter()
            with torch.autocast(device.type, enabled=args.amp and device.type == "cuda"):
                logits, labels = model(normalize_clip(q), normalize_clip(k))
                loss = F.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretrain: non-finite loss at step {step}; lower --lr or check the data")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t_end = time.perf_counter()
            step += 1
            rec = {"step": step, "epoch": epoch, "loss": loss.item(), "lr": lr,
                   "acc": (logits.argmax(1) == 0).float().mean().item(), "preserved": preserved,
                   "t_data": t_gen - t_data, "t_gen": t_model - t_gen, "t_model": t_end - t_model}
            history.append(rec)
            if writer is not None:
                for key in ("loss", "lr", "acc", "t_data", "t_gen", "t_model"):
                    writer.add_scalar(f"train/{key}", rec[key], step)
                if not math.isnan(preserved):
                    writer.add_scalar("train/preserved", preserved, step)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", gen=f"{rec['t_gen']:.2f}s", model=f"{rec['t_model']:.2f}s")
            bar.update(1)
            if args.snapshot_every and step % args.snapshot_every == 0:
                snapshot(epoch)
            if step % args.ckpt_every == 0:
                save(epoch, i + 1)
            if args.max_steps and step >= args.max_steps:
                done = True
                break
            t_data = time.perf_counter()
        bar.close()
        if skipped and rank == 0:
            print(f"epoch {epoch + 1}: skipped {len(skipped)} videos:\n  " + "\n  ".join(sorted(set(skipped))),
                  file=sys.stderr)
        if done:
            if args.snapshot_every and step % args.snapshot_every:
                snapshot(epoch)                    # the last step is evaluated too
            save(epoch, i + 1)
            break
        save(epoch + 1, 0)
        if rank == 0:
            ep = [h for h in history if h["epoch"] == epoch]
            if ep:
                print(f"epoch {epoch + 1}: loss {np.mean([h['loss'] for h in ep]):.4f}, step time "
                      f"data {np.mean([h['t_data'] for h in ep]):.3f}s / generation {np.mean([h['t_gen'] for h in ep]):.3f}s"
                      f" / backbone {np.mean([h['t_model'] for h in ep]):.3f}s", file=sys.stderr)
    if writer is not None:
        writer.close()
    if world > 1:
        dist.barrier()
    return {"history": history, "out": str(out)}
