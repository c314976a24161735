"""A flow's suppression defaults and the checks of their values: the threshold alpha (eq. (4))
and the fraction ``topk`` keeps.

The one rule for every caller (the generator, the commands, the trainer, the mirror): a value
given is used as it is (after its check); None takes the flow's calibrated one (written into its
checkpoint by ``s2vc calibrate --write`` and ``train-flow``), else the paper's. A leaf module: it
imports nothing of s2vc, so calibrate, suppression and the generator all take these from here.
"""
from __future__ import annotations

import math

PAPER_ALPHA = 0.5            # the paper's threshold (eq. 4), with its own flow
DEFAULT_PRESERVE = 0.227     # the paper's fraction of latents kept at its alpha = 0.5


def check_alpha(alpha) -> None:
    """ValueError unless ``alpha`` is a positive finite number (eq. (4)'s threshold)."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number (the STD threshold of eq. (4)), got {alpha!r}")


def check_keep_fraction(keep_fraction, *, allow_zero: bool = False) -> float:
    """``keep_fraction`` as a float, or a ValueError: strategy ``topk``'s fraction of latents kept,
    in (0, 1] for a setting (keeping nothing makes no key), in [0, 1] with ``allow_zero`` (the
    suppression op itself, where keeping nothing is well defined: every latent suppressed)."""
    low = "[0" if allow_zero else "(0"
    ok = (isinstance(keep_fraction, (int, float)) and not isinstance(keep_fraction, bool)
          and (0.0 <= keep_fraction <= 1.0) and (allow_zero or keep_fraction > 0.0))
    if not ok:
        raise ValueError(f"strategy 'topk' needs keep_fraction in {low}, 1] (the fraction of latents kept), "
                         f"got {keep_fraction!r}")
    return float(keep_fraction)


def _meta(flow) -> dict:
    return getattr(flow, "meta", None) or {}


def resolve_alpha(flow, alpha: float | None = None) -> float:
    """The threshold to use with ``flow``: ``alpha`` when given; else the alpha calibrated into
    the flow's checkpoint (``flow.meta["alpha"]``); else the paper's 0.5."""
    if alpha is not None:
        return float(alpha)
    return float(_meta(flow).get("alpha", PAPER_ALPHA))


def resolve_keep_fraction(flow, keep_fraction: float | None = None) -> float:
    """The fraction strategy ``topk`` keeps with ``flow``: ``keep_fraction`` when given; else the
    fraction the flow's alpha was calibrated for (``flow.meta["alpha_calibration"]["preserve"]``),
    so that topk and the threshold keep as much; else the paper's 22.7%. Checked: in (0, 1]."""
    if keep_fraction is None:
        calibration = _meta(flow).get("alpha_calibration") or {}
        keep_fraction = calibration.get("preserve", DEFAULT_PRESERVE)
    return check_keep_fraction(float(keep_fraction))


def check_preserved_fraction(fraction) -> float:
    """``fraction`` as a float, or a ValueError: the share of latents an alpha is calibrated to
    preserve (``s2vc calibrate --preserve``), in (0, 1) (at 0 or 1 no threshold separates them)."""
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise ValueError(f"the preserved fraction must be in (0, 1), got {fraction!r}")
    return float(fraction)
