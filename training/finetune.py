"""``s2vc eval finetune``: supervised finetuning of a pretrained backbone, then multi-view testing.

The whole network (backbone + dropout + linear classifier) trains on the train split with
random resized crops and flips (``finetune_transform``), Adam with a cosine schedule. Testing
follows the paper's protocol: half-overlapping windows over each test video, each window as
its centre crop or ten crops (``--crops 10``), the softmax scores of all views averaged per
video; top-1 and per-class top-1 are reported.

``--static`` trains and tests on *static* clips (the middle frame of each clip repeated): the
per-class accuracy of such a model says how well each class can be recognised from one frame,
the x axis of the paper's Fig. 6 (``s2vc eval static-gain``). Without ``--checkpoint`` the
backbone starts from random weights (the from-scratch baseline).

Checkpoints (``--save``, default OUT.pt beside the JSON) are written atomically after every
epoch and hold the model, optimiser, epoch and history; ``--resume`` continues from one. The
finetuned model is what ``s2vc eval cam`` reads.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from s2vc.engine.checkpoint import atomic_torch_save

from .datasets import EvalWindows, SkippedCounter, collate_clips, collate_windows
from .evaluate import (_add_common, _backbone, _dataset, _device, _finish, _table, _test_split,
                       eval_window_transform)
from .metrics import per_class_accuracy, top1
from .models import build_backbone
from .transforms import finetune_transform, normalize_clip

__all__ = ["Classifier", "static_clip", "load_classifier", "finetune", "predict_videos", "main", "add_arguments"]


class Classifier(nn.Module):
    """backbone -> dropout -> Linear(C, K); ``cam(x)`` gives class activation maps."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))

    @torch.no_grad()
    def cam(self, x: torch.Tensor, target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Class activation maps (Zhou et al. 2016) of the last conv block for ``target`` (default:
        the predicted class). x (B, C, T, H, W), normalised. Returns (cams float (B, T, H, W) in
        [0, 1], each clip scaled by its maximum; the class used, long (B,)). The backbone pools
        the feature map by a global mean, so the maps' mean weighted by fc is the logit."""
        fmap = self.backbone.feature_map(x)                                      # (B, C, t, h, w)
        if target is None:
            target = self.fc(fmap.mean(dim=(2, 3, 4))).argmax(dim=1)
        weights = self.fc.weight[target]                                         # (B, C)
        cams = torch.relu(torch.einsum("bc,bcthw->bthw", weights, fmap))
        cams = F.interpolate(cams[:, None], size=x.shape[2:], mode="trilinear", align_corners=False)[:, 0]
        peak = cams.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None, None]
        return cams / peak, target


