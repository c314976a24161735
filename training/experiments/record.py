"""The last reproduction's results as shipped with the package (``training/assets/
last_reproduction.json``, a machine-readable copy of the tables in docs/RESULTS.md), and the
table ``s2vc demo`` prints from it. Numbers are percentages, mean (± sample SD over seeds).

A record of the paired comparison is made by code from the ``results.json`` that
``s2vc reproduce --split test`` writes per set (``record_from_results``; its command line is
``scripts/record_reproduction.py``), so that no number in it is typed by hand: the arms' rows of
the first set, the second set's as ``follow_up``, the pre-registered pairs' paired differences
(``paired``) and a finding worded from their verdicts only ("beats" where the 95% interval
excludes zero, else "not separated")."""
from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["RECORD_PATH", "PRIMARY_METRICS", "PRESET_SETS", "PRESET_OPPONENTS", "PAPER_KEYS", "load_reproduction_record", "reproduction_table",
           "record_from_results", "preset_earned", "finding_text"]

# the pre-registered primary metrics (docs/RESULTS.md): what a finding is worded from
PRIMARY_METRICS = ("R@1", "motion")
# the preset rule (docs/RESULTS.md): the variant must beat TFD and the paper's key (both read from
# mirrors) on every primary metric on both pre-registered sets; the paper's key itself (mirrored
# or made each step) is no variant
PRESET_SETS = ("still", "pan")
PRESET_OPPONENTS = ("tfd-keys", "s2vc-keys")
PAPER_KEYS = ("s2vc-keys", "s2vc")

RECORD_PATH = Path(__file__).resolve().parents[1] / "assets" / "last_reproduction.json"


