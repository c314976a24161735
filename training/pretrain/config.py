"""The settings of one pretraining run (``PretrainConfig``), as ``s2vc pretrain``'s flags,
a TOML file (configs/*.toml) or another library (the experiments) give them; and how they are
recorded in a run's checkpoint (a flat dict, the same keys the flags have).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.datasets import DATASETS
from .keys import MODES, PREGENERATED_MODES
from ..models import BACKBONES
from ..data.synthetic import SyntheticSet

__all__ = ["PretrainConfig", "RESUME_MUST_MATCH", "SYNTHETIC_KEYS"]

# the synthetic set's fields under their flat (flag and checkpoint) names
SYNTHETIC_KEYS = {"synthetic_seed": "seed", "synthetic_bias": "bias",
                  "synthetic_train_per_class": "train_per_class", "synthetic_test_per_class": "test_per_class",
                  "synthetic_camera": "camera", "synthetic_val_per_class": "val_per_class"}

# what a resumed run must share with its checkpoint (--max-steps, --epochs, workers, threads,
# device and logging may change)
RESUME_MUST_MATCH = ("mode", "dataset", "root", "fold", "dim", "queue", "moco_m", "moco_t", "frames", "stride",
                     "size", "decode_size", "flow", "alpha", "strategy", "keep_fraction", "detail", "clamp_key", "batch_size", "lr",
                     "weight_decay", "warmup_epochs", "lr_steps", "seed", "keys", *SYNTHETIC_KEYS)

LEFT_TO_FLOW = ("alpha", "keep_fraction")   # None: the flow's calibrated value, resolved at setup


@dataclass(kw_only=True)
class PretrainConfig:
    """Everything ``pretrain`` needs; the field names are ``s2vc pretrain``'s flags (``--moco-m``
    is ``moco_m``), and ``synthetic`` stands for the four ``--synthetic-*`` flags.

    Sizes are in pixels, ``frames`` per clip taken every ``stride`` frames; ``batch_size`` is per
    process; ``queue`` must be a multiple of the global batch; ``alpha`` None = the flow
    checkpoint's calibrated one; ``decode_size`` None = frames as stored; ``max_steps`` None =
    all ``epochs`` (0: write the initial checkpoint, the start every arm of the seed shares, and
    stop); ``device`` None = cuda when available, else cpu.
    """

    out: str                                   # run folder: checkpoint.pt, config.json, logs/, snapshots/
    dataset: str = "synthetic"
    root: str | None = None                    # dataset root (synthetic: cache folder)
    fold: int = 1
    mode: str = "s2vc"
    resume: bool = False
    # model
    backbone: str = "small"
    dim: int = 128
    queue: int = 2048
    moco_m: float = 0.999
    moco_t: float = 0.07
    # clips
    frames: int = 16
    stride: int = 2
    size: int = 64
    decode_size: int | None = None
    workers: int = 0
    strict: bool = False
    cache_videos: bool = False
    # generator (the s2vc key; the tfd key takes the flow's resolution)
    flow: str | None = None
    alpha: float | None = None
    strategy: str = "zero"
    keep_fraction: float | None = None         # strategy topk: None = the flow's calibrated fraction
    detail: str = "keep"                       # the fine detail: "keep" (the paper) or "dynamic"
    gen_backend: str = "auto"
    clamp_key: bool = True                     # the key clipped to [0, 1], as a mirror's 8-bit frames hold it
    keys: str | None = None                    # a mirror (s2vc generate --dataset) holding the keys
    require_flow_fit: bool = False             # s2vc: a flow that does not fit the data is fatal
    # optimisation
    epochs: int = 20
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: float = 1
    lr_steps: tuple[int, ...] = ()             # epochs where lr is multiplied by 0.1
    amp: bool = False
    ckpt_every: int = 100
    seed: int = 0
    device: str | None = None
    threads: int | None = None
    no_progress: bool = False
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    snapshot_every: int = 0
    log_videos: int = 0                         # every N steps a query/key clip pair to TensorBoard (0: never)

    def __post_init__(self):
        self.lr_steps = tuple(self.lr_steps)   # a TOML array or a flag's list

    def check(self) -> None:
        """Raise ValueError naming the setting when one cannot work (before any data is built)."""
        choices = {"mode": MODES, "dataset": DATASETS, "backbone": BACKBONES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if (self.max_steps is not None and self.max_steps < 0) or self.snapshot_every < 0 or self.ckpt_every < 1:
            raise ValueError(f"need --max-steps >= 0 (or none; 0 writes the initial state only), --snapshot-every "
                             f">= 0 and --ckpt-every >= 1, got "
                             f"{self.max_steps}, {self.snapshot_every}, {self.ckpt_every}")
        if self.log_videos < 0:
            raise ValueError(f"--log-videos must be >= 0 (0: no videos), got {self.log_videos}")
        if self.frames < 2:
            raise ValueError(f"--frames must be >= 2 (the temporal STD of a key clip needs T >= 2), got {self.frames}")
        if self.keys is not None and self.mode not in PREGENERATED_MODES:
            raise ValueError(f"--keys MIRROR holds pre-generated keys of modes {PREGENERATED_MODES}, "
                             f"not of mode {self.mode!r}")
        if self.keep_fraction is not None and self.strategy != "topk":
            raise ValueError(f"--keep-fraction is the fraction in (0, 1] that --strategy topk keeps, got "
                             f"{self.keep_fraction} with --strategy {self.strategy}")
        if self.keep_fraction is not None:
            from s2vc.engine.defaults import check_keep_fraction   # the engine's one bound, (0, 1]
            try:
                check_keep_fraction(self.keep_fraction)
            except ValueError as exc:
                raise ValueError(f"--keep-fraction: {exc}") from None
        from s2vc.engine.generator import DETAILS
        if self.detail not in DETAILS:
            raise ValueError(f"detail must be one of {DETAILS}, got {self.detail!r}")
        if self.detail != "keep" and (self.mode != "s2vc" or self.keys is not None):
            raise ValueError(f"--detail {self.detail} is an option of the s2vc generator made each step (mode s2vc "
                             f"without --keys: a mirror holds keys of the paper's residual), got mode {self.mode!r}"
                             + (" with --keys" if self.keys is not None else ""))
        if self.mode == "oracle" and self.dataset != "synthetic":
            raise ValueError(f"mode 'oracle' needs the actor masks of the synthetic set (--dataset synthetic), "
                             f"got --dataset {self.dataset}")

    def to_dict(self) -> dict:
        """The flat record kept in checkpoints and config.json: one key per flag (the synthetic
        set as ``synthetic_*``), lists for sequences; plain types only (weights_only loads)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "synthetic"}
        out["lr_steps"] = list(self.lr_steps)
        out.update({flat: getattr(self.synthetic, name) for flat, name in SYNTHETIC_KEYS.items()})
        return out

    @classmethod
    def from_dict(cls, record: dict) -> "PretrainConfig":
        """The settings a checkpoint's ``config`` records, of this code or the old one (which
        also kept the command line's other entries: they are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"synthetic"}
        values = {k: v for k, v in record.items() if k in names}
        defaults = SyntheticSet()
        values["synthetic"] = SyntheticSet(**{name: record.get(flat, getattr(defaults, name))
                                              for flat, name in SYNTHETIC_KEYS.items()})
        return cls(**values)

    def changed_from(self, record: dict) -> dict[str, tuple]:
        """{setting: (recorded, asked)} for the ``RESUME_MUST_MATCH`` settings that differ from a
        checkpoint's ``config`` record (settings the record lacks are not compared, nor alpha /
        keep_fraction asked as None: left to the flow, the record holds them resolved; ``keys``
        in two folders holding the same mirror — the same manifest file, hard-linked, or one of the
        same bytes — are the same keys; a ``flow`` at another path with the same weights, by its
        checkpoint's hash, is the same flow: a clone fits the set's flow again elsewhere; an alpha
        or keep_fraction within ``SAME_THRESHOLD`` of the recorded one is the same: ``ablate
        preserve`` measures its alphas again on every call, and another machine's arithmetic may
        differ in the last digits)."""
        mine = self.to_dict()
        return {k: (record[k], mine[k]) for k in RESUME_MUST_MATCH
                if k in record and not (k in LEFT_TO_FLOW and mine[k] is None)
                and _plain(record[k]) != _plain(mine[k])
                and not (k in LEFT_TO_FLOW and _same_threshold(record[k], mine[k]))
                and not (k == "keys" and _same_mirror(record[k], mine[k]))
                and not (k == "flow" and _same_flow(record[k], mine[k]))}


SAME_THRESHOLD = 1e-6      # relative: thresholds closer than this are one setting


def _same_threshold(a, b) -> bool:
    """Two alphas / keep fractions that differ only in rounding (``SAME_THRESHOLD``, relative)."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return numbers and math.isclose(a, b, rel_tol=SAME_THRESHOLD, abs_tol=1e-12)


