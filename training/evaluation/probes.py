"""What frozen features carry: motion and look probes on the synthetic set, the frame-difference
reference, and a clip bank that decodes the evaluation windows once for many checkpoints.

On the synthetic static-bias set's *test* split every look (scene, actor shape, actor colour)
is drawn at random, independently of the class (the motion). So, on that split,

- the **motion probe** (a linear classifier predicting the class) measures motion content free
  of the static bias, and
- the **look probe** (one linear classifier per look) measures how much appearance the
  features carry: the paper's mechanism says S²VC should keep less of it than MoCo.

Both train on half of the test split's groups and test on the other half (``probe_halves``:
groups alternate), so no video and no group is on both sides. Chance is 1 / (number of values).

``frame_difference_features`` is the learning-free reference: signed frame differences of
the grey clip pooled to a coarse grid. It is what "some motion, no learning" scores.

``ClipBank`` holds the decoded, transformed windows of one split in memory (float16), so an
experiment that evaluates dozens of snapshots decodes each video once.

``evaluate_probes(ProbeSettings)`` is ``s2vc eval probes``: both probes of one backbone (or of
the frame difference) on the synthetic test split.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.datasets import EvalWindows, SkippedCounter, collate_windows
from ..data.layouts import group_of
from .common import Evaluation, LinearEvalSettings, eval_backbone, eval_dataset, eval_device, finish, format_table
from .frozen import linear_probe
from .features import eval_window_transform
from ..data.transforms import normalize_clip

__all__ = [
    "LOOKS",
    "PROBE_WEIGHT_DECAY",
    "ClipBank",
    "group_of",
    "probe_halves",
    "frame_difference_features",
    "motion_probe",
    "look_probe",
    "ProbeSettings",
    "evaluate_probes",
]

LOOKS = ("scene", "shape", "colour")


def probe_halves(groups: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the probe's train half (odd groups) and test half (even groups): disjoint
    groups, as UCF101's splits keep a group on one side. Raises when a side is empty, or, given
    the class ``labels``, when a class has videos in one half only (a probe scores only classes
    it trained on: a split holding one group per class would score 0 whatever the features)."""
    groups = torch.as_tensor(groups)
    train, test = torch.nonzero(groups % 2 == 1).flatten(), torch.nonzero(groups % 2 == 0).flatten()
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"a probe needs videos of at least two groups; got groups {sorted(set(groups.tolist()))}")
    if labels is not None:
        labels = torch.as_tensor(labels)
        one_side = sorted(set(labels[train].tolist()) ^ set(labels[test].tolist()))
        if one_side:
            raise ValueError(f"classes {one_side} have videos in groups of one parity only (odd groups train the "
                             "probe, even ones test it): each class needs both")
    return train, test


# A probe trains on some tens of videos with hundreds of feature dimensions, each standardised
# by the probe's BatchNorm: without a firm L2 it fits noise dimensions (measured on constructed
# features: weight decay 1e-4 lost 4-30 points that 1e-2 kept).
PROBE_WEIGHT_DECAY = 1e-2


def _probe(feats: torch.Tensor, target: torch.Tensor, groups: torch.Tensor, **kw) -> float:
    train, test = probe_halves(groups)
    k = int(target.max()) + 1
    return linear_probe(feats[train], target[train], feats[test], target[test], num_classes=k, **kw)["top1"]


def motion_probe(feats: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, *, seed: int = 0,
                 epochs: int = 100, lr: float = 1e-2, weight_decay: float = PROBE_WEIGHT_DECAY,
                 min_steps: int = 1000) -> float:
    """Top-1 of a linear classifier of the class (the motion) trained on the odd groups and tested
    on the even groups of the same (look-randomised) split. feats (N, C), labels/groups (N,)."""
    return _probe(feats, labels, groups, seed=seed, epochs=epochs, lr=lr, weight_decay=weight_decay,
                  min_steps=min_steps)


def look_probe(feats: torch.Tensor, looks: dict[str, torch.Tensor], groups: torch.Tensor, *, seed: int = 0,
               epochs: int = 100, lr: float = 1e-2, weight_decay: float = PROBE_WEIGHT_DECAY,
               min_steps: int = 1000) -> dict[str, float]:
    """Top-1 of one linear classifier per look (``looks``: name -> long (N,) value index), trained
    on the odd groups, tested on the even ones. Returns {look: top-1}."""
    return {name: _probe(feats, target, groups, seed=seed, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         min_steps=min_steps) for name, target in looks.items()}


def frame_difference_features(clips: torch.Tensor, owner: torch.Tensor, videos: int, grid: int = 16) -> torch.Tensor:
    """The learning-free motion reference: per window, the grey frames average-pooled to
    ``grid`` x ``grid``, differenced over time and flattened ((T - 1) * grid² values); per video,
    the mean over its windows. clips float (N, C, T, H, W) in [0, 1], owner long (N,) in
    [0, videos). Returns float (videos, (T - 1) * grid²)."""
    if clips.ndim != 5 or clips.shape[2] < 2:
        raise ValueError(f"expected clips (N, C, T>=2, H, W), got {tuple(clips.shape)}")
    grey = clips.float().mean(dim=1)                                         # (N, T, H, W)
    small = F.adaptive_avg_pool2d(grey, grid)                                # (N, T, g, g)
    diff = (small[:, 1:] - small[:, :-1]).flatten(1)                         # (N, (T-1) g²)
    total = torch.zeros(videos, diff.shape[1]).index_add_(0, owner, diff)
    return total / torch.bincount(owner, minlength=videos).clamp_min(1)[:, None]


