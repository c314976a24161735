"""What a pretraining run folder holds, by name: the one fact that pretraining writes and the
evaluations read, kept here so the evaluations need nothing of the pretraining internals."""
from __future__ import annotations

from pathlib import Path

CHECKPOINT = "checkpoint.pt"          # RUN/checkpoint.pt: the latest state (model, optimizer, RNGs)
# RUN/record.json: a finished run without its weights ({"step", "config", "history"}), written by
# the experiments once a run has finished and its snapshots are scored; with those scores (RUN/eval)
# it is what a study needs to go on in a fresh clone (training/experiments/runs.py)
RECORD = "record.json"


def snapshot_path(run: str | Path, step: int) -> Path:
    """Where ``snapshot_every`` keeps the model of ``step``."""
    return Path(run) / "snapshots" / f"step_{step:06d}.pt"
