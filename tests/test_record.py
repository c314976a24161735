"""The shipped record of the paired comparison is made by code from reproduce's results
(training/experiments/record.py, scripts/record_reproduction.py): its numbers are the results'
own, its finding says "beats" only where a paired interval excludes zero, and a preset is earned
only by the pre-registered rule."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from s2vc.training.experiments.paired import paired_rows, pairs_for
from s2vc.training.experiments.record import (finding_text, load_reproduction_record, preset_earned,
                                              record_from_results, reproduction_table)
from s2vc.training.experiments.runner import PAIRED_METRICS
from s2vc.training.experiments.scoring import METRICS

_spec = importlib.util.spec_from_file_location(
    "record_reproduction", Path(__file__).resolve().parents[1] / "scripts" / "record_reproduction.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

ARMS = ("moco", "s2vc-keys", "tfd-keys", "s2vc-topk")


def results(offsets: dict, seeds=range(6), step=300, noise=0.02, seed=0) -> dict:
    """A results.json as reproduce --split test writes it: every metric = 0.3 + the arm's offset
    + per-seed noise at ``step`` (identical at step 0)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        base = rng.normal(0, noise)
        for arm in ARMS:
            rows.append({"arm": arm, "seed": s, "step": 0, **{m: 0.2 for m in METRICS}})
            rows.append({"arm": arm, "seed": s, "step": step,
                         **{m: 0.3 + offsets.get(arm, 0.0) + base + rng.normal(0, noise / 4) for m in METRICS}})
    ref = {"frame_difference": {m: 0.5 for m in METRICS},
           "chance": {m: (math.nan if m.startswith("R@") else 1 / 6) for m in METRICS}}
    return {"rows": rows, "reference": ref, "split": "test", "budget": "300 steps",
            "preserved": {"moco": math.nan, "s2vc-keys": 0.225, "tfd-keys": math.nan, "s2vc-topk": 0.227},
            "paired": paired_rows(rows, "arm", pairs_for(ARMS, "s2vc-topk"), PAIRED_METRICS, step)}


def test_the_record_carries_the_results_own_numbers_and_pairs():
    still, pan = results({"s2vc-topk": 0.10}), results({"s2vc-topk": 0.10}, seed=1)
    record = record_from_results({"still": still, "pan": pan}, best="s2vc-topk", command="c", machine="m", date="d")
    topk = next(r for r in record["rows"] if r["arm"] == "s2vc-topk")
    values = [r["R@1"] for r in still["rows"] if r["arm"] == "s2vc-topk" and r["step"] == 300]
    assert topk["step"] == 300 and topk["seeds"] == 6
    assert topk["mean"][METRICS.index("R@1")] == round(100 * np.mean(values), 1)
    assert topk["std"][METRICS.index("R@1")] == round(100 * np.std(values, ddof=1), 1)    # sample SD
    assert [r["arm"] for r in record["follow_up"]["rows"]] == list(ARMS)
    assert {r["set"] for r in record["paired"]} == {"still", "pan"}
    pairs = {(r["a"], r["b"]) for r in record["paired"]}
    assert pairs == {("s2vc-keys", "moco"), ("s2vc-keys", "tfd-keys"), ("s2vc-topk", "tfd-keys"),
                     ("s2vc-topk", "s2vc-keys")}
    # a clear 10-point lead on every seed beats both opponents on both sets: the preset is earned
    assert record["preset"] and preset_earned(record["paired"], "s2vc-topk", ("still", "pan"))
    assert "s2vc-topk beats tfd-keys on R@1" in record["finding"] and "becomes a preset" in record["finding"]
    # strict JSON (no NaN), and the table that docs/RESULTS.md carries includes the paired tables
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["rows"][0]["preserved"] is None          # moco: no flow threshold
    table = reproduction_table(record)
    assert "Paired differences on the still set" in table and "| s2vc-topk − tfd-keys | R@1 | 6 |" in table
    # what the demo test checks: the first table alone is the start of the whole
    assert table.startswith(reproduction_table(record, follow_up=False))
    assert "Paired" not in reproduction_table(record, follow_up=False)
    # the same lead on one set only earns no preset: the rule names both sets
    one = record_from_results({"still": still}, best="s2vc-topk", command="c", machine="m", date="d")
    assert not one["preset"] and "(no pan set here)" in one["finding"] and "follow_up" not in one
    # the paper's key made each step is no variant either: flag and sentence agree
    paper = record_from_results({"still": still, "pan": pan}, best="s2vc", command="c", machine="m", date="d")
    assert not paper["preset"] and "no preset" in paper["finding"]