def _same_mirror(a, b) -> bool:
    """Whether folders ``a`` and ``b`` hold the same mirror: their manifests (which name every
    video, its windows and the settings the keys were made with) are one file or equal bytes."""
    if a is None or b is None:
        return False
    ma, mb = Path(a) / "manifest.json", Path(b) / "manifest.json"
    try:
        return os.path.samefile(ma, mb) or ma.read_bytes() == mb.read_bytes()
    except OSError:
        return False


def _same_flow(a, b) -> bool:
    """Whether flow checkpoints ``a`` and ``b`` hold the same weights (one file, or the same
    ``sha256`` of every tensor, which s2vc flow checkpoints carry)."""
    if not a or not b:
        return False
    try:
        if os.path.samefile(a, b):
            return True
        from s2vc.engine.checkpoint import read_checkpoint
        ha, hb = (read_checkpoint(x) for x in (a, b))
    except Exception:                     # a flow that is not there or not readable: not known to be the same
        return False
    return isinstance(ha, dict) and isinstance(hb, dict) and ha.get("sha256") is not None \
        and ha.get("sha256") == hb.get("sha256")


def describe_changes(changed: dict[str, tuple]) -> str:
    """``changed_from``'s result as text: "setting recorded -> asked, ..."."""
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())


def _plain(value):
    """Sequences compare as lists (a checkpoint may hold a list where the settings have a tuple)."""
    return list(value) if isinstance(value, (list, tuple)) else value
