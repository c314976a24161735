"""The last reproduction's results as shipped with the package (``training/assets/
last_reproduction.json``, a machine-readable copy of the tables in docs/RESULTS.md), and the
table ``s2vc demo`` prints from it. Numbers are percentages, mean (± std over seeds)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RECORD_PATH", "load_reproduction_record", "reproduction_table"]

RECORD_PATH = Path(__file__).resolve().parents[1] / "assets" / "last_reproduction.json"


def load_reproduction_record(path: str | Path = RECORD_PATH) -> dict:
    """The record: {"title", "date", "command", "budget", "metrics", "rows", "reference",
    "follow_up", "finding", "source"}; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: expected the reproduction record (JSON), could not read it: {exc}") from None
    missing = [k for k in ("title", "metrics", "rows", "reference") if k not in record]
    if missing:
        raise ValueError(f"{path}: not a reproduction record, missing {missing}")
    return record


def _cell(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{mean:5.1f}" + (f" ± {std:4.1f}" if std is not None else "")


def _rows(rows: list[dict], columns: int, with_run: bool) -> list[list[str]]:
    out = []
    for r in rows:
        std = r.get("std") or [None] * columns
        run = [str(r["step"]), str(r["seeds"])] if with_run else ["-", "-"]
        out.append([r["arm"], *run, *(_cell(m, s) for m, s in zip(r["mean"], std))])
    return out


def reproduction_table(record: dict, *, follow_up: bool = True) -> str:
    """The record's final table as Markdown (the arms, then the frame-difference and chance
    rows), and its follow-up table when there is one and ``follow_up``."""
    from .report import markdown_table

    metrics = record["metrics"]
    header = ["arm", "step", "seeds", *metrics]
    text = markdown_table(header, _rows(record["rows"], len(metrics), True)
                          + _rows(record["reference"], len(metrics), False))
    extra = record.get("follow_up")
    if follow_up and extra:
        text += f"\n\n{extra['title']}:\n\n" + markdown_table(header, _rows(extra["rows"], len(metrics), True))
    return text