def test_no_lead_is_not_separated_and_earns_nothing():
    flat = results({}, noise=0.05)
    record = record_from_results({"still": flat, "pan": results({}, noise=0.05, seed=2)}, best="s2vc-topk",
                                 command="c", machine="m", date="d")
    primary = [r for r in record["paired"] if r["set"] == "still" and r["metric"] in ("R@1", "motion")]
    # differences of pure noise around zero: the finding names exactly the pairs whose interval
    # excludes zero, and counts the rest as not separated
    excluding = [r for r in primary if r["lo"] > 0 or r["hi"] < 0]
    for r in primary:
        assert (f"{r['verdict']} on {r['metric']}" in record["finding"]) == (r in excluding)
    still = record["finding"].split("still set: ")[1].split(" pan set: ")[0]
    assert (f"the other {len(primary) - len(excluding)} of {len(primary)} not separated" in still if excluding
            else f"no pair separated on R@1 or motion ({len(primary)} intervals)" in still)
    assert not record["preset"] and "is not made a preset" in record["finding"]
    # a variant that wins on one set only earns no preset
    one_set = {"still": results({"s2vc-topk": 0.10}), "pan": results({})}
    paired = [{"set": n, **r} for n, res in one_set.items() for r in res["paired"]]
    assert not preset_earned(paired, "s2vc-topk", ("still", "pan"))
    # the paper's key chosen as the variant: no preset, said so
    assert "no preset" in finding_text(paired, "s2vc-keys", ("still", "pan"))
    assert not preset_earned(paired, "s2vc-keys", ("still", "pan"))


def test_the_record_refuses_validation_results_and_missing_pairs():
    val = results({})
    val["split"] = "val"
    with pytest.raises(ValueError, match="val-split results"):
        record_from_results({"still": val}, best=None, command="c", machine="m", date="d")
    bare = results({})
    bare["paired"] = []
    with pytest.raises(ValueError, match="no paired rows"):
        record_from_results({"still": bare}, best=None, command="c", machine="m", date="d")
    with pytest.raises(ValueError, match="not the results.json"):
        record_from_results({"still": [1, 2]}, best=None, command="c", machine="m", date="d")
    three = {n: results({}) for n in ("still", "pan", "shake")}
    with pytest.raises(ValueError, match="one or two sets"):
        record_from_results(three, best=None, command="c", machine="m", date="d")


def test_rows_are_at_the_step_every_arm_reached():
    """An arm resumed further than the others is shown at the paired rows' step, not its own last."""
    res = results({"s2vc-topk": 0.1})
    res["rows"] += [{**r, "step": 400} for r in res["rows"] if r["arm"] == "moco" and r["step"] == 300]
    record = record_from_results({"still": res}, best="s2vc-topk", command="c", machine="m", date="d")
    assert {r["step"] for r in record["rows"]} == {300} and {r["step"] for r in record["paired"]} == {300}


def test_the_script_writes_a_record_the_demo_reads(tmp_path, capsys):
    paths = []
    for name, seed in (("still", 0), ("pan", 1)):
        (tmp_path / f"paired_{name}").mkdir()
        path = tmp_path / f"paired_{name}" / "results.json"
        path.write_text(json.dumps(results({"s2vc-topk": 0.1}, seed=seed)))
        paths.append(str(path))
    choice = tmp_path / "variant_choice.json"
    choice.write_text(json.dumps({"arm": "s2vc-topk"}))
    out = tmp_path / "record.json"
    assert script.main([*paths, "--best-from", str(choice), "--machine", "2-core CPU", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = load_reproduction_record(out)
    assert record["best"] == "s2vc-topk" and record["machine"] == "2-core CPU"
    assert reproduction_table(record) in printed and record["finding"] in printed
    assert "NaN" not in out.read_text()
    # two results of one set name are refused before anything is written
    assert script.main([paths[0], paths[0], "--best", "s2vc-topk", "--machine", "m"]) == 2
    assert "one name" in capsys.readouterr().err
