"""Paired statistics over seeds: the comparison a reviewer accepts.

Every arm of a seed starts from the same weights, queue, clips and augmentations
(``training/pretrain/rng.py``), so two arms are compared seed by seed: the difference of a
metric per seed, its mean, sample SD (ddof 1), a 95% Student t interval on the mean difference
(t quantile: ``training/stats.py``, scipy's when installed, else a table and its expansion) and the
sign count. A sentence may say "A beats B" only where the interval excludes zero; otherwise the
two are "not separated". Differences with no spread (every seed the same difference, SD 0) give
an interval of zero width however few the seeds: that is the metrics' steps (a top-1 over V videos
moves by 1/V), not certainty. There the interval reads "no spread" and the exact two-sided sign
test decides instead (every seed on one side: p = 2 / 2^n, below 0.05 from 6 seeds on), so a pair
that is the same on every seed is never read as stronger, nor weaker, than one with a little noise.

    diff = paired_difference({0: .31, 1: .28, 2: .35}, {0: .22, 1: .25, 2: .20})
    diff.verdict("s2vc", "moco")            # "s2vc beats moco" or "not separated"
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..stats import T_975, t_quantile
from .report import markdown_table, mean_sd

__all__ = ["NO_SPREAD", "T_975", "t_quantile", "mean_sd", "PairedDifference", "paired_difference", "PAIRS", "pairs_for",
           "paired_rows", "paired_table", "interval_text", "step0_spread", "step0_line"]

# an SD below this (in fractions: a millionth of a percentage point) is no spread: float noise on
# differences that are equal over the seeds
NO_SPREAD = 1e-8


@dataclass
class PairedDifference:
    """a - b over the seeds both have: n seeds, mean difference and its sample SD (ddof 1),
    the 95% t interval [lo, hi] (nan with one seed), and the sign count (wins: a > b)."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float
    wins: int
    losses: int
    ties: int

    @property
    def spread(self) -> bool:
        """The differences vary over the seeds (a t interval means something)."""
        return self.n > 1 and self.sd > NO_SPREAD

    @property
    def sign_p(self) -> float:
        """The exact two-sided sign test's p (ties left out): the chance of a split at least this
        uneven if either arm were as likely to win each seed."""
        n, k = self.wins + self.losses, min(self.wins, self.losses)
        if n == 0:
            return 1.0
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)

    @property
    def separated(self) -> bool:
        """The 95% interval excludes zero; with no spread (``spread`` False, n > 1), the sign test's
        p is below 0.05 instead."""
        if self.n < 2 or math.isnan(self.mean):
            return False
        if not self.spread:
            return self.mean != 0 and self.sign_p < 0.05
        return self.lo > 0 or self.hi < 0

    def verdict(self, a: str, b: str) -> str:
        """"a beats b", "b beats a" (only where the interval excludes zero) or "not separated"."""
        if not self.separated:
            return "not separated"
        return f"{a} beats {b}" if self.mean > 0 else f"{b} beats {a}"


