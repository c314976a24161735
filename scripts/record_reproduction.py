#!/usr/bin/env python3
"""The shipped record of the paired comparison (``training/assets/last_reproduction.json``, what
``s2vc demo`` prints), made from the test-split results of ``scripts/reproduce_cpu.sh``'s parts
``still`` and ``pan``, so that no number in it is typed by hand:

    python scripts/record_reproduction.py OUT/paired_still/results.json OUT/paired_pan/results.json \\
        --best-from OUT/paired_still/variant_choice.json --machine "2-core CPU, no GPU" \\
        --out training/assets/last_reproduction.json

A set is named by its folder (``paired_still`` -> ``still``). It prints the Markdown that
docs/RESULTS.md carries (the same tables, line for line: ``tests/test_eval_suite.py`` checks it)
and the finding, worded from the verdicts only. ``--out`` is written atomically.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from s2vc.engine.checkpoint import atomic_write_text
from s2vc.training.experiments.record import record_from_results, reproduction_table

DEFAULT_COMMAND = ("OUT=... bash scripts/reproduce_cpu.sh (parts starts budget variant still pan: "
                   "s2vc reproduce --arms moco s2vc-keys tfd-keys fame be oracle BEST --best BEST "
                   "--seeds 0 1 2 3 4 5 --seeds-of oracle=0,1,2 be=0,1,2 fame=0,1,2 --steps STEPS --split test, "
                   "on the still and the pan set)")


def set_name(path: Path) -> str:
    name = path.resolve().parent.name
    return name[len("paired_"):] if name.startswith("paired_") else name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/record_reproduction.py",
                                description="the shipped record of the paired comparison, from each set's results.json")
    p.add_argument("results", nargs="+", help="results.json of each set (s2vc reproduce --split test), first set first")
    best = p.add_mutually_exclusive_group(required=True)
    best.add_argument("--best", help="the project's variant (the arm given to reproduce --best)")
    best.add_argument("--best-from", help="variant_choice.json (scripts/choose.py variant --out)")
    p.add_argument("--machine", required=True, help="where the runs ran, in words")
    p.add_argument("--command", default=DEFAULT_COMMAND, help="the command the runs came from")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--out", default=None, help="write the record here (atomically)")
    args = p.parse_args(argv)
    paths = [Path(r) for r in args.results]
    names = [set_name(r) for r in paths]
    if len(set(names)) != len(names):
        print(f"record: error: two results from sets of one name {names}: keep each in its paired_<set> folder",
              file=sys.stderr)
        return 2
    try:
        chosen = args.best if args.best else json.loads(Path(args.best_from).read_text())["arm"]
        record = record_from_results(dict(zip(names, paths)), best=chosen, command=args.command,
                                     machine=args.machine, date=args.date)
    except (OSError, ValueError, KeyError) as exc:
        print(f"record: error: {exc}", file=sys.stderr)
        return 2
    print(reproduction_table(record))
    print()
    print(record["finding"])
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