def static_clip(clips: torch.Tensor) -> torch.Tensor:
    """Every frame replaced by the clip's middle frame: (B, C, T, H, W) -> same shape."""
    t = clips.shape[2]
    return clips[:, :, t // 2:t // 2 + 1].expand_as(clips).contiguous()


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """A ``s2vc eval finetune`` checkpoint: (classifier in eval mode, its config). Raises
    ValueError for anything else (a pretrain checkpoint has no classifier)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "classifier" not in ckpt:
        raise ValueError(f"{path}: not a finetune checkpoint (no 'classifier'); run `s2vc eval finetune` "
                         f"first (a pretrain checkpoint has no classifier)")
    cfg = ckpt["config"]
    model = Classifier(build_backbone(cfg["backbone"]), cfg["num_classes"], cfg["dropout"])
    model.load_state_dict(ckpt["classifier"])
    return model.to(device).eval(), cfg


@torch.no_grad()
def predict_videos(model: nn.Module, dataset, *, num_clips: int | None, overlap: float, size: int, crops: int,
                   device, batch_size: int, workers: int = 0, static: bool = False,
                   skipped: SkippedCounter | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per video the softmax averaged over its windows x crops: (probabilities (N, K), labels (N,))."""
    model.eval()
    windows = EvalWindows(dataset, num_clips, overlap, eval_window_transform(size, crops))
    loader = torch.utils.data.DataLoader(windows, batch_size=max(1, batch_size // ((num_clips or 1) * crops)),
                                         num_workers=workers, collate_fn=collate_windows)
    probs, labels = [], []
    for batch in loader:
        if skipped is not None:
            skipped.update(batch)
        b = len(batch["label"])
        if b == 0:
            continue
        clips = static_clip(batch["clips"]) if static else batch["clips"]
        p = torch.cat([F.softmax(model(normalize_clip(clips[i:i + batch_size].to(device))).float(), dim=1).cpu()
                       for i in range(0, len(clips), batch_size)])
        total = torch.zeros(b, p.shape[1]).index_add_(0, batch["video"], p)
        probs.append(total / torch.bincount(batch["video"], minlength=b).clamp_min(1)[:, None])
        labels.append(batch["label"])
    if not labels:
        raise ValueError(f"every one of the {len(dataset)} test videos was skipped")
    return torch.cat(probs), torch.cat(labels)


def finetune(args: argparse.Namespace) -> dict:
    if args.protocol != "coclr":
        raise SystemExit("finetune: the test averages the softmax over windows x crops; --protocol concat is for "
                         "the frozen-feature evaluations")
    if args.resume and not (args.save or args.out):
        raise SystemExit("finetune: --resume needs --save (or --out, whose .pt it is)")
    device = _device(args)
    torch.manual_seed(args.seed)
    train = _dataset(args, "train")
    train.two_clips, train.transform_q, train.seed = False, finetune_transform(args.size), args.seed
    test = _dataset(args, _test_split(args.dataset))
    k = len(train.classes)
    backbone, desc = _backbone(args)
    model = Classifier(backbone, k, args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    batches = max(1, len(train) // args.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * batches)
    save = Path(args.save) if args.save else (Path(args.out).with_suffix(".pt") if args.out else None)
    config = {"backbone": backbone.backbone_name if hasattr(backbone, "backbone_name") else args.backbone,
              "num_classes": k, "dropout": args.dropout, "classes": list(train.classes), "static": args.static,
              "dataset": args.dataset, "fold": args.fold, "size": args.size, "frames": args.frames,
              "stride": args.stride, "pretrained": args.checkpoint, "epochs": args.epochs, "lr": args.lr,
              "weight_decay": args.weight_decay, "batch_size": args.batch_size, "seed": args.seed}
    start, history = 0, []
    if args.resume and save and save.exists():
        ckpt = torch.load(save, map_location="cpu", weights_only=True)
        saved = ckpt.get("config", {})
        if saved.get("backbone") != config["backbone"] or saved.get("num_classes") != k:
            raise SystemExit(f"finetune: {save} is a {saved.get('backbone')} / "
                             f"{saved.get('num_classes')}-class run, not {config['backbone']} / {k}")
        # the cosine schedule's length is the epoch count: a resumed run keeps all of these
        changed = {key: (saved.get(key), v) for key, v in config.items() if key in saved and saved[key] != v}
        if changed:
            raise SystemExit(f"finetune: {save} was trained with other settings: "
                             + ", ".join(f"{key} {a!r} -> {b!r}" for key, (a, b) in changed.items())
                             + "; resume with the same ones, or write to another --save")
        model.load_state_dict(ckpt["classifier"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start, history = ckpt["epoch"], list(ckpt["history"])
        torch.set_rng_state(ckpt["rng"])
        print(f"finetune: resuming {save} at epoch {start}", file=sys.stderr)
    skipped = SkippedCounter()
    for epoch in range(start, args.epochs):
        train.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.workers, collate_fn=collate_clips,
                                             generator=torch.Generator().manual_seed(args.seed + epoch))
        model.train()
        losses, right, seen = [], 0, 0
        for batch in tqdm(loader, desc=f"finetune {epoch + 1}/{args.epochs}", leave=False, file=sys.stderr,
                          disable=args.no_progress):
            skipped.update(batch)
            if batch["label"].numel() < 2:
                continue
            x = batch["q"]
            x = normalize_clip((static_clip(x) if args.static else x).to(device))
            y = batch["label"].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            right += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        if not losses:
            raise ValueError(f"finetune: epoch {epoch + 1} made no optimiser step: {len(train)} training videos "
                             f"give no full batch of {args.batch_size} (lower --batch-size)")
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), "train_top1": right / max(1, seen)})
        if not math.isfinite(history[-1]["loss"]):
            raise FloatingPointError(f"finetune: non-finite loss in epoch {epoch + 1}; lower --lr")
        if save:
            atomic_torch_save({"classifier": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                               "rng": torch.get_rng_state(), "config": config}, save)
    probs, labels = predict_videos(model, test, num_clips=args.num_clips, overlap=args.overlap, size=args.size,
                                   crops=args.crops, device=device, batch_size=args.batch_size,
                                   workers=args.workers, static=args.static, skipped=skipped)
    pred = probs.argmax(1)
    result = {"evaluation": "finetune", "dataset": args.dataset, "fold": args.fold, "backbone": desc,
              "checkpoint": args.checkpoint, "static": args.static, "epochs": args.epochs, "lr": args.lr,
              "crops": args.crops, "num_clips": args.num_clips, "overlap": args.overlap, "size": args.size,
              "frames": args.frames, "stride": args.stride, "top1": top1(probs, labels),
              "per_class": per_class_accuracy(pred, labels, k), "classes": list(train.classes),
              "test_videos": len(labels), "history": history, "saved": str(save) if save else None}
    views = f"{args.num_clips} windows x {'ten crops' if args.crops == 10 else 'centre crop'}"
    table = _table(f"finetune{' (static clips)' if args.static else ''}, {args.dataset} fold {args.fold} ({desc})",
                   [("top-1", f"{100 * result['top1']:6.2f}  ({len(labels)} test videos, {views})"),
                    ("last epoch", f"loss {history[-1]['loss']:.3f}, train top-1 {100 * history[-1]['train_top1']:.1f}"
                     if history else "-")])
    return _finish(args, result, table, skipped)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _add_common(p, 30)
    p.set_defaults(lr=1e-4)
    helps = {"epochs": "finetuning epochs", "lr": "Adam learning rate of the whole network (cosine decay)",
             "batch_size": "clips per training step and per test forward"}
    for action in p._actions:
        if action.dest in helps:
            action.help = helps[action.dest]
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--static", action="store_true", help="train and test on static clips (one frame repeated)")
    p.add_argument("--save", default=None, help="finetuned checkpoint (default: --out with .pt)")
    p.add_argument("--resume", action="store_true", help="continue from --save")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(args: argparse.Namespace) -> dict:
    return finetune(args)
