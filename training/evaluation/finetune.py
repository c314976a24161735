"""Supervised finetuning of a pretrained backbone, then multi-view testing (``s2vc eval finetune``).

The whole network (backbone + dropout + linear classifier) trains on the train split with
random resized crops and flips (``finetune_transform``), Adam with a cosine schedule. Testing
follows the paper's protocol: half-overlapping windows over each test video, each window as
its centre crop or ten crops (``crops=10``), the softmax scores of all views averaged per
video; top-1 and per-class top-1 are reported.

``static=True`` trains and tests on *static* clips (the middle frame of each clip repeated):
the per-class accuracy of such a model says how well each class can be recognised from one
frame, the x axis of the paper's Fig. 6 (``static_gain``). Without a checkpoint the backbone
starts from random weights (the from-scratch baseline).

Checkpoints (``save``, default OUT.pt beside the JSON) are written atomically after every
epoch and hold the model, optimiser, epoch and history; ``resume`` continues from one. The
finetuned model is what ``cam`` reads (``load_classifier``).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from s2vc.engine.checkpoint import atomic_torch_save

from ..data.datasets import EvalWindows, SkippedCounter, collate_clips, collate_windows
from .checkpoints import read_checkpoint
from .common import (EvalSettings, Evaluation, eval_backbone, eval_dataset, eval_device, finish, format_table,
                          test_split)
from .features import eval_window_transform
from .metrics import per_class_accuracy, top1
from ..models import build_backbone
from ..data.transforms import finetune_transform, normalize_clip

__all__ = ["FINETUNE_EXPECTED", "FinetuneSettings", "Classifier", "static_clip", "classifier_from_checkpoint",
           "load_classifier", "finetune", "predict_videos"]

FINETUNE_EXPECTED = "a .pt file written by s2vc eval finetune"


@dataclass
class FinetuneSettings(EvalSettings):
    """``EvalSettings`` plus the finetuning: ``epochs`` of Adam at ``lr`` (cosine decay) with
    ``weight_decay``, the classifier's ``dropout``, ``static`` clips, the checkpoint ``save``
    (default: ``out`` with .pt), ``resume`` from it, and a ``progress`` bar on stderr."""

    epochs: int = 30
    lr: float = 1e-4
    weight_decay: float = 1e-4
    dropout: float = 0.5
    static: bool = False
    save: str | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.protocol != "coclr":
            raise ValueError("finetune: the test averages the softmax over windows x crops; protocol 'concat' is "
                             "for the frozen-feature evaluations (expected protocol 'coclr')")
        if self.resume and not (self.save or self.out):
            raise ValueError("finetune: resuming needs the checkpoint's path: give --save (or --out, whose .pt it is)")

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the finetuned checkpoint goes: ``save``, else ``out`` with .pt, else nowhere."""
        return Path(self.save) if self.save else (Path(self.out).with_suffix(".pt") if self.out else None)


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


