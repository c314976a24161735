"""MoCo over S²VC keys in PyTorch Lightning: the key made by ``s2vc.MotionPreserve`` on the GPU.

The trainer is Lightning's; S²VC enters in one hook. A batch arrives normalised, as most video
pipelines hand it over; ``on_after_batch_transfer`` (batch already on the device, before
``training_step``) replaces the key clips by their motion-preserved versions, un-normalising
and re-normalising them (``mean`` / ``std``). The MoCo module and the backbones are this
project's (``training/pretrain/moco.py``, ``training/models.py``)::

    model = S2VCMoCo(MoCoSettings(backbone="r3d_18"))
    lightning.Trainer(max_steps=...).fit(model, loader)   # loader: {"q", "k"} normalised (B, C, T, H, W)

Run on the project's synthetic set (rendered into the cache on first use)::

    python examples/lightning_moco.py --max-steps 20 --batch-size 4 --frames 8
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import lightning as L
import torch
import torch.nn.functional as F

from s2vc import MotionPreserve
from s2vc.training.data.transforms import KINETICS_MEAN, KINETICS_STD, normalize_clip
from s2vc.training.models import Encoder
from s2vc.training.pretrain.moco import MoCo


@dataclass
class MoCoSettings:
    """backbone: one of ``training.models.BACKBONES``; dim / queue / momentum / temperature: MoCo's
    (C, K, m, T); lr / weight_decay: Adam's; flow / alpha / strategy: the key's
    (``MotionPreserve``; None = the bundled flow and its calibrated α); mean / std: the
    normalisation the batches carry."""

    backbone: str = "small"
    dim: int = 128
    queue: int = 2048
    momentum: float = 0.999
    temperature: float = 0.07
    lr: float = 1e-3
    weight_decay: float = 1e-4
    flow: str | None = None
    alpha: float | None = None
    strategy: str = "zero"
    seed: int | None = None
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD


class S2VCMoCo(L.LightningModule):
    """MoCo v2 whose positive key is the motion-preserved second clip (the paper's eq. 6)."""

    def __init__(self, settings: MoCoSettings | None = None):
        super().__init__()
        settings = settings or MoCoSettings()
        self.save_hyperparameters(asdict(settings))
        self.settings = settings
        self.moco = MoCo(Encoder(settings.backbone, settings.dim), dim=settings.dim, K=settings.queue,
                         m=settings.momentum, T=settings.temperature)
        # a transform, not a layer: it has no parameters, so the optimiser and checkpoints skip it
        self.make_key = MotionPreserve(settings.flow, alpha=settings.alpha, strategy=settings.strategy,
                                       layout="BCTHW", mean=settings.mean, std=settings.std, seed=settings.seed)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """batch "q", "k": float (B, C, T, H, W), normalised, on the device; the key replaced."""
        if self.trainer is not None and self.trainer.training:
            batch = {**batch, "k": self.make_key(batch["k"])}
            self.last_preserved = self.make_key.stats.preserved      # (B,) fraction of latents kept
        return batch

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits, labels = self.moco(batch["q"], batch["k"])        # logits: Nx(1+K), labels: N
        loss = F.cross_entropy(logits.float(), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
        self.log("train/preserved", self.last_preserved.mean(), batch_size=labels.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.moco.encoder_q.parameters(), lr=self.settings.lr,
                                weight_decay=self.settings.weight_decay)


def normalised_pairs(items: list) -> dict:
    """The project's ``collate_clips`` with "q" and "k" normalised (KINETICS_MEAN / STD), as a
    pipeline outside this project would hand its batches over."""
    from s2vc.training.data.datasets import collate_clips
    batch = collate_clips(items)
    return {"q": normalize_clip(batch["q"]), "k": normalize_clip(batch["k"])}


def main(argv: list[str] | None = None) -> None:
    from s2vc.training.data.datasets import build_dataset
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="small", help="backbone (r3d_18, s3d or small)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--stride", type=int, default=2, help="temporal stride of a clip's frames")
    p.add_argument("--batch-size", type=int, default=4, help="clip pairs per step (divides the queue, 2048)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--max-steps", type=int, default=20, help="optimisation steps")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="where to train (default: CUDA when available, else the CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    data = build_dataset("synthetic", frames=args.frames, stride=args.stride, size=None)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, collate_fn=normalised_pairs)
    accelerator = {None: "auto", "cpu": "cpu", "cuda": "gpu"}[args.device]
    trainer = L.Trainer(max_steps=args.max_steps, accelerator=accelerator, devices=1,
                        enable_progress_bar=not args.no_progress,
                        enable_checkpointing=False, logger=False)
    trainer.fit(S2VCMoCo(MoCoSettings(backbone=args.backbone)), loader)


if __name__ == "__main__":
    main()
