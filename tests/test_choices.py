"""The pre-registered choices (training/experiments/choices.py, scripts/choose.py) follow their rules exactly."""
from __future__ import annotations

import json

import pytest

import importlib.util
from pathlib import Path

from s2vc.training.experiments.choices import choose_budget, choose_variant

_spec = importlib.util.spec_from_file_location("choose", Path(__file__).resolve().parents[1] / "scripts" / "choose.py")
choose_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(choose_script)
main = choose_script.main


def rows(table: dict) -> list[dict]:
    """{(arm, seed, step): (R@1, motion)} -> reproduce's rows."""
    return [{"arm": arm, "seed": seed, "step": step, "R@1": r1, "motion": mo}
            for (arm, seed, step), (r1, mo) in table.items()]


def results(table: dict, split: str = "val") -> dict:
    return {"split": split, "rows": rows(table)}


def test_budget_is_the_first_step_where_the_paired_mean_reaches_10_points():
    t = {}
    for seed in (0, 1, 2):
        for step, gap in ((0, 0.0), (100, 0.04), (200, 0.09), (300, 0.12), (400, 0.08)):
            t[("moco", seed, step)] = (0.20, 0.3)
            # seed 2 lags, so the paired mean at 200 is below 10 even though two seeds exceed it
            t[("oracle", seed, step)] = (0.20 + gap + (0.03 if seed < 2 else -0.09), 0.3)
    choice = choose_budget(results(t))
    assert [round(r["mean"], 4) for r in choice["per_step"]] == [0.03, 0.08, 0.11, 0.07]
    assert choice["step"] == 300
    never = {k: ((0.2, 0.3) if k[0] == "moco" else (0.25, 0.3)) for k in t}
    assert choose_budget(results(never))["step"] is None


def test_choices_refuse_the_test_split_and_missing_scores():
    t = {("moco", 0, 100): (0.2, 0.3), ("oracle", 0, 100): (0.4, 0.3)}
    with pytest.raises(ValueError, match="validation split"):
        choose_budget(results(t, "test"))
    with pytest.raises(ValueError, match="s2vc-topk has no scores at step 100"):
        choose_variant({"still": results({("s2vc-keys", 0, 100): (0.2, 0.3)})}, 100, ("s2vc-keys", "s2vc-topk"))


def test_variant_is_the_best_mean_over_sets_and_seeds(tmp_path, capsys):
    still = {("s2vc-keys", s, 400): (0.30, 0.40) for s in (0, 1, 2)}
    still.update({("s2vc-dynamic", s, 400): (0.34, 0.42) for s in (0, 1, 2)})
    pan = {("s2vc-keys", s, 400): (0.30, 0.40) for s in (0, 1, 2)}
    pan.update({("s2vc-dynamic", s, 400): (0.20, 0.30) for s in (0, 1, 2)})   # worse on pan: loses overall
    choice = choose_variant({"still": results(still), "pan": results(pan)}, 400, ("s2vc-keys", "s2vc-dynamic"))
    assert choice["arm"] == "s2vc-keys"
    assert choice["scores"]["s2vc-dynamic"]["mean"] == pytest.approx((0.76 + 0.50) / 2)
    # the command line: the table, then the choice alone on the last line
    for name, t in (("paired_still", still), ("paired_pan", pan)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results_val.json").write_text(json.dumps(results(t)))
    argv = ["variant", str(tmp_path / "paired_still" / "results_val.json"),
            str(tmp_path / "paired_pan" / "results_val.json"), "--step", "400",
            "--candidates", "s2vc-keys", "s2vc-dynamic", "--out", str(tmp_path / "variant.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "s2vc-keys" and "paired_still" in out[0]
    assert json.loads((tmp_path / "variant.json").read_text())["arm"] == "s2vc-keys"


def test_a_variant_rule_with_a_nan_metric_is_refused_and_can_name_its_metrics(tmp_path, capsys):
    """A set of one's own without groups of both parities scores no motion probe (nan): the rule's
    sum would be nan for every arm and max() would pick the first; it is refused, naming the metric,
    and the command line takes the metrics to sum instead."""
    nan = float("nan")
    own = {("s2vc-keys", s, 300): (0.30, nan) for s in (0, 1, 2)}
    own.update({("s2vc-topk", s, 300): (0.34, nan) for s in (0, 1, 2)})
    with pytest.raises(ValueError, match="s2vc-keys's motion is nan at step 300 on set mine"):
        choose_variant({"mine": results(own)}, 300, ("s2vc-keys", "s2vc-topk"))
    assert choose_variant({"mine": results(own)}, 300, ("s2vc-keys", "s2vc-topk"), ("R@1",))["arm"] == "s2vc-topk"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "results_val.json").write_text(json.dumps(results(own)))
    argv = ["variant", str(tmp_path / "mine" / "results_val.json"), "--step", "300", "--candidates", "s2vc-keys",
            "s2vc-topk"]
    assert main(argv) == 2 and "motion is nan" in capsys.readouterr().err
    assert main([*argv, "--metrics", "R@1"]) == 0 and capsys.readouterr().out.strip().splitlines()[-1] == "s2vc-topk"
    assert main([*argv, "--metrics", "R@1", "R@5"]) == 2 and "has no metric 'R@5'" in capsys.readouterr().err
