"""The suppression strategies (the paper's Table 4): the one table of what each one is.

Everything else derives from ``TABLE``: the CLI's ``--strategy`` choices (``STRATEGIES``), the
codes of the compiled op ``s2vc::temporal_std_mask`` and of the exported graph
(``STRATEGY_CODES``; ``cpp_ext/temporal_std.h``'s enum must agree, tests/test_suppression.py
parses it), the strategies a static graph can run (``EXPORTABLE_STRATEGIES``) and the extra
inputs their graph takes (``STRATEGY_INPUTS``), which need ``keep_fraction``, which draw random
numbers. A leaf module: it imports nothing of s2vc, so any engine module may import it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    """One way to suppress the static latents (those with temporal STD < alpha).

    code: the strategy's code in the compiled op and the exported graph, None when it has none
    (the op then runs as STD-and-mask only, ``STD_ONLY_CODE``, and the suppression is eager);
    exportable: a static graph (TorchScript / ONNX / TensorRT) can run it; graph_inputs: the
    extra inputs of that graph, in graph order ("noise" float (B, D), "order" int64 (B, T, D));
    needs_keep_fraction: selects by rank (``keep_fraction``), not by alpha; random: draws numbers
    (seed the generator for determinism); help: one line for ``--help``.
    """

    name: str
    code: int | None
    exportable: bool
    graph_inputs: tuple[str, ...]
    needs_keep_fraction: bool
    random: bool
    help: str


TABLE: tuple[Strategy, ...] = (
    Strategy("zero", 0, True, (), False, False,
             "static latents set to 0, the prior's mean (eq. 5; the paper's default)"),
    Strategy("noise", 1, True, ("noise",), False, True,
             "static latents replaced by N(0, 1) noise drawn once per clip and held over time"),
    Strategy("shuffle_clip", 2, True, ("order",), False, True,
             "each static latent's values shuffled across the frames of its clip"),
    Strategy("shuffle_frame", None, False, (), False, True,
             "within each frame, the static latents' values permuted among themselves"),
    Strategy("topk", None, False, (), True, False,
             "keep the keep_fraction most-varying latents of each clip, zero the rest (no alpha)"),
)

BY_NAME: dict[str, Strategy] = {s.name: s for s in TABLE}
STRATEGIES: tuple[str, ...] = tuple(BY_NAME)
# -1 asks the compiled op for the STD and the mask only (cpp_ext/temporal_std.h: kStdOnly)
STD_ONLY_CODE = -1
STRATEGY_CODES: dict[str, int] = {s.name: s.code for s in TABLE if s.code is not None}
EXPORTABLE_STRATEGIES: tuple[str, ...] = tuple(s.name for s in TABLE if s.exportable)
STRATEGY_INPUTS: dict[str, tuple[str, ...]] = {s.name: s.graph_inputs for s in TABLE if s.exportable}
RANDOM_STRATEGIES: tuple[str, ...] = tuple(s.name for s in TABLE if s.random)


def strategy(name: str) -> Strategy:
    """The table's row for ``name``; ValueError naming the valid ones otherwise."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown suppression strategy {name!r}; expected one of {STRATEGIES}") from None


def help_text() -> str:
    """``--strategy``'s help: every strategy with its line."""
    return "; ".join(f"{s.name}: {s.help}" for s in TABLE)
