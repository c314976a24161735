"""How the experiments (``s2vc reproduce`` / ``s2vc ablate``) score a pretrained backbone on the
synthetic static-bias set (or a set of one's own in a public layout), and the per-snapshot cache
that makes them resumable.

Every snapshot gets (train split: looks tied to the class; test split: looks random):
    R@1, R@5, R@50  test videos query the train set (``metrics.retrieval_recall``); R@50 is the
               most sensitive static-bias meter here: with test looks shuffled, appearance-bound
               features retrieve the look-tied class, look-blind ones reach ~100%
    linear     linear probe trained on train, tested on test (``evaluate.linear_probe``)
    motion     motion probe on disjoint groups of the test split (``probes.motion_probe``)
    look_*     look probes (scene, shape, colour) on the test split (``probes.look_probe``)
The frame-difference feature (no learning) is scored the same way, as a reference line.
On a set of one's own there are no look labels (the look probes are nan), and the motion probe
needs UCF101-style ids (``v_<Class>_gXX_cYY``) of at least two groups on each side (nan otherwise,
said once).

``split="val"`` scores on the set's validation split instead of its test split (the same roles:
queries, probe test set, motion and look probes), cached apart (``eval/val/``,
``reference_val.json``): budgets, alphas and variants are chosen there, the test split is read
once per reported run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from s2vc.engine.checkpoint import atomic_torch_save, atomic_write_text

from ..evaluation.frozen import linear_probe, load_backbone
from ..evaluation.metrics import retrieval_recall
from ..pretrain.curves import write_run_curves
from ..pretrain.loop import snapshots
from ..run_files import CHECKPOINT, RECORD
from ..evaluation.probes import (LOOKS, PROBE_WEIGHT_DECAY, ClipBank, group_of, look_probe, motion_probe,
                                 probe_halves)
from ..data.synthetic import SyntheticSet

__all__ = ["METRICS", "SCORER", "Evaluator", "LazyEvaluator", "evaluate_runs", "reference_scores"]

SPLITS = ("test", "val")    # the held-out splits a snapshot is scored on
METRICS = ("R@1", "R@5", "R@50", "linear", "motion") + tuple(f"look_{k}" for k in LOOKS)
# bump when ``Evaluator.score`` changes: cached scores of another version are recomputed from
# the cached features
SCORER = 3


class Evaluator:
    """Decodes the synthetic set's train and test windows once; scores features or backbones.

    frames / stride: the clip of a window; size: its centre crop (pixels); num_clips: windows
    per video (half-overlapping); seed_eval: the linear classifiers' seed; batch_size: windows
    per backbone call; device None = cuda when available, else cpu; split: the held-out split
    scored ("test", or "val": the set's validation split); dataset / root / fold / decode_size:
    the set (default: the synthetic one, as rendered).
    """

    def __init__(self, *, synthetic: SyntheticSet, frames: int, stride: int, size: int, num_clips: int,
                 seed_eval: int = 0, batch_size: int = 32, workers: int = 0, device: str | None = None,
                 progress: bool = True, split: str = "test", dataset: str = "synthetic", root: str | None = None,
                 fold: int = 1, decode_size: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"the scored split must be one of {SPLITS}, got {split!r}")
        if split == "val" and dataset == "synthetic" and synthetic.val_per_class < 1:
            raise ValueError("scoring on the validation split needs a set that has one (--synthetic-val-per-class N)")
        from ..data.datasets import build_dataset
        common = dict(root=root, fold=fold, frames=frames, stride=stride, size=decode_size, two_clips=False,
                      synthetic=synthetic)
        bank = dict(num_clips=num_clips, overlap=0.5, size=size, workers=workers)
        banks = {}
        for name in tqdm(("train", split), desc="decoding the evaluation windows", unit="split",
                         disable=not progress, file=sys.stderr, leave=False):
            banks[name] = ClipBank.from_dataset(build_dataset(dataset, split=name, **common), **bank)
        self.train, self.test, self.split = banks["train"], banks[split], split
        self.looks = self.test.looks() if dataset == "synthetic" else {}
        self.groups = _probe_groups(self.test.video_ids, dataset, self.test.labels, split)
        self.classes = int(max(self.train.labels.max(), self.test.labels.max())) + 1
        self.seed, self.batch_size = seed_eval, batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def chance(self) -> dict[str, float]:
        """Each metric's chance level (nan for retrieval: it depends on the class counts)."""
        c = {"R@1": float("nan"), "R@5": float("nan"), "R@50": float("nan"), "linear": 1 / self.classes,
             "motion": 1 / self.classes if self.groups is not None else float("nan"),
             **{f"look_{k}": float("nan") for k in LOOKS}}
        c.update({f"look_{k}": 1 / (int(v.max()) + 1) for k, v in self.looks.items()})
        return c

    def score(self, train_f: torch.Tensor, test_f: torch.Tensor) -> dict[str, float]:
        """``METRICS`` (fractions in [0, 1]) of per-video features (V_train, C) and (V_test, C)."""
        r = retrieval_recall(test_f, self.test.labels, train_f, self.train.labels, (1, 5, 50))
        lin = linear_probe(train_f, self.train.labels, test_f, self.test.labels, seed=self.seed,
                           num_classes=self.classes, weight_decay=PROBE_WEIGHT_DECAY)["top1"]
        motion = (motion_probe(test_f, self.test.labels, self.groups, seed=self.seed) if self.groups is not None
                  else float("nan"))
        out = {**r, "linear": lin, "motion": motion, **{f"look_{k}": float("nan") for k in LOOKS}}
        if self.groups is not None:          # the look probes take the motion probe's halves
            out.update({f"look_{k}": v for k, v in look_probe(test_f, self.looks, self.groups, seed=self.seed).items()})
        return out

    def features(self, backbone) -> dict[str, torch.Tensor]:
        """{"train": (V_train, C), "test": (V_test, C)}: the backbone's per-video features."""
        return {split: bank.features(backbone, device=self.device, batch_size=self.batch_size)
                for split, bank in (("train", self.train), ("test", self.test))}

    def score_frame_difference(self) -> dict[str, float]:
        return self.score(self.train.frame_difference(), self.test.frame_difference())


def _probe_groups(video_ids: list[str], dataset: str, labels: torch.Tensor | None = None,
                  split: str = "test") -> torch.Tensor | None:
    """The group of each scored video, for the probes' disjoint halves (``probes.probe_halves``),
    or None (said once on stderr) where a set of one's own cannot give them: ids that are not
    UCF101-style, groups of only one parity, or classes whose videos lie in groups of one parity
    (a validation split of one group per class: the probe would score 0 whatever the features)."""
    try:
        groups = torch.tensor([group_of(v) for v in video_ids])
    except ValueError as exc:
        if dataset == "synthetic":
            raise                           # the built-in set always has such ids: a bug, not a set
        groups, why = None, exc
    else:
        try:
            probe_halves(groups, labels)
        except ValueError as exc:
            groups, why = None, exc
    if groups is None:
        print(f"scoring: no motion probe on the {dataset} {split} split ({why}); its column is nan", file=sys.stderr)
    return groups


class LazyEvaluator:
    """Builds the ``Evaluator`` (decoding every window) only when a score is not cached;
    ``kwargs`` are the Evaluator's."""

    def __init__(self, **kwargs):
        self.kwargs, self.value = kwargs, None

    def __call__(self) -> Evaluator:
        if self.value is None:
            self.value = Evaluator(**self.kwargs)
        return self.value


def _split(evaluator: LazyEvaluator) -> str:
    return evaluator.kwargs.get("split", "test")


def _cached_scores(path: Path | None, step: int, run: Path, evaluator: LazyEvaluator) -> dict:
    """The scores of one snapshot, cached: the scores (``eval/step_N.json``, redone when
    ``SCORER`` changed) and the features they came from (``eval/step_N.features.pt``, so a new
    scorer does not run the backbone again). ``path`` None: the snapshot was not kept (a run
    continued from its record), so only its cache can answer."""
    cache = _score_path(run, step, _split(evaluator))
    feats = cache.with_suffix(".features.pt")
    scores = json.loads(cache.read_text()) if cache.exists() else {}
    if scores.pop("scorer", None) == SCORER:
        return scores
    if feats.exists():
        f = torch.load(feats, weights_only=True)
    elif path is None:
        raise FileNotFoundError(f"{run}: step {step} has neither its snapshot nor its features (the weights were not "
                                f"kept) and its cached scores are of another scorer; remove {run} to train it again")
    else:
        f = evaluator().features(load_backbone(path))
        feats.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(f, feats)
    scores = evaluator().score(f["train"], f["test"])
    atomic_write_text(cache, json.dumps({**scores, "scorer": SCORER}, indent=1))
    return scores


def evaluate_runs(runs: dict[str, Path], evaluator: LazyEvaluator, max_step: int, out: Path, *,
                  progress: bool = True) -> tuple[dict[str, list[dict]], dict]:
    """Scores of run folders {name: path}: ({name: [{"step", metrics...} per snapshot up to
    ``max_step``]}, the reference scores of OUT/reference.json). The windows are decoded first
    when anything is not cached, then one progress bar (with ETA) covers every snapshot and the
    reference."""
    split = _split(evaluator)
    for run in runs.values():
        missing = _unscorable_steps(run, split, max_step)
        if missing:
            raise FileNotFoundError(f"{run} is a run continued from its record (its weights were not kept), but steps "
                                    f"{missing} have no scores on the {split} split to read (none cached, or cached by "
                                    f"another scorer than version {SCORER}, without the features to score them "
                                    f"again); remove {run} to train it again")
    todo = [(name, run, step, path) for name, run in runs.items()
            for step, path in _scored_steps(run, split).items() if step <= max_step]   # it may have trained further
    fresh = {run for _, run, step, _ in todo if not _is_cached(_score_path(run, step, split))}
    if fresh or not _reference_cached(out, split):
        evaluator()                                  # decoding: its own bar, so the ETA below is the scoring's
    out_rows: dict[str, list[dict]] = {name: [] for name in runs}
    with tqdm(total=len(todo) + 1, desc="evaluating snapshots", unit="snapshot", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for name, run, step, path in todo:
            out_rows[name].append({"step": step, **_cached_scores(path, step, run, evaluator)})
            bar.update(1)
        bar.set_description("evaluating the frame-difference reference")
        ref = reference_scores(out, evaluator)
        bar.update(1)
    if split == "test":
        for run in sorted(fresh):                    # RUN/curves.png gains the scores just computed
            write_run_curves(run)
    return out_rows, ref


def _scored_steps(run: Path, split: str) -> dict[int, Path | None]:
    """{step: snapshot path} of a run folder, in step order, with the steps whose snapshot was not
    kept but whose scores (or features) are cached (path None: a run continued from its record)."""
    steps: dict[int, Path | None] = dict(snapshots(run))
    folder = _score_path(run, 0, split).parent
    for cache in folder.glob("step_*.json"):
        step = int(cache.stem.removeprefix("step_"))
        if step not in steps and (_is_cached(cache) or cache.with_suffix(".features.pt").exists()):
            steps[step] = None
    return dict(sorted(steps.items()))


def _unscorable_steps(run: Path, split: str, max_step: int) -> list[int]:
    """The snapshot steps up to ``max_step`` of a run known only by its record (no checkpoint)
    that have no cached scores (or features) on ``split``: nothing can score them any more."""
    record = run / RECORD
    if (run / CHECKPOINT).exists() or not record.exists():
        return []
    state = json.loads(record.read_text())
    every, last = int(state["config"].get("snapshot_every") or 0), int(state["step"])
    if not every:
        return []
    want = {0, *range(every, min(last, max_step) + 1, every)} | ({last} if last <= max_step else set())
    return sorted(want - set(_scored_steps(run, split)))


def _score_path(run: Path, step: int, split: str = "test") -> Path:
    return run / "eval" / ("val" if split == "val" else "") / f"step_{step:06d}.json"


def _is_cached(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("scorer") == SCORER
    except (OSError, ValueError):
        return False


def _reference_path(out: Path, split: str = "test") -> Path:
    return out / ("reference_val.json" if split == "val" else "reference.json")


def _reference_cached(out: Path, split: str = "test") -> bool:
    return _is_cached(_reference_path(out, split))


def reference_scores(out: Path, evaluator: LazyEvaluator) -> dict:
    """{"frame_difference": scores, "chance": levels, "scorer"}, cached in OUT/reference.json
    (OUT/reference_val.json for the validation split)."""
    split = _split(evaluator)
    path = _reference_path(out, split)
    if _reference_cached(out, split):
        return json.loads(path.read_text())
    ev = evaluator()
    ref = {"frame_difference": ev.score_frame_difference(), "chance": ev.chance(), "scorer": SCORER}
    atomic_write_text(path, json.dumps(ref, indent=1))
    return ref
