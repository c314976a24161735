"""The experiments' reports: scores summarised over seeds, Markdown tables, learning-curve and
ablation plots. Scores are fractions in [0, 1]; tables show percentages; ± is the sample SD over
seeds (ddof 1). Paired comparisons of arms: ``training/experiments/paired.py``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .scoring import METRICS
from s2vc.engine.figures import save_figure

__all__ = ["HEADLINE", "CURVES", "summarise", "mean_sd", "markdown_table", "final_table", "curve_table",
           "plot_curves", "plot_ablation"]

HEADLINE = ("R@1", "R@5", "linear", "motion", "look_scene")
CURVES = ("R@1", "linear", "motion", "look_scene", "look_colour")


def summarise(rows: list[dict], key: str) -> dict:
    """rows of {key, "seed", "step", metrics...} -> {value: {step: {metric: (mean, sample SD with
    ddof 1 (nan for one seed), n)}}}."""
    out: dict = {}
    for r in rows:
        out.setdefault(r[key], {}).setdefault(r["step"], []).append(r)
    return {v: {s: {m: mean_sd([r[m] for r in rs]) for m in METRICS} for s, rs in sorted(steps.items())}
            for v, steps in out.items()}


def mean_sd(values) -> tuple[float, float, int]:
    """(mean, sample SD with ddof 1 (nan for one value), count) of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:5.1f}" + (f" ± {100 * std:4.1f}" if n > 1 else "")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def final_table(summary: dict, ref: dict, label: str, extra: dict | None = None) -> str:
    """One row per value of ``label`` at its last snapshot (mean ± std over seeds), then the
    frame-difference and chance rows; ``extra`` {value: {column: number}} adds columns."""
    extra_columns = list(next(iter(extra.values()))) if extra else []
    header = [label, "step", "seeds", *METRICS, *extra_columns]
    rows = []
    for value, steps in summary.items():
        last = max(steps)
        cells = steps[last]
        row = [str(value), str(last), str(cells[METRICS[0]][2])] + [_fmt(*cells[m]) for m in METRICS]
        if extra:
            row += [("-" if math.isnan(x) else f"{x:.3f}") if isinstance(x, float) else str(x)
                    for x in extra[value].values()]
        rows.append(row)
    fd, ch = ref["frame_difference"], ref["chance"]
    rows.append(["frame difference (no learning)", "-", "-"] + [f"{100 * fd[m]:5.1f}" for m in METRICS]
                + ["-"] * len(extra_columns))
    rows.append(["chance", "-", "-"] + ["-" if math.isnan(ch[m]) else f"{100 * ch[m]:5.1f}" for m in METRICS]
                + ["-"] * len(extra_columns))
    return markdown_table(header, rows)


def curve_table(summary: dict, metric: str) -> str:
    """``metric`` of every value at every snapshot step."""
    steps = sorted({s for v in summary.values() for s in v})
    rows = [[str(v)] + [_fmt(*cells[s][metric]) if s in cells else "" for s in steps] for v, cells in summary.items()]
    return markdown_table([f"{metric} at step"] + [str(s) for s in steps], rows)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(summary: dict, ref: dict, path: Path, title: str) -> None:
    """Learning curves (mean ± std band over seeds) of five metrics, with the reference lines."""
    plt = _pyplot()
    panels = [("R@1", "retrieval R@1 (test queries train)"), ("linear", "linear probe (train -> test)"),
              ("motion", "motion probe (test split, disjoint groups)"), ("look_scene", "look probe: scene"),
              ("look_colour", "look probe: actor colour")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (metric, name) in zip(axes, panels):
        for value, cells in summary.items():
            steps = sorted(cells)
            mean = np.array([cells[s][metric][0] for s in steps]) * 100
            std = np.array([cells[s][metric][1] for s in steps]) * 100
            ax.plot(steps, mean, marker="o", label=str(value))
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.axhline(100 * ref["frame_difference"][metric], color="k", ls="--", lw=1, label="frame difference")
        if not math.isnan(ref["chance"][metric]):
            ax.axhline(100 * ref["chance"][metric], color="grey", ls=":", lw=1, label="chance")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("%")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_ablation(kind: str, summary: dict, preserved: dict, path: Path) -> None:
    """The headline metrics at the last snapshot per value (bars for strategies and details,
    lines over α or the preserved fraction with the fraction kept on a second axis)."""
    plt = _pyplot()
    values = list(summary)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    categorical = kind in ("strategy", "detail")
    xs = np.arange(len(values)) if categorical else np.array([float(v) for v in values])
    for j, metric in enumerate(HEADLINE):
        mean = np.array([summary[v][max(summary[v])][metric][0] for v in values]) * 100
        if categorical:
            ax.bar(xs + (j - 2) * 0.16, mean, width=0.16, label=metric)
        else:
            ax.plot(xs, mean, marker="o", label=metric)
    if categorical:
        ax.set_xticks(xs, values)
    else:
        ax.set_xlabel({"alpha": "α", "preserve": "fraction of latents asked to keep"}.get(kind, kind))
        twin = ax.twinx()
        twin.plot(xs, [100 * preserved[v] for v in values], "k--", marker="s", label="preserved latents")
        twin.set_ylabel("preserved latents (%)")
        twin.legend(fontsize=7, loc="upper right")
    ax.set_ylabel("%")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"S²VC {kind} ablation (last snapshot, mean over seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# why a paired metric can be nan on every run of a set of one's own
MISSING_WHY = {"motion": "the motion probe needs UCF101-style ids (v_<Class>_gXX_cYY) and, in the scored split, "
                         "each class's videos in groups of both parities"}


def missing_metrics_line(rows: list[dict], metrics=("R@1", "motion", "linear")) -> str:
    """A line naming the pre-registered paired metrics that are nan on every row (so the paired
    table leaves them out) and why; "" when none is."""
    gone = [m for m in metrics if rows and all(math.isnan(r.get(m, math.nan)) for r in rows)]
    if not gone:
        return ""
    return ("Not measured on this set, so not in the paired table: "
            + "; ".join(f"{m} ({MISSING_WHY.get(m, 'nan on every run')})" for m in gone) + ".\n")
