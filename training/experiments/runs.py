"""One run of an experiment: trained (or resumed, or reused when it has finished) and, once
scored, kept as a record without its weights.

A finished run is reused as it is: from its checkpoint, or, where the weights were not kept (a
study committed without them and continued in a fresh clone, ``scripts/reproduce_cpu.sh``), from
RUN/record.json ({"step", "config", "history"}) with its scores cached in RUN/eval. Either way its
settings must be the run's (``PretrainConfig.changed_from``); a record cannot be trained further.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from s2vc.engine.checkpoint import atomic_write_text

from ..pretrain.config import describe_changes
from ..pretrain.loop import CHECKPOINT, PretrainConfig, pretrain
from ..run_files import RECORD

__all__ = ["train_run", "keep_record"]


def train_run(cfg, settings: PretrainConfig) -> dict:
    """Pretrain (or resume) one run of the experiment ``cfg`` (an ``ExperimentConfig``) unless
    ``cfg.eval_only`` or already finished (its checkpoint or record has ``max_steps`` steps: nothing
    is set up again); returns {"train_s": summed step time,
    "preserved": mean fraction of latents kept (nan without a flow), "steps"}."""
    run = Path(settings.out)
    ckpt, record = run / CHECKPOINT, run / RECORD
    state = torch.load(ckpt, map_location="cpu", weights_only=True) if ckpt.exists() else _read_record(record)
    source = ckpt if ckpt.exists() else record
    if state is not None and state["step"] >= settings.max_steps:
        # a finished folder is reused as it is, so it must be this run: the settings a resume checks
        changed = settings.changed_from(state.get("config", {}))
        if changed:
            raise ValueError(f"{source} has finished with other settings than this run's: "
                             + describe_changes(changed) + "; remove the folder or use another --out")
        print(f"{source} has already run {state['step']} steps"
              + ("" if source == ckpt else " (its record: the weights were not kept)"), file=sys.stderr)
        history = state["history"]
    elif source == record and state is not None:
        raise ValueError(f"{record} is the record of a run of {state['step']} steps whose weights were not kept: "
                         f"it cannot continue to {settings.max_steps}; remove {run} to train it again")
    elif not cfg.eval_only:
        if state is None and (run / "eval").is_dir():
            # scores left by other weights (a run trained again from step 0) must not be read as its own
            shutil.rmtree(run / "eval")
            print(f"{run}: starts from step 0, so the scores cached there (of other weights) were removed",
                  file=sys.stderr)
        history = pretrain(settings)["history"]
    elif state is not None:
        history = state["history"]
    else:
        return {"train_s": math.nan, "preserved": math.nan, "steps": 0}
    # a run reused from a longer budget (part budget's 800 steps, scored here at 300) reports the
    # time and the keys of the steps this comparison counts, not of every step it ran
    history = [h for h in history if h.get("step", 0) <= settings.max_steps]
    kept = [h["preserved"] for h in history if not math.isnan(h.get("preserved", math.nan))]
    if not kept and settings.keys:          # keys read from a mirror: the fraction they were made with
        kept = _mirror_preserved(Path(settings.keys)) or (state or {}).get("keys_preserved") or []
    return {"train_s": float(sum(h["t_data"] + h["t_gen"] + h["t_model"] for h in history)),
            "preserved": float(np.mean(kept)) if kept else math.nan, "steps": len(history)}


def keep_record(run: Path, max_steps: int) -> None:
    """Write RUN/record.json once the run has finished ``max_steps`` and its snapshots are scored:
    what a fresh clone needs to reuse it without its weights (the scores are in RUN/eval)."""
    ckpt, record = run / CHECKPOINT, run / RECORD
    if not ckpt.exists():
        return
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    old = _read_record(record)
    if state["step"] >= max_steps and (old is None or old["step"] < state["step"]):   # trained further: renewed
        config = state.get("config", {})
        keys = config.get("keys")            # the mirror's kept fractions, for a clone that has not made it again
        atomic_write_text(record, json.dumps({"step": state["step"], "config": config, "history": state["history"],
                                              "keys_preserved": _mirror_preserved(Path(keys)) if keys else []}))


def _read_record(path: Path) -> dict | None:
    """RUN/record.json ({"step", "config", "history"}), None when there is none; a damaged one is
    an error that names it (a run is never trained again over a record silently)."""
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not {"step", "config", "history"} <= state.keys():
            raise ValueError("it lacks step, config or history")
        if not (isinstance(state["step"], int) and isinstance(state["config"], dict)
                and isinstance(state["history"], list)):
            raise ValueError("its step, config or history is of the wrong type")
    except ValueError as e:
        raise ValueError(f"{path} is not a run record ({e}); remove it (and the run's folder) to train the run again") \
            from None
    return state


def _mirror_preserved(mirror: Path) -> list[float]:
    """The preserved fraction of a mirror's keys, one value per window (from its manifest; none
    for TFD's keys or a mirror without a manifest)."""
    try:
        videos = json.loads((mirror / "manifest.json").read_text())["videos"]
    except (OSError, ValueError, KeyError):
        return []
    entries = videos.values() if isinstance(videos, dict) else videos
    return [float(e["preserved"]) for e in entries if isinstance(e, dict) and e.get("preserved") is not None
            and not math.isnan(float(e["preserved"])) for _ in range(int(e.get("windows") or 1))]
