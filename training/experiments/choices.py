"""The pre-registered choices of docs/RESULTS.md, made by code from validation-split results,
so that nobody chooses by eye (and nobody reads the test split to choose):

- **budget**: the first snapshot at which the oracle beats MoCo by at least ``BUDGET_MARGIN``
  (10 points) of R@1, as the paired mean over the seeds both arms have at that step (seeds 0-2 in
  the pre-registration); ``None`` when no snapshot does (then the study says so and stops).
- **variant**: among the candidate arms, the one with the highest mean of R@1 + motion over the
  seeds and over the sets given (the still and the pan set), at the budget's step.

Both read the ``results_val.json`` that ``s2vc reproduce --split val`` writes (its "rows": one
record per arm, seed and snapshot step, metrics as fractions); ``scripts/choose.py`` is their
command line (what ``scripts/reproduce_cpu.sh`` runs).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["BUDGET_MARGIN", "VARIANT_METRICS", "VARIANT_CANDIDATES", "choose_budget", "choose_variant"]

BUDGET_MARGIN = 0.10                      # oracle - moco, R@1, paired mean over seeds
VARIANT_METRICS = ("R@1", "motion")       # summed, averaged over seeds and sets
VARIANT_CANDIDATES = ("s2vc-keys", "s2vc-dynamic", "s2vc-topk")


def _rows(results: dict | str | Path) -> list[dict]:
    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text())
    if results.get("split", "val") != "val":
        raise ValueError(f"choices are made on the validation split; these results are the {results['split']} "
                         "split's (s2vc reproduce --split val)")
    return results["rows"]


def _scores(rows: list[dict], arm: str, step: int, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if r["arm"] == arm and r["step"] == step}


def choose_budget(results, a: str = "oracle", b: str = "moco", metric: str = "R@1",
                  margin: float = BUDGET_MARGIN) -> dict:
    """{"step": the first step where mean over shared seeds of (a - b) >= margin, else None;
    "per_step": [{"step", "seeds", "mean", "a", "b"}] for every step both arms have (steps > 0);
    "rule": the rule in words}."""
    rows = _rows(results)
    steps = sorted({r["step"] for r in rows if r["arm"] == a} & {r["step"] for r in rows if r["arm"] == b})
    per_step, chosen = [], None
    for step in (s for s in steps if s > 0):
        sa, sb = _scores(rows, a, step, metric), _scores(rows, b, step, metric)
        seeds = sorted(set(sa) & set(sb))
        if not seeds:
            continue
        mean = float(np.mean([sa[s] - sb[s] for s in seeds]))
        per_step.append({"step": step, "seeds": seeds, "mean": mean,
                         "a": float(np.mean([sa[s] for s in seeds])), "b": float(np.mean([sb[s] for s in seeds]))})
        if chosen is None and mean >= margin - 1e-12:
            chosen = step
    if not per_step:
        raise ValueError(f"no snapshot after step 0 where both {a} and {b} have scores")
    return {"step": chosen, "per_step": per_step,
            "rule": f"the first snapshot where {a} - {b} on {metric} (paired mean over seeds) >= {100 * margin:g} points"}


def choose_variant(results_per_set: dict, step: int, candidates=VARIANT_CANDIDATES,
                   metrics=VARIANT_METRICS) -> dict:
    """{"arm": the candidate with the highest mean over sets and seeds of sum(metrics) at
    ``step``; "scores": {arm: {set: mean, "mean": over sets}}; "rule"}. Every candidate must
    have scores at ``step`` on every set, and no metric may be nan there (a set of one's own
    without UCF101-style groups of both parities has no motion probe): else ValueError naming
    what is missing, rather than a choice among nan sums."""
    scores: dict[str, dict] = {}
    rows_of = {name: _rows(results) for name, results in results_per_set.items()}     # each file read once
    for name, rows in rows_of.items():
        known = set().union(*(r.keys() for r in rows)) - {"arm", "seed", "step"}
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise ValueError(f"set {name} has no metric {unknown[0]!r}; its metrics: {sorted(known)}")
    for arm in candidates:
        per_set = {}
        for name, rows in rows_of.items():
            by_metric = [_scores(rows, arm, step, m) for m in metrics]
            seeds = sorted(set.intersection(*(set(d) for d in by_metric)))
            if not seeds:
                raise ValueError(f"{arm} has no scores at step {step} on set {name}")
            for metric, d in zip(metrics, by_metric):
                if any(np.isnan(d[s]) for s in seeds):
                    why = (" (the motion probe needs UCF101-style groups of both parities per class)"
                           if metric == "motion" else "")
                    raise ValueError(f"{arm}'s {metric} is nan at step {step} on set {name}{why}: the rule sums "
                                     f"{' + '.join(metrics)}; choose with the metrics the set has (--metrics)")
            per_set[name] = float(np.mean([sum(d[s] for d in by_metric) for s in seeds]))
        scores[arm] = {**per_set, "mean": float(np.mean(list(per_set.values())))}
    best = max(candidates, key=lambda arm: scores[arm]["mean"])
    return {"arm": best, "step": step, "scores": scores,
            "rule": f"the highest mean of {' + '.join(metrics)} over seeds and sets ({', '.join(results_per_set)})"}
