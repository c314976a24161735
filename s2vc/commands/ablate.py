"""``s2vc ablate alpha|preserve|strategy``: pretrain S²VC over alphas or preserved fractions of
latents (the paper's Fig. 3) or suppression strategies (Table 4), evaluate, tabulate
(``training.experiments.ablate``). Resumable."""
from __future__ import annotations

import argparse

from s2vc.commands import common
from s2vc.commands.reproduce import add_budget_arguments

HELP = "pretrain S²VC over alphas or preserved fractions (Fig. 3) or strategies (Table 4), evaluate, tabulate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from s2vc.training.experiments.runner import ABLATIONS

    p.add_argument("ablation", choices=tuple(ABLATIONS), help="what varies: alpha or preserve (the fraction of latents kept, "
                   "each turned into the alpha that keeps it on the training clips): Fig. 3; strategy: Table 4; "
                   "detail: the generator's fine detail, keep (the paper) or dynamic")
    p.add_argument("--values", nargs="+", required=True,
                   help="the alphas, the fractions in (0, 1) (e.g. 0.05 0.227 0.6), the strategies or the details")
    add_budget_arguments(p)


def run(args: argparse.Namespace) -> dict:
    from s2vc.training.experiments.runner import AblateConfig, ablate

    return ablate(common.settings_from_args(AblateConfig, args, synthetic=common.synthetic_set(args)))