def load_reproduction_record(path: str | Path = RECORD_PATH) -> dict:
    """The record: {"title", "date", "command", "budget", "metrics", "rows", "reference",
    "follow_up", "finding", "source"}; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: expected the reproduction record (JSON), could not read it: {exc}") from None
    missing = [k for k in ("title", "metrics", "rows", "reference") if k not in record]
    if missing:
        raise ValueError(f"{path}: not a reproduction record, missing {missing}")
    return record


def _cell(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{mean:5.1f}" + (f" ± {std:4.1f}" if std is not None else "")


def _rows(rows: list[dict], columns: int, with_run: bool) -> list[list[str]]:
    out = []
    for r in rows:
        std = r.get("std") or [None] * columns
        run = [str(r["step"]), str(r["seeds"])] if with_run else ["-", "-"]
        out.append([r["arm"], *run, *(_cell(m, s) for m, s in zip(r["mean"], std))])
    return out


def reproduction_table(record: dict, *, follow_up: bool = True) -> str:
    """The record's final table as Markdown (the arms, then the frame-difference and chance
    rows); with ``follow_up``, then its follow-up table (the second set) and the paired tables
    of every set, when it has them."""
    from .report import markdown_table

    metrics = record["metrics"]
    header = ["arm", "step", "seeds", *metrics]
    text = markdown_table(header, _rows(record["rows"], len(metrics), True)
                          + _rows(record["reference"], len(metrics), False))
    extra = record.get("follow_up")
    if follow_up and extra:
        text += f"\n\n{extra['title']}:\n\n" + markdown_table(
            header, _rows(extra["rows"], len(metrics), True) + _rows(extra.get("reference", []), len(metrics), False))
    for name in dict.fromkeys(r["set"] for r in (record.get("paired", []) if follow_up else [])):
        text += f"\n\n{paired_title(name)}:\n\n" + _paired_markdown([r for r in record["paired"] if r["set"] == name])
    return text


def paired_title(name: str) -> str:
    return (f"Paired differences on the {name} set (arm − arm, seed by seed, percentage points; 95% Student t "
            f"interval; \"beats\" only where it excludes zero)")


def _with_nan(r: dict) -> dict:
    """A paired record as stored (None where results.json had nan) as paired.py reads it."""
    return {k: (math.nan if v is None else v) for k, v in r.items()}


def _paired_markdown(records: list[dict]) -> str:
    from .paired import paired_table
    return paired_table([_with_nan(r) for r in records])


def _pct(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100 * float(x), 1)


def _jsonable(x):
    """nan -> None (a shipped record is strict JSON)."""
    return None if isinstance(x, float) and math.isnan(x) else x


def _set_rows(results: dict) -> tuple[list[dict], list[dict]]:
    """(the arms' rows at their last snapshot, the frame-difference and chance rows) of one set's
    ``results.json``, in the record's units (percent, 1 decimal; "preserved" a fraction). Every
    arm's row is at the step the paired rows are at: the last one all arms reached."""
    from .report import summarise
    from .scoring import METRICS
    rows = []
    summary = summarise(results["rows"], "arm")
    last = min(max(steps) for steps in summary.values())
    for arm, steps in summary.items():
        cells = steps[last]
        n = cells[METRICS[0]][2]
        rows.append({"arm": arm, "step": last, "seeds": n, "mean": [_pct(cells[m][0]) for m in METRICS],
                     "std": [_pct(cells[m][1]) for m in METRICS] if n > 1 else None,
                     "preserved": _jsonable(results.get("preserved", {}).get(arm))})
    ref = results["reference"]
    reference = [{"arm": "frame difference (no learning)", "mean": [_pct(ref["frame_difference"][m]) for m in METRICS]},
                 {"arm": "chance", "mean": [_pct(ref["chance"][m]) for m in METRICS]}]
    return rows, reference


def preset_earned(paired: list[dict], best: str | None, sets=PRESET_SETS, opponents=PRESET_OPPONENTS,
                  metrics=PRIMARY_METRICS) -> bool:
    """The pre-registered rule for a preset: ``best`` beats every opponent (its paired 95% interval
    excluding zero, in its favour) on every primary metric on every one of ``sets`` (the two
    pre-registered ones: a record of fewer earns nothing); False when ``best`` is missing or is
    the paper's key (``PAPER_KEYS``: no variant)."""
    if not best or best in PAPER_KEYS or best in opponents:
        return False
    verdicts = {(r["set"], r["a"], r["b"], r["metric"]): r["verdict"] for r in paired}
    return all(verdicts.get((s, best, o, m)) == f"{best} beats {o}" for s in sets for o in opponents for m in metrics)


def _difference(r: dict) -> str:
    from .paired import interval_text
    interval = interval_text(_with_nan(r))
    return f"{100 * r['mean']:+.1f} pp, {interval}, {r['wins']}/{r['losses']}/{r['ties']} seeds"


def finding_text(paired: list[dict], best: str | None, sets, metrics=PRIMARY_METRICS) -> str:
    """The finding in words, from the verdicts alone: per set, the pairs separated on a primary
    metric (with difference, interval and sign count) and how many others were not; then whether
    the project's variant earned a preset."""
    parts = []
    for name in sets:
        rows = [r for r in paired if r["set"] == name and r["metric"] in metrics]
        sep = [r for r in rows if r["verdict"] != "not separated"]
        if not rows:
            parts.append(f"{name} set: no pre-registered pair.")
        elif sep:
            said = "; ".join(f"{r['verdict']} on {r['metric']} ({_difference(r)})" for r in sep)
            rest = len(rows) - len(sep)
            parts.append(f"{name} set: {said}" + (f"; the other {rest} of {len(rows)} not separated." if rest else "."))
        else:
            parts.append(f"{name} set: no pair separated on {' or '.join(metrics)} ({len(rows)} intervals).")
    if best and best not in PAPER_KEYS:
        earned = preset_earned(paired, best)
        missing = [s for s in PRESET_SETS if s not in sets]
        parts.append(f"The project's variant ({best}) "
                     + ("beats" if earned else "does not beat") + " both TFD and the paper's key on "
                     + f"{' and '.join(metrics)} on the {' and '.join(PRESET_SETS)} sets"
                     + (f" (no {' or '.join(missing)} set here)" if missing else "")
                     + f", so it {'becomes a preset' if earned else 'is not made a preset'}.")
    elif best:
        parts.append("The validation split chose the paper's key itself as the project's variant: no preset.")
    return (f"Paired over seeds with identical starts, 95% Student t intervals on the test split "
            f"({' and '.join(metrics)} decide; \"beats\" only where the interval excludes zero). " + " ".join(parts))


def record_from_results(sets: dict, *, best: str | None, command: str, machine: str, date: str,
                        source: str = "docs/RESULTS.md, the pre-registered paired comparison") -> dict:
    """The record of the paired comparison from {set name: results.json (dict or path)} as
    ``s2vc reproduce --split test`` wrote them (ValueError for a validation result, or a result
    without paired rows): the first set's rows, the second's as ``follow_up``, the paired rows of
    every set (``paired``: reproduce's records with their "set"; "mean", "sd", "lo", "hi" are
    fractions, as in results.json, not percentages), and the finding worded by ``finding_text``.
    One or two sets (the pre-registered still and pan)."""
    from .scoring import METRICS
    loaded = {}
    for name, results in sets.items():
        if isinstance(results, (str, Path)):
            path = Path(results)
            try:
                results = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: expected the results.json of s2vc reproduce: {exc}") from None
        if not isinstance(results, dict) or not {"rows", "reference"} <= set(results):
            raise ValueError(f"set {name}: not the results.json of s2vc reproduce (no rows and reference)")
        if results.get("split", "test") != "test":
            raise ValueError(f"set {name}: these are {results['split']}-split results; the record is of the test split")
        if not results.get("paired"):
            raise ValueError(f"set {name}: no paired rows (no pre-registered pair has both arms)")
        loaded[name] = results
    names = list(loaded)
    if len(names) > 2:
        raise ValueError(f"a record holds one or two sets (the pre-registered still and pan), got {names}")
    per_set = {name: _set_rows(r) for name, r in loaded.items()}
    paired = [{"set": name, **{k: _jsonable(v) for k, v in r.items()}} for name in names for r in loaded[name]["paired"]]
    first = names[0]
    record = {"source": source, "date": date,
              "title": f"the pre-registered paired comparison on the {' and '.join(names)} sets"
                       f" (arms {', '.join(r['arm'] for r in per_set[first][0])}; the project's variant: {best})",
              "command": command, "budget": loaded[first]["budget"], "machine": machine, "metrics": list(METRICS),
              "rows": per_set[first][0], "reference": per_set[first][1], "paired": paired,
              "finding": finding_text(paired, best, names), "best": best,
              "preset": preset_earned(paired, best), "budgets": {n: r["budget"] for n, r in loaded.items()},
              "provenance": "made by scripts/record_reproduction.py from each set's results.json (s2vc reproduce "
                            "--split test); nothing typed by hand; docs/RESULTS.md carries the same tables",
              "status": "paired"}
    if len(names) == 2:
        second = names[1]
        record["follow_up"] = {"title": f"the same arms on the {second} set", "rows": per_set[second][0],
                               "reference": per_set[second][1]}
    return record
