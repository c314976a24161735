"""Elementwise pieces of the flow, with their plain PyTorch references.

Every op here has a reference written in plain PyTorch. The reference is the test oracle and the
fallback when the compiled extension (``s2vc._C``) is absent.
"""
from __future__ import annotations

import torch

# FrEIA's soft clamp uses a truncated 2/pi; the AdvFlow checkpoints depend on it (ADVFLOW_SPEC 2).
ATAN_FACTOR = 0.636


def soft_clamp(s: torch.Tensor, clamp: float) -> torch.Tensor:
    """Log-scale of an affine coupling: ``clamp * 0.636 * atan(s / clamp)``, |g| < 1.4985 at 1.5."""
    return (clamp * ATAN_FACTOR) * torch.atan(s / clamp)
