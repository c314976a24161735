"""The built-in synthetic set's own flow: fitted once to the set's training frames, cached beside it.

The bundled flow was trained on a few natural clips and does not fit the synthetic set
(``training/flow/fit_check.py``); S²VC needs a flow that does. ``fitted_flow_for(SyntheticSet(...))``
trains one with ``FITTED_RECIPE`` (a fixed number of steps and a fixed seed, no time budget, so
two builds on one machine give the same weights), calibrates its alpha on the set's training
clips, and caches it as ``<set root>/flow_fitted_<key>.pt``, where the key hashes the recipe and
the set's parameters; a later call with the same set and recipe returns the cached file. The file
appears atomically (trained in a hidden folder beside it, then renamed), so a killed build leaves
nothing that looks finished.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from s2vc.engine.defaults import DEFAULT_PRESERVE
from s2vc.engine.checkpoint import CheckpointError, default_checkpoint_path, load_flow, read_checkpoint

from ..data.datasets import dataset_root
from .config import FlowTrainConfig
from .training import train_flow
from ..data.synthetic import SyntheticSet

__all__ = ["FittedFlowRecipe", "FITTED_RECIPE", "BUNDLED_FLOW", "fitted_flow_path", "fitted_flow_for", "flow_choice"]

BUNDLED_FLOW = "bundled"   # --flow bundled: the flow the package ships instead of the set's fitted one

RECIPE_FORMAT = 1    # bump when the training code changes what a recipe produces


@dataclass(frozen=True)
class FittedFlowRecipe:
    """How the synthetic set's flow is trained: the bundled flow's architecture, ``epochs`` x
    ``steps_per_epoch`` steps of ``batch_size`` crops, frames decoded at the set's own size
    (``decode_size``; the videos are 64x64), a ``holdout`` fraction of the training videos held
    out for the held-out bits/dim, alpha calibrated for ``preserve`` on windows of ``clip_len``
    frames ``stride`` apart (the reproduction's clip: 16 frames, stride 2);
    training crops span ``crop_scale`` of the frame; ``from_bundled``: fine-tune the bundled flow
    (its architecture then wins over the fields above) instead of starting from a new one."""

    resolution: int = 32
    high_blocks: int = 4
    low_blocks: int = 6
    fc_blocks: int = 6
    hidden: int = 32
    fc_hidden: int = 64
    epochs: int = 3
    steps_per_epoch: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    decode_size: int = 64
    frames_per_video: int = 32
    holdout: float = 0.1
    preserve: float = DEFAULT_PRESERVE
    clip_len: int = 16
    stride: int = 2
    seed: int = 0
    crop_scale: tuple[float, float] = (1.0, 1.0)
    from_bundled: bool = True

    def key(self, synthetic: SyntheticSet) -> str:
        """12 hex digits naming this recipe applied to ``synthetic`` (and, when it starts from the
        bundled flow, that flow's weights)."""
        start = _bundled_sha256() if self.from_bundled else None
        text = json.dumps({"format": RECIPE_FORMAT, "recipe": dataclasses.asdict(self), "set": synthetic.kwargs(),
                           "start": start}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


FITTED_RECIPE = FittedFlowRecipe()


def _bundled_sha256() -> str:
    return read_checkpoint(default_checkpoint_path())["sha256"]


def fitted_flow_path(synthetic: SyntheticSet | None = None, *, root: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None, recipe: FittedFlowRecipe = FITTED_RECIPE) -> Path:
    """Where the fitted flow of ``synthetic`` (None: the default set) is cached: in the set's
    folder (``root``, else its cache folder; the set is built there first when needed)."""
    synthetic = synthetic or SyntheticSet()
    folder = dataset_root("synthetic", root, synthetic=synthetic, cache_dir=cache_dir)
    return folder / f"flow_fitted_{recipe.key(synthetic)}.pt"


def _usable(path: Path) -> bool:
    try:
        load_flow(path)
    except (CheckpointError, OSError):
        return False
    return True


def fitted_flow_for(synthetic: SyntheticSet | None = None, *, root: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, recipe: FittedFlowRecipe = FITTED_RECIPE,
                    progress: bool = True, log=None) -> Path:
    """The path of the synthetic set's own fitted flow (alpha calibrated, held-out bits/dim in
    its meta), trained now unless cached, in this process alone (under torchrun, call it on rank 0
    first, then on the others after a barrier: each would otherwise build its own identical copy).
    ``log`` takes one line at a time."""
    synthetic = synthetic or SyntheticSet()
    path = fitted_flow_path(synthetic, root=root, cache_dir=cache_dir, recipe=recipe)
    if path.is_file() and _usable(path):
        return path
    work = path.parent / f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        # every field of the recipe but from_bundled is a FlowTrainConfig field of the same name
        training = {k: v for k, v in dataclasses.asdict(recipe).items() if k != "from_bundled"}
        cfg = FlowTrainConfig(
            **training, dataset="synthetic", root=str(path.parent), synthetic_set=synthetic,
            out=str(work / "flow.pt"), max_videos=None, progress=progress,
            init=str(default_checkpoint_path()) if recipe.from_bundled else None, distributed=False,
            command=f"training.fitted_flow.fitted_flow_for({synthetic!r}, recipe={recipe!r})")
        train_flow(cfg, log=log)
        os.replace(work / "flow.pt", path)     # same folder: atomic
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def recipe_for_clip(frames: int, stride: int) -> FittedFlowRecipe:
    """``FITTED_RECIPE`` with alpha calibrated on the runs' clip (``frames`` frames ``stride``
    apart): the same weights, the alpha that keeps the paper's fraction on these clips (the
    default clip, 16 frames stride 2, is ``FITTED_RECIPE`` itself: the same file)."""
    return dataclasses.replace(FITTED_RECIPE, clip_len=frames, stride=stride)


def flow_choice(flow: str | None, synthetic: SyntheticSet | None = None, *, progress: bool = True,
                root: str | os.PathLike | None = None, recipe: FittedFlowRecipe = FITTED_RECIPE) -> str | None:
    """The flow checkpoint a ``--flow`` value names, as ``load_flow`` / ``PretrainConfig.flow``
    take it: a path as is; None (the bundled flow) for "bundled"; none given: the synthetic set's
    own fitted flow (``fitted_flow_for`` with ``recipe``), trained and cached beside the set (at
    ``root``, else in the cache) the first time."""
    if flow == BUNDLED_FLOW:
        return None
    if flow:
        return flow
    return str(fitted_flow_for(synthetic, root=root, progress=progress, recipe=recipe))
