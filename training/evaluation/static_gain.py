"""``s2vc eval static-gain``: the paper's Fig. 6 — does a method gain most on the classes that
are easiest to recognise from a single frame?

Inputs are three result JSONs with per-class top-1 on the same classes:
    static    a model trained and tested on static clips (``s2vc eval finetune --static``): per
              class, how recognisable the class is from one frame (x axis)
    method    the method's per-class top-1 (``s2vc eval finetune`` or ``s2vc eval linear``)
    baseline  the baseline's, evaluated the same way
The relative gain of a class is (method - baseline) / baseline; classes where the baseline is 0
(the ratio is undefined) are listed and left out. ``evaluate_static_gain`` gives the per-class
table and Pearson's r of static accuracy vs gain, writes JSON (``out``) and the scatter plot
(``plot``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .common import Evaluation, write_json
from .metrics import pearson
from s2vc.engine.figures import save_figure

__all__ = ["relative_gain", "static_gain", "StaticGainSettings", "evaluate_static_gain"]


def relative_gain(method: list[float], baseline: list[float]) -> list[float]:
    """Per class (m - b) / b; NaN where b is 0 or either value is NaN."""
    if len(method) != len(baseline):
        raise ValueError(f"{len(method)} method classes vs {len(baseline)} baseline classes")
    return [math.nan if (math.isnan(m) or math.isnan(b) or b == 0) else (m - b) / b for m, b in zip(method, baseline)]


def _per_class(path: str | Path, what: str) -> tuple[list[float], list[str] | None]:
    """(per-class top-1, class names or None) of a result JSON; ValueError naming ``path`` and
    ``what`` it should be for anything else."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} ({what}): not a JSON file ({exc}); expected the JSON of `s2vc eval finetune` "
                         f"or `s2vc eval linear`") from exc
    if not isinstance(data, dict) or "per_class" not in data:
        raise ValueError(f"{path} ({what}): no 'per_class' accuracies; use the JSON of `s2vc eval finetune` "
                         f"or `s2vc eval linear`")
    return [float(x) for x in data["per_class"]], data.get("classes")


def static_gain(static: list[float], method: list[float], baseline: list[float],
                classes: list[str] | None = None) -> dict:
    """Per-class relative gain vs static accuracy and their Pearson r (over the defined classes)."""
    if not len(static) == len(method) == len(baseline):
        raise ValueError(f"per-class lists differ in length: static {len(static)}, method {len(method)}, "
                         f"baseline {len(baseline)}")
    classes = classes or [str(i) for i in range(len(static))]
    gain = relative_gain(method, baseline)
    used = [i for i, g in enumerate(gain) if not math.isnan(g) and not math.isnan(static[i])]
    r = pearson([static[i] for i in used], [gain[i] for i in used]) if len(used) >= 2 else math.nan
    return {"classes": classes, "static": static, "method": method, "baseline": baseline, "gain": gain,
            "used": [classes[i] for i in used], "left_out": [classes[i] for i in range(len(classes)) if i not in used],
            "pearson": r}


def _plot(result: dict, path: Path, names: tuple[str, str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    idx = [result["classes"].index(c) for c in result["used"]]
    x = np.array([result["static"][i] for i in idx]) * 100
    y = np.array([result["gain"][i] for i in idx]) * 100
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(x, y, s=18)
    for i, xi, yi in zip(idx, x, y):
        ax.annotate(result["classes"][i], (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if len(x) >= 2 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, a * xs + b, "r-", lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("static accuracy of the class (%)")
    ax.set_ylabel(f"relative gain of {names[0]} over {names[1]} (%)")
    ax.set_title(f"Pearson r = {result['pearson']:.3f} over {len(x)} classes", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


@dataclass
class StaticGainSettings:
    """``s2vc eval static-gain``: the three per-class result JSONs (``static``, ``method``,
    ``baseline``), the ``names`` of method and baseline, the result JSON ``out`` and the scatter
    ``plot`` (default: ``out`` with .png; neither: nothing written)."""

    static: str
    method: str
    baseline: str
    names: tuple[str, str] = ("S²VC", "MoCo")
    out: str | None = None
    plot: str | None = None


def evaluate_static_gain(settings: StaticGainSettings) -> Evaluation:
    """``static_gain`` of the three JSONs, its per-class table, the plot and JSON written."""
    s = settings
    static, c0 = _per_class(s.static, "static")
    method, c1 = _per_class(s.method, "method")
    baseline, c2 = _per_class(s.baseline, "baseline")
    named = [c for c in (c0, c1, c2) if c is not None]
    if any(c != named[0] for c in named):
        raise ValueError(f"static-gain: the three results are over different classes: {[c[:3] for c in named]}")
    result = static_gain(static, method, baseline, named[0] if named else None)
    lines = _table_lines(result, tuple(s.names))
    notes = [f"left out (baseline 0 or undefined): {result['left_out']}"] if result["left_out"] else []
    plot = Path(s.plot) if s.plot else (Path(s.out).with_suffix(".png") if s.out else None)
    if plot:
        plot.parent.mkdir(parents=True, exist_ok=True)
        _plot(result, plot, tuple(s.names))
        result["plot"] = str(plot)
        lines.append(f"plot: {plot}")
    write_json(result, s.out)
    return Evaluation(result, "\n".join(lines), notes)


def _table_lines(result: dict, names: tuple[str, str]) -> list[str]:
    """Per class: static accuracy, method, baseline, relative gain (%); then Pearson's r."""
    static, method, baseline = result["static"], result["method"], result["baseline"]
    width = max(len(c) for c in result["classes"])
    lines = [f"{'class':<{width}}  static  {names[0]:>7}  {names[1]:>7}  rel. gain"]
    for i, c in enumerate(result["classes"]):
        g = result["gain"][i]
        lines.append(f"{c:<{width}}  {100 * static[i]:6.1f}  {100 * method[i]:7.1f}  {100 * baseline[i]:7.1f}  "
                     + ("    n/a" if math.isnan(g) else f"{100 * g:+8.1f}%"))
    lines.append(f"Pearson r (static accuracy vs relative gain, {len(result['used'])} classes): "
                 f"{result['pearson']:.3f}")
    return lines
