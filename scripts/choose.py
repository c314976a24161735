#!/usr/bin/env python3
"""The pre-registered budget and variant choices of docs/RESULTS.md, from validation results
(``training/experiments/choices.py`` has the rules):

    python scripts/choose.py budget OUT/paired_still/budget_val.json [--out budget_choice.json]
    python scripts/choose.py variant STILL/variant_val.json PAN/variant_val.json --step 400 [--out ...]

Each prints the table the choice was made from and, last, the choice alone on its own line (what
``scripts/reproduce_cpu.sh`` reads); ``--out FILE`` also writes the choice and its table as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from s2vc.engine.checkpoint import atomic_write_text
from s2vc.training.experiments.choices import VARIANT_CANDIDATES, VARIANT_METRICS, choose_budget, choose_variant
from s2vc.training.experiments.report import markdown_table


def _pp(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/choose.py",
                                description="the pre-registered budget and variant choices (docs/RESULTS.md) "
                                            "from validation-split results")
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("budget", help="the first snapshot where the oracle beats MoCo by >= 10 R@1")
    b.add_argument("results", help="results_val.json of the budget part (moco and oracle)")
    v = sub.add_parser("variant", help="the project's variant: highest R@1 + motion over seeds and sets")
    v.add_argument("results", nargs="+", help="results_val.json of each set (still, pan)")
    v.add_argument("--step", type=int, required=True, help="the chosen budget")
    v.add_argument("--candidates", nargs="+", default=list(VARIANT_CANDIDATES), help="the arms to choose from")
    v.add_argument("--metrics", nargs="+", default=list(VARIANT_METRICS),
                   help=f"the metrics summed (default {' '.join(VARIANT_METRICS)}, the pre-registered rule; "
                        "name them before reading any result)")
    for q in (b, v):
        q.add_argument("--out", default=None, help="also write the choice and its table as JSON")
    args = p.parse_args(argv)
    try:
        if args.what == "budget":
            choice = choose_budget(args.results)
            print(markdown_table(["step", "seeds", "oracle R@1", "moco R@1", "oracle − moco (pp)"],
                                 [[str(r["step"]), str(len(r["seeds"])), _pp(r["a"]), _pp(r["b"]), _pp(r["mean"])]
                                  for r in choice["per_step"]]))
            value = choice["step"]
        else:
            sets = {Path(r).parent.name: r for r in args.results}
            choice = choose_variant(sets, args.step, args.candidates, args.metrics)
            print(markdown_table(["arm", *sets, "mean"],
                                 [[arm, *(_pp(s[n]) for n in sets), _pp(s["mean"])] for arm, s in choice["scores"].items()]))
            value = choice["arm"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"choices: error: {exc}", file=sys.stderr)
        return 2
    print(f"rule: {choice['rule']}", file=sys.stderr)
    if args.out:
        atomic_write_text(args.out, json.dumps(choice, indent=1))
    print("none" if value is None else value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