def paired_difference(a: dict, b: dict) -> PairedDifference:
    """The paired difference a - b of {seed: value} dicts over the seeds both have (ValueError
    when they share none)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"no seed in common to pair: {sorted(a)} and {sorted(b)}")
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    mean, sd, n = mean_sd(d)
    half = t_quantile(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return PairedDifference(n, mean, sd, mean - half, mean + half, int((d > 0).sum()), int((d < 0).sum()),
                            int((d == 0).sum()))


# the pairs that matter, by role: "s2vc" / "tfd" are the mirror-keyed arms when present (both keys
# made the same way), else the on-the-fly ones; "best" is the project's own variant (--best);
# "made" is, when "best" is read from a mirror (<arm>-keys), <arm> made each step: their pair
# measures the way the key is made alone (part keyed of scripts/reproduce_cpu.sh)
PAIRS = (("s2vc", "moco"), ("s2vc", "tfd"), ("s2vc", "fame"), ("oracle", "moco"), ("best", "tfd"), ("best", "s2vc"),
         ("made", "best"))


def pairs_for(arms, best: str | None = None) -> list[tuple[str, str]]:
    """The ``PAIRS`` that this set of arms can make, as arm names."""
    arms = list(arms)
    role = {"best": best} if best in arms else {}
    for name in ("s2vc", "tfd"):
        keyed = f"{name}-keys"
        role[name] = keyed if keyed in arms else name if name in arms else None
    for name in ("moco", "fame", "oracle"):
        role[name] = name if name in arms else None
    from ..pretrain.keys import KEYS_SUFFIX
    if best in arms and best.endswith(KEYS_SUFFIX) and best[:-len(KEYS_SUFFIX)] in arms:
        role["made"] = best[:-len(KEYS_SUFFIX)]
    out = []
    for a, b in PAIRS:
        pa, pb = role.get(a), role.get(b)
        if pa and pb and pa != pb and (pa, pb) not in out:
            out.append((pa, pb))
    return out


def _per_seed(rows: list[dict], key: str, value, step: int, metric: str) -> dict:
    return {r["seed"]: r[metric] for r in rows if r[key] == value and r["step"] == step}


def paired_rows(rows: list[dict], key: str, pairs, metrics, step: int) -> list[dict]:
    """One record per (pair, metric) at ``step``: {"a", "b", "metric", "step", PairedDifference's
    fields (fractions), "verdict"}; pairs without a seed in common, and metrics that are nan for
    every seed of both arms (a set without look labels or probe groups), are left out."""
    out = []
    for a, b in pairs:
        for m in metrics:
            va, vb = _per_seed(rows, key, a, step, m), _per_seed(rows, key, b, step, m)
            if len(set(va) & set(vb)) < 1 or all(math.isnan(v) for v in (*va.values(), *vb.values())):
                continue                    # no seed in common, or a metric this set does not have
            d = paired_difference(va, vb)
            out.append({"a": a, "b": b, "metric": m, "step": step, **asdict(d), "verdict": d.verdict(a, b)})
    return out


def paired_table(records: list[dict]) -> str:
    """``paired_rows`` as Markdown: differences in percentage points."""
    def pp(x):
        return "-" if math.isnan(x) else f"{100 * x:+.1f}"
    body = [[f"{r['a']} − {r['b']}", r["metric"], str(r["n"]), pp(r["mean"]),
             "-" if math.isnan(r["sd"]) else f"{100 * r['sd']:.1f}",
             interval_text(r),
             f"{r['wins']}/{r['losses']}/{r['ties']}", r["verdict"]] for r in records]
    return markdown_table(["pair", "metric", "seeds", "mean diff (pp)", "SD (pp)", "95% t interval",
                           "sign +/−/=", "verdict"], body)


def interval_text(r: dict) -> str:
    """A record's 95% interval as the table shows it ("no spread": the sign test's p instead)."""
    if r["n"] < 2 or math.isnan(r["sd"]):
        return "-"
    if r["sd"] > NO_SPREAD:
        return f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]"
    d = PairedDifference(**{k: r[k] for k in ("n", "mean", "sd", "lo", "hi", "wins", "losses", "ties")})
    return f"no spread (sign test p = {d.sign_p:.3f})"


def step0_spread(rows: list[dict], key: str, metrics) -> dict:
    """{metric: the largest spread (max - min) across arms of a seed's step-0 score}: 0 when every
    arm of every seed started alike; nan without step-0 rows of two arms."""
    out = {}
    for m in metrics:
        spreads = []
        for seed in sorted({r["seed"] for r in rows}):
            vals = [r[m] for r in rows if r["seed"] == seed and r["step"] == 0]
            if len(vals) > 1:
                spreads.append(max(vals) - min(vals))
        out[m] = max(spreads) if spreads else math.nan
    return out


def step0_line(rows: list[dict], key: str, metrics) -> str:
    """One sentence on the step-0 scores across arms (identical by construction: said so, or
    which metric differs by how much)."""
    spread = step0_spread(rows, key, metrics)
    if all(math.isnan(v) for v in spread.values()):
        return "Step 0: fewer than two arms per seed have a step-0 snapshot; nothing to compare."
    if all(v == 0 for v in spread.values() if not math.isnan(v)):
        return "Step 0: every arm of a seed scores identically on every metric (identical starts)."
    worst = {m: v for m, v in spread.items() if not math.isnan(v) and v != 0}
    return ("Step 0: arms of a seed differ (they did not share a start): largest spread "
            + ", ".join(f"{m} {100 * v:.1f} pp" for m, v in worst.items()) + ".")