def classifier_from_checkpoint(ckpt: object, source, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """(classifier in eval mode, its config) of a loaded finetune checkpoint; ValueError for
    anything else (a pretrain checkpoint has no classifier)."""
    if not isinstance(ckpt, dict) or "classifier" not in ckpt:
        raise ValueError(f"{source}: not a finetune checkpoint (no 'classifier'); run `s2vc eval finetune` "
                         f"first (a pretrain checkpoint has no classifier)")
    cfg = ckpt["config"]
    model = Classifier(build_backbone(cfg["backbone"]), cfg["num_classes"], cfg["dropout"])
    model.load_state_dict(ckpt["classifier"])
    return model.to(device).eval(), cfg


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """A ``s2vc eval finetune`` checkpoint: (classifier in eval mode, its config). Raises
    ValueError for anything else (a pretrain checkpoint has no classifier)."""
    ckpt, file = read_checkpoint(path, what="finetune", expected=FINETUNE_EXPECTED)
    return classifier_from_checkpoint(ckpt, file, device)


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


# --------------------------------------------------------------------------------------------
# the finetuning run


def _run_config(settings: FinetuneSettings, backbone: nn.Module, classes: list[str]) -> dict:
    """What the checkpoint records of the run; a resumed run must match it (the cosine
    schedule's length is the epoch count, so all of these)."""
    s = settings
    return {"backbone": backbone.backbone_name, "num_classes": len(classes), "dropout": s.dropout,
            "classes": list(classes), "static": s.static, "dataset": s.dataset, "fold": s.fold, "size": s.size,
            "frames": s.frames, "stride": s.stride, "pretrained": s.checkpoint or s.weights, "epochs": s.epochs,
            "lr": s.lr, "weight_decay": s.weight_decay, "batch_size": s.batch_size, "seed": s.seed}


def _resume(save: Path, config: dict, model: nn.Module, opt, sched) -> tuple[int, list[dict]]:
    """Load the run at ``save`` into model / optimiser / schedule / RNG; (epochs done, history).
    Raises ValueError when it was trained with other settings than ``config``."""
    ckpt, _ = read_checkpoint(save, what="finetune", expected=FINETUNE_EXPECTED)
    saved = ckpt.get("config", {})
    if saved.get("backbone") != config["backbone"] or saved.get("num_classes") != config["num_classes"]:
        raise ValueError(f"finetune: {save} is a {saved.get('backbone')} / {saved.get('num_classes')}-class run, "
                         f"not {config['backbone']} / {config['num_classes']}")
    changed = {key: (saved.get(key), v) for key, v in config.items() if key in saved and saved[key] != v}
    if changed:
        raise ValueError(f"finetune: {save} was trained with other settings: "
                         + ", ".join(f"{key} {a!r} -> {b!r}" for key, (a, b) in changed.items())
                         + "; resume with the same ones, or write to another --save")
    model.load_state_dict(ckpt["classifier"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"])
    print(f"finetune: resuming {save} at epoch {ckpt['epoch']}", file=sys.stderr)
    return ckpt["epoch"], list(ckpt["history"])


def _train_epoch(model: nn.Module, opt, sched, train, epoch: int, settings: FinetuneSettings, device,
                 skipped: SkippedCounter) -> dict:
    """One epoch over ``train``; {"epoch", "loss" (mean), "train_top1"}."""
    s = settings
    train.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(train, batch_size=s.batch_size, shuffle=True, drop_last=True,
                                         num_workers=s.workers, collate_fn=collate_clips,
                                         generator=torch.Generator().manual_seed(s.seed + epoch))
    model.train()
    losses, right, seen = [], 0, 0
    for batch in tqdm(loader, desc=f"finetune {epoch + 1}/{s.epochs}", leave=False, file=sys.stderr,
                      disable=not s.progress):
        skipped.update(batch)
        if batch["label"].numel() < 2:
            continue
        x = normalize_clip((static_clip(batch["q"]) if s.static else batch["q"]).to(device))
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
                         f"give no full batch of {s.batch_size} (lower --batch-size)")
    loss = sum(losses) / len(losses)
    if not math.isfinite(loss):
        raise FloatingPointError(f"finetune: non-finite loss in epoch {epoch + 1}; lower --lr")
    return {"epoch": epoch + 1, "loss": loss, "train_top1": right / max(1, seen)}


def finetune(settings: FinetuneSettings) -> Evaluation:
    """Finetune, checkpoint every epoch, test with windows x crops; JSON to ``settings.out``."""
    s = settings
    device = eval_device(s.device)
    torch.manual_seed(s.seed)
    train = eval_dataset(s, "train")
    train.two_clips, train.transform_q, train.seed = False, finetune_transform(s.size), s.seed
    test = eval_dataset(s, test_split(s.dataset))
    backbone, desc = eval_backbone(s)
    model = Classifier(backbone, len(train.classes), s.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.epochs * max(1, len(train) // s.batch_size))
    save, config = s.checkpoint_path, _run_config(s, backbone, train.classes)
    start, history = _resume(save, config, model, opt, sched) if s.resume and save and save.exists() else (0, [])
    skipped = SkippedCounter()
    for epoch in range(start, s.epochs):
        history.append(_train_epoch(model, opt, sched, train, epoch, s, device, skipped))
        if save:
            atomic_torch_save({"classifier": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                               "rng": torch.get_rng_state(), "config": config}, save)
    probs, labels = predict_videos(model, test, num_clips=s.num_clips, overlap=s.overlap, size=s.size,
                                   crops=s.crops, device=device, batch_size=s.batch_size, workers=s.workers,
                                   static=s.static, skipped=skipped)
    result = {"evaluation": "finetune", "dataset": s.dataset, "fold": s.fold, "backbone": desc,
              "checkpoint": s.checkpoint, "static": s.static, "epochs": s.epochs, "lr": s.lr, "crops": s.crops,
              "num_clips": s.num_clips, "overlap": s.overlap, "size": s.size, "frames": s.frames,
              "stride": s.stride, "top1": top1(probs, labels),
              "per_class": per_class_accuracy(probs.argmax(1), labels, len(train.classes)),
              "classes": list(train.classes), "test_videos": len(labels), "history": history,
              "saved": str(save) if save else None}
    views = f"{s.num_clips} windows x {'ten crops' if s.crops == 10 else 'centre crop'}"
    last = (f"loss {history[-1]['loss']:.3f}, train top-1 {100 * history[-1]['train_top1']:.1f}"
            if history else "-")
    table = format_table(f"finetune{' (static clips)' if s.static else ''}, {s.dataset} fold {s.fold} ({desc})",
                         [("top-1", f"{100 * result['top1']:6.2f}  ({len(labels)} test videos, {views})"),
                          ("last epoch", last)])
    return finish(result, table, skipped, s.out)
