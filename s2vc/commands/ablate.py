"""``s2vc ablate alpha|strategy``: pretrain S²VC over alphas (the paper's Fig. 3) or suppression
strategies (Table 4), evaluate, tabulate (``training.experiments.ablate``). Resumable."""
from __future__ import annotations

import argparse

from s2vc.commands import common
from s2vc.commands.reproduce import add_budget_arguments

HELP = "pretrain S²VC over alphas (Fig. 3) or strategies (Table 4), evaluate, tabulate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from s2vc.training.experiments import ABLATIONS

    p.add_argument("ablation", choices=tuple(ABLATIONS), help="what varies: alpha (Fig. 3) or strategy (Table 4)")
    p.add_argument("--values", nargs="+", required=True, help="the alphas or strategies")
    add_budget_arguments(p)


def run(args: argparse.Namespace) -> dict:
    from s2vc.training.experiments import AblateConfig, ablate

    return ablate(common.settings_from_args(AblateConfig, args, synthetic=common.synthetic_set(args)))
