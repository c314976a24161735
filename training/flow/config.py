"""The settings of one flow-training run: ``FlowTrainConfig`` (``s2vc train-flow`` fills it from
its flags; ``training/flow/training.py: train_flow`` runs it)."""
from __future__ import annotations

from dataclasses import dataclass

from s2vc.engine.defaults import DEFAULT_PRESERVE

from ..data.datasets import DATASETS
from ..data.synthetic import SyntheticSet


@dataclass
class FlowTrainConfig:
    """Settings of one flow-training run.

    What to train on — exactly one of:
      data / val_data: video or image files or folders ('samples': the sample media installed
        packages ship); without val_data the last ``holdout`` fraction of each training video is
        held out.
      dataset / root / fold / synthetic_set: the training split of a dataset (one of
        ``training.datasets.DATASETS``; root required but for the synthetic set, whose
        ``synthetic_set`` names which); a ``holdout`` fraction of its training videos is held
        out whole. max_videos: training videos decoded at most (evenly spaced over the split's
        list); frames_per_video: frames kept per video (evenly spaced over its first max_frames).
        Test videos are never read.

    out: the checkpoint to write; resume: continue from ``out``.resume.pt if it exists;
    init: start from this flow checkpoint instead of a new flow of the given architecture.
    lr: peak learning rate (linear warm-up over ``warmup_steps``, then cosine to a tenth);
    decode_size: shorter side frames are decoded at; max_frames: frames per video at most;
    synthetic: procedural frames added to training (a count; not the synthetic *set*);
    val_frames: held-out views per held-out source.
    minutes: training-time budget over the whole run (resumes included; decoding and the final
    calibration not counted): the run stops at the end of ``epochs`` or of the budget, whichever
    comes first, with a checkpoint; with a budget the cosine schedule follows the larger of the
    step and the time fraction, so it ends with the budget (and the run is not bit-reproducible).
    preserve / clip_len / stride: the alpha stored in the checkpoint keeps ``preserve`` of the
    latents on windows of ``clip_len`` training frames ``stride`` apart (at decode_size): the
    pretraining clip's (``s2vc train-flow --frames --stride``), recorded as meta["alpha_frames"] /
    ["alpha_stride"]. amp: mixed precision on CUDA.
distributed: under torchrun, join the process group (False: train alone in this process).
crop_scale: training crops are squares of this fraction of the shorter side (then pooled to r x r).
    command: the command line recorded in the checkpoint's meta.
    """

    data: list[str] | None = None
    out: str | None = None
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
    dataset: str | None = None
    root: str | None = None
    fold: int = 1
    synthetic_set: SyntheticSet | None = None
    max_videos: int | None = 256
    frames_per_video: int = 32
    minutes: float | None = None
    preserve: float = DEFAULT_PRESERVE
    clip_len: int = 16
    stride: int = 2
    amp: bool = False
    distributed: bool = True
    crop_scale: tuple[float, float] = (0.35, 1.0)

    def __post_init__(self):
        self._check_source()
        if not self.out:
            raise ValueError("train-flow: no output checkpoint named (expected out=PATH.pt)")
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_frames", "frames_per_video"):
            if getattr(self, name) < 1:
                raise ValueError(f"train-flow: {name} must be >= 1, got {getattr(self, name)}")
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"train-flow: max_videos must be >= 1 (or None: all), got {self.max_videos}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"train-flow: holdout must be in [0, 1), got {self.holdout}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"train-flow: minutes must be > 0 (or None: no time budget), got {self.minutes}")
        if not 0.0 < self.preserve < 1.0:
            raise ValueError(f"train-flow: preserve (the fraction of latents alpha keeps) must be in (0, 1), "
                             f"got {self.preserve}")
        self.crop_scale = tuple(float(c) for c in self.crop_scale)
        if len(self.crop_scale) != 2 or not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"train-flow: crop_scale must be (min, max) with 0 < min <= max <= 1, got {self.crop_scale}")
        if self.clip_len < 2 or self.stride < 1:
            raise ValueError(f"train-flow: the calibration clip needs --frames >= 2 (a temporal STD needs two) "
                             f"and --stride >= 1, got {self.clip_len} and {self.stride}")

    def _check_source(self) -> None:
        """Exactly one of data / dataset, and what each needs."""
        if self.data and self.dataset is not None:
            raise ValueError("train-flow: name the training frames with data (files or folders) or with "
                             f"dataset ({self.dataset!r}), not both")
        if not self.data and self.dataset is None:
            raise ValueError("train-flow: no training data named (expected video/image files or folders, "
                             f"or a dataset: one of {list(DATASETS)})")
        if self.dataset is None:
            return
        if self.dataset not in DATASETS:
            raise ValueError(f"train-flow: unknown dataset {self.dataset!r}; expected one of {list(DATASETS)}")
        if self.root is None and self.dataset != "synthetic":
            raise ValueError(f"train-flow: dataset {self.dataset} needs its root folder (--root), got none")
        if self.val_data:
            raise ValueError("train-flow: val_data is for data files; with a dataset the held-out videos are "
                             "the holdout fraction of its training split")
        from ..data.layouts import check_fold
        check_fold(self.dataset, self.fold)