@dataclass
class ClipBank:
    """The evaluation windows of one split, decoded once: ``clips`` float16 (N, C, T, S, S) in
    [0, 1] after ``eval_transform(S)``, ``owner`` long (N,) = the window's video position,
    ``labels`` long (V,), ``video_ids`` (V), ``root`` the dataset root (synthetic: its looks)."""

    clips: torch.Tensor
    owner: torch.Tensor
    labels: torch.Tensor
    video_ids: list[str]
    root: Path
    skipped: list[str]

    @classmethod
    def from_dataset(cls, dataset, *, num_clips: int | None = 10, overlap: float = 0.5, size: int = 112,
                     workers: int = 0, crops: int = 1, progress: str | None = None) -> "ClipBank":
        """``progress``: the label of a bar on stderr over the videos decoded (None: no bar)."""
        windows = EvalWindows(dataset, num_clips, overlap, eval_window_transform(size, crops))
        loader = torch.utils.data.DataLoader(windows, batch_size=8, num_workers=workers, collate_fn=collate_windows)
        counter = SkippedCounter()
        clips, owner, labels, ids, n = [], [], [], [], 0
        for batch in tqdm(loader, desc=progress, unit="batch", file=sys.stderr, disable=progress is None,
                          leave=False):
            counter.update(batch)
            clips.append(batch["clips"].half())
            owner.append(batch["video"] + n)
            labels.append(batch["label"])
            n += len(batch["label"])
            ids += [dataset.records[i].video_id for i in batch["index"].tolist()]
        if not ids:
            raise ValueError(f"every one of the {len(dataset)} videos was skipped:\n{counter.report()}")
        root = dataset.root
        return cls(torch.cat(clips), torch.cat(owner), torch.cat(labels), ids, root,
                   list(dict.fromkeys(counter.messages)))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def groups(self) -> torch.Tensor:
        return torch.tensor([group_of(v) for v in self.video_ids])

    def looks(self) -> dict[str, torch.Tensor]:
        """{look: long (V,)} value indices of each video's scene, shape and colour (synthetic set)."""
        from ..data.synthetic import load_looks
        table = load_looks(self.root)
        out = {}
        for name in LOOKS:
            values = [table[v][name] for v in self.video_ids]
            names = sorted(set(values))
            out[name] = torch.tensor([names.index(x) for x in values])
        return out

    @torch.inference_mode()
    def features(self, backbone: nn.Module, *, device: torch.device | str = "cpu", batch_size: int = 32) -> torch.Tensor:
        """Per video, the mean over its windows of the pooled features: float (V, C)."""
        backbone.eval().to(device)
        pooled = torch.cat([backbone(normalize_clip(self.clips[i:i + batch_size].to(device).float())).float().cpu()
                            for i in range(0, len(self.clips), batch_size)])
        total = torch.zeros(len(self), pooled.shape[1]).index_add_(0, self.owner, pooled)
        return total / torch.bincount(self.owner, minlength=len(self)).clamp_min(1)[:, None]

    def frame_difference(self, grid: int = 16) -> torch.Tensor:
        return frame_difference_features(self.clips, self.owner, len(self), grid)


# --------------------------------------------------------------------------------------------
# the evaluation of `s2vc eval probes`


@dataclass
class ProbeSettings(LinearEvalSettings):
    """``LinearEvalSettings`` for the probes (a firmer default L2: ``PROBE_WEIGHT_DECAY``), and
    ``frame_difference``: probe the learning-free frame-difference feature instead of a backbone."""

    weight_decay: float = PROBE_WEIGHT_DECAY
    frame_difference: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.dataset != "synthetic":
            raise ValueError(f"probes: the look labels exist only in the synthetic set (expected dataset "
                             f"'synthetic', got {self.dataset!r})")
        if self.protocol != "coclr":
            raise ValueError("probes: features are the mean over windows (expected protocol 'coclr', "
                             f"got {self.protocol!r})")


def evaluate_probes(settings: ProbeSettings) -> Evaluation:
    """Motion and look probes of a backbone (or the frame difference) on the synthetic set's
    test split; ``result["motion"]``, ``result["look"]`` ({look: top-1}), JSON to ``settings.out``."""
    s = settings
    bank = ClipBank.from_dataset(eval_dataset(s, "test"), num_clips=s.num_clips, overlap=s.overlap,
                                 size=s.size, workers=s.workers, crops=s.crops,
                                 progress="decoding test" if s.progress else None)
    if s.frame_difference:
        feats, desc = bank.frame_difference(), "frame difference (no learning)"
    else:
        backbone, desc = eval_backbone(s)
        feats = bank.features(backbone, device=eval_device(s.device), batch_size=s.batch_size)
    looks, groups = bank.looks(), bank.groups
    kw = dict(seed=s.seed, epochs=s.epochs, lr=s.lr, weight_decay=s.weight_decay)
    motion = motion_probe(feats, bank.labels, groups, **kw)
    look = look_probe(feats, looks, groups, **kw)
    chance = {k: 1 / (int(v.max()) + 1) for k, v in looks.items()}
    classes = int(bank.labels.max()) + 1
    result = {"evaluation": "probes", "backbone": desc, "checkpoint": s.checkpoint, "weights": s.weights,
              "videos": len(bank), "motion": motion, "look": look, "chance": {"motion": 1 / classes, **chance}}
    rows = [("motion (class)", f"{100 * motion:6.2f}  (chance {100 / classes:.2f})")]
    rows += [(f"look: {k}", f"{100 * v:6.2f}  (chance {100 * chance[k]:.2f})") for k, v in look.items()]
    table = format_table(f"probes on the synthetic test split, odd groups train / even groups test, "
                         f"{len(bank)} videos ({desc})", rows)
    skipped = SkippedCounter()
    skipped.update(bank.skipped)
    return finish(result, table, skipped, s.out)
