"""What the evaluations of a backbone share: their settings, the dataset and backbone those
settings name, and the shape of what an evaluation hands back.

``EvalSettings`` is everything ``s2vc eval retrieval`` (and, extended, linear / temporal-order /
probes / finetune) needs: which backbone (``checkpoint`` — a file or a pretrain run folder —,
``weights`` — a backbone state_dict from elsewhere, e.g. torchvision's r3d_18, keys under any
common prefix —, or a ``backbone`` name alone for a randomly initialised baseline), which videos (``dataset``,
``root``, ``fold``, ``synthetic``), how windows are cut and viewed (``frames``, ``stride``,
``size``, ``decode_size``, ``num_clips``, ``overlap``, ``protocol``, ``crops``), how it runs
(``batch_size``, ``workers``, ``device``, ``seed``) and where the JSON goes (``out``).

An evaluation returns an ``Evaluation``: the results dict (exactly what is written as JSON)
carrying the ``table`` a command prints and ``notes`` for stderr (skipped videos, caveats).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..data.datasets import ClipDataset, SkippedCounter, build_dataset
from .checkpoints import load_backbone, load_weights
from .features import PROTOCOLS
from ..models import BACKBONES, build_backbone
from ..data.synthetic import SyntheticSet

__all__ = ["EVAL_DATASETS", "EvalSettings", "LinearEvalSettings", "Evaluation", "test_split", "eval_device",
           "eval_dataset", "eval_backbone", "format_table", "write_json", "finish", "settings_summary"]

# the labelled datasets an evaluation can read (the folder dataset has no labels)
EVAL_DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics")


@dataclass
class EvalSettings:
    """Settings of a frozen-backbone evaluation (see the module docstring); the defaults are
    ``s2vc eval``'s except ``workers`` (the command: up to 4)."""

    checkpoint: str | None = None
    weights: str | None = None
    backbone: str | None = None
    dataset: str = "synthetic"
    root: str | None = None
    fold: int = 1
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    frames: int = 16
    stride: int = 2
    size: int = 112
    decode_size: int = 128
    num_clips: int | None = 10
    overlap: float = 0.5
    protocol: str = "coclr"
    crops: int = 1
    batch_size: int = 32
    workers: int = 0
    device: str | None = None
    seed: int = 0
    out: str | None = None
    progress: bool = False        # a bar on stderr while the videos' features are extracted

    def __post_init__(self):
        if self.dataset not in EVAL_DATASETS:
            raise ValueError(f"an evaluation needs a labelled dataset, one of {EVAL_DATASETS}, got {self.dataset!r}"
                             + (" (the folder dataset is unlabelled)" if self.dataset == "folder" else ""))
        if self.checkpoint and self.weights:
            raise ValueError("give a pretrain checkpoint (--checkpoint) or backbone weights (--weights), not both")
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.crops not in (1, 10):
            raise ValueError(f"crops must be 1 (centre) or 10 (ten-crop), got {self.crops}")


@dataclass
class LinearEvalSettings(EvalSettings):
    """``EvalSettings`` plus the linear classifier trained on the frozen features."""

    epochs: int = 100
    lr: float = 1e-2
    weight_decay: float = 1e-4


class Evaluation(dict):
    """The results of one evaluation: this dict is what is written as JSON; ``table`` is what a
    command prints on stdout, ``notes`` the lines for stderr (skipped videos, caveats)."""

    def __init__(self, result: dict, table: str = "", notes: Sequence[str] = ()):
        super().__init__(result)
        self.table = table
        self.notes = list(notes)


def test_split(dataset: str) -> str:
    """The held-out split's name: kinetics has "val", the others "test"."""
    return "val" if dataset == "kinetics" else "test"


# pytest would collect test_split as a test
test_split.__test__ = False


def eval_device(device: str | torch.device | None) -> torch.device:
    """``device``, or cuda when available, else cpu."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def eval_dataset(settings: EvalSettings, split: str) -> ClipDataset:
    """The ``split`` of the settings' dataset, as whole videos (``two_clips=False``).

    A synthetic set already built at ``root`` (its ``params.json`` there) is read as it is;
    otherwise the synthetic set ``settings.synthetic`` is built there (or in the cache).
    """
    name, synthetic = settings.dataset, None
    if name == "synthetic":
        if settings.root and (Path(settings.root) / "params.json").exists():
            name = "ucf101"              # the synthetic set's layout is UCF101's
        else:
            synthetic = settings.synthetic
    return build_dataset(name, settings.root, split, settings.fold, frames=settings.frames, stride=settings.stride,
                         size=settings.decode_size, two_clips=False, synthetic=synthetic)


def eval_backbone(settings: EvalSettings) -> tuple[nn.Module, str]:
    """(the backbone to evaluate, in eval mode, a description for tables): the checkpoint's, the
    weights' (the description says how they were read: prefix stripped, head dropped), or,
    without either, a randomly initialised ``settings.backbone`` (seeded by ``settings.seed``)."""
    if settings.weights:
        return load_weights(settings.weights, settings.backbone)
    if settings.checkpoint:
        model = load_backbone(settings.checkpoint, settings.backbone)
        return model, f"{model.backbone_name} from {settings.checkpoint}"
    if not settings.backbone:
        raise ValueError("no backbone to evaluate: expected a pretrain checkpoint (--checkpoint), backbone weights "
                         f"(--weights), or a backbone name alone (--backbone, one of {BACKBONES}) for a randomly "
                         "initialised baseline")
    torch.manual_seed(settings.seed)
    model = build_backbone(settings.backbone).eval()
    model.backbone_name = settings.backbone
    return model, f"{settings.backbone}, random init (seed {settings.seed})"


def format_table(title: str, rows: list[tuple[str, str]]) -> str:
    """A title line, then one indented ``name  value`` line per row, names aligned."""
    width = max(len(r[0]) for r in rows)
    return "\n".join([title] + [f"  {k:<{width}}  {v}" for k, v in rows])


def write_json(result: dict, out: str | os.PathLike | None) -> None:
    """Write ``result`` to ``out`` atomically (folders made as needed); nothing when ``out`` is None."""
    if out:
        from s2vc.engine.checkpoint import atomic_write_text
        atomic_write_text(out, json.dumps(result, indent=2))


def finish(result: dict, table: str, skipped: SkippedCounter, out: str | os.PathLike | None) -> Evaluation:
    """``result`` with the videos left out (``"skipped"``), written to ``out``, as an Evaluation
    whose notes report the skipped videos."""
    result["skipped"] = list(dict.fromkeys(skipped.messages))
    write_json(result, out)
    return Evaluation(result, table, [skipped.report()] if skipped.total else [])


def settings_summary(settings: EvalSettings, evaluation: str) -> dict:
    """The keys every frozen-feature result starts with (what was evaluated, and how)."""
    names = ("dataset", "fold", "frames", "stride", "size", "num_clips", "overlap", "crops", "protocol", "checkpoint",
             "weights")
    return {"evaluation": evaluation, **{k: getattr(settings, k) for k in names}}
