"""What the runs and cached evaluations of an experiment folder depend on (``experiment.json``):
a call that names other values is refused instead of mixing two experiments. The flow is pinned
by path, by its weights' hash and by the alpha it records (a clone may fit it again elsewhere:
the same weights at another path are the same flow; the same weights calibrated on another clip
are not)."""
from __future__ import annotations

import json
from pathlib import Path

from s2vc.engine.checkpoint import atomic_write_text

from ..pretrain.config import SYNTHETIC_KEYS

__all__ = ["PINNED", "PINNED_BEFORE_SETS", "OLD_PINNED_NAMES", "pinned_settings", "pin_experiment"]

# what the runs and cached evaluations of an experiment folder depend on: a call that names
# other values for these is refused instead of mixing two experiments (seeds, arms, values and
# steps may grow; threads, workers, device and logging may change)
PINNED = ("backbone", "frames", "stride", "size", "batch_size", "queue", "moco_m", "lr", "synthetic_seed",
          "synthetic_train_per_class", "synthetic_test_per_class", "synthetic_bias", "synthetic_camera",
          "synthetic_val_per_class", "num_clips", "seed_eval",
          "flow", "alpha", "dataset", "root", "fold", "decode_size")
# what an experiment.json written before --dataset existed means by the settings it lacks
PINNED_BEFORE_SETS = {"dataset": "synthetic", "root": None, "fold": 1, "decode_size": None}
# experiment.json of the old command-line code named the synthetic set's settings so
OLD_PINNED_NAMES = {"train_per_class": "synthetic_train_per_class", "test_per_class": "synthetic_test_per_class",
                    "bias": "synthetic_bias"}


def pinned_settings(cfg) -> dict:
    """The ``PINNED`` settings of ``cfg`` (the synthetic set's as ``synthetic_*``)."""
    flat = {key: getattr(cfg.synthetic, name) for key, name in SYNTHETIC_KEYS.items()}
    return {k: flat[k] if k in flat else getattr(cfg, k) for k in PINNED}


def pin_experiment(cfg, out: Path) -> None:
    """Check ``cfg``'s budget (an ``ExperimentConfig``), then write OUT/experiment.json, or refuse when the folder holds an
    experiment with other ``PINNED`` settings (naming them: ValueError)."""
    if cfg.steps < 1 or cfg.snapshot_every < 1 or (cfg.ckpt_every is not None and cfg.ckpt_every < 1):
        raise ValueError(f"--steps, --snapshot-every and --ckpt-every must be >= 1, got {cfg.steps}, "
                         f"{cfg.snapshot_every}, {cfg.ckpt_every}")
    sha256, alpha = _flow_pins(cfg.flow)
    want = {**pinned_settings(cfg), "flow_sha256": sha256}
    if cfg.alpha is None:      # the flow's calibrated alpha: one flow file per clip holds the same weights
        want["flow_alpha"] = alpha
    path = out / "experiment.json"
    if path.exists():
        have = {OLD_PINNED_NAMES.get(k, k): v for k, v in json.loads(path.read_text()).items()}
        have = {**PINNED_BEFORE_SETS, **have}       # a folder of the code before --dataset: the synthetic set
        changed = {k: (have[k], v) for k, v in want.items() if k in have and have[k] != v}
        if "flow" in changed and want["flow_sha256"] and have.get("flow_sha256") == want["flow_sha256"]:
            del changed["flow"]          # the same weights at another path (a clone fits the set's flow again)
        if changed:
            raise ValueError(f"{out} holds an experiment with other settings: "
                             + ", ".join(f"{k} {a!r} (there) vs {b!r} (asked)" for k, (a, b) in changed.items())
                             + "; use another --out, or the same settings to continue it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(want, indent=1))


def _flow_pins(flow: str | None) -> tuple[str | None, float | None]:
    """(the hash of the flow's weights, the alpha it records), read once from its checkpoint and
    pinned beside its path: a study continued elsewhere (a fresh clone fits the set's flow again)
    must use the same weights, not only a file at the same path, and the same calibration (the
    alpha the s2vc arms use when --alpha is not given; folders of older code record none and are
    not compared on it); (None, None) for the bundled flow or a flow not yet on disk."""
    if not flow or not Path(flow).is_file():
        return None, None
    from s2vc.engine.checkpoint import read_checkpoint
    ckpt = read_checkpoint(flow)
    if not isinstance(ckpt, dict):
        return None, None
    alpha = (ckpt.get("meta") or {}).get("alpha")
    return ckpt.get("sha256"), float(alpha) if alpha is not None else None
