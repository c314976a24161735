"""Student t quantiles for the project's intervals and noise allowances: scipy's where installed
(it is not a dependency), else a table for 1-30 degrees of freedom and beyond it the
Cornish-Fisher expansion about the normal quantile (within 1e-4 of scipy's from 30 on).

Used by the paired comparison (``experiments/paired.py``: two-sided 95%, 0.975) and the flow fit
check (``flow/fit_check.py``: one-sided 95%, 0.95, at Welch's degrees of freedom). A fractional
df up to 30 reads the table at its floor, so there an allowance without scipy is a little wider.
At training's top level: two roles share it and it imports no role (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import math

__all__ = ["T_975", "T_95", "t_quantile", "welch_df"]

# the 0.975 and 0.95 quantiles of Student's t with df = 1..30 (scipy.stats.t.ppf, 4 decimals)
T_975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
T_95 = (6.3138, 2.9200, 2.3534, 2.1318, 2.0150, 1.9432, 1.8946, 1.8595, 1.8331, 1.8125,
        1.7959, 1.7823, 1.7709, 1.7613, 1.7531, 1.7459, 1.7396, 1.7341, 1.7291, 1.7247,
        1.7207, 1.7171, 1.7139, 1.7109, 1.7081, 1.7056, 1.7033, 1.7011, 1.6991, 1.6973)
_TABLES = {0.975: (T_975, 1.959964), 0.95: (T_95, 1.644854)}     # (table, the normal's quantile)


def t_quantile(df: float, p: float = 0.975) -> float:
    """The ``p`` quantile (0.975 or 0.95 without scipy) of Student's t with ``df`` >= 1 degrees
    of freedom (fractional allowed: Welch's)."""
    if not df >= 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, got {df}")
    try:
        from scipy import stats
    except ImportError:
        if p not in _TABLES:
            raise ValueError(f"without scipy only the quantiles {sorted(_TABLES)} are tabled, got {p}") from None
        table, z = _TABLES[p]
        if df < len(table) + 1:
            return table[int(df + 1e-9) - 1]         # a df a rounding below an integer is that integer
        if math.isinf(df):
            return z
        # Cornish-Fisher: t = z + g1(z)/df + g2(z)/df² (Abramowitz & Stegun 26.7.5)
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    return float(stats.t.ppf(p, df))


def welch_df(*parts: tuple[float, int]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent means' variances:
    ``parts`` = (standard error, count) of each mean. Means of one value or with SE 0 add no
    variance and are left out; inf when none adds any (the normal's quantile applies). One mean
    gives exactly its n - 1; several, a value between the smallest n - 1 and their sum (clamped
    there, so rounding never takes it below; an SE that is not finite gives the smallest)."""
    terms = [(se, n) for se, n in parts if n > 1 and se > 0]
    if not terms:
        return math.inf
    low, high = min(n - 1 for _, n in terms), sum(n - 1 for _, n in terms)
    if len(terms) == 1 or not all(math.isfinite(se) for se, _ in terms):
        return float(low)
    df = sum(se ** 2 for se, _ in terms) ** 2 / sum(se ** 4 / (n - 1) for se, n in terms)
    return float(min(max(df, low), high))
