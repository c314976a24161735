"""Elementwise pieces of the flow, with their plain PyTorch references.

Every op here has a reference written in plain PyTorch. The reference is the test oracle and the
fallback when the compiled extension (``s2vc._C``) is absent.
"""
from __future__ import annotations

import torch

from .extension import EXT_BACKENDS, resolve_backend

# FrEIA's soft clamp uses a truncated 2/pi; the AdvFlow checkpoints depend on it (ADVFLOW_SPEC 2).
ATAN_FACTOR = 0.636


def soft_clamp(s: torch.Tensor, clamp: float) -> torch.Tensor:
    """Log-scale of an affine coupling: ``clamp * 0.636 * atan(s / clamp)``, |g| < 1.4985 at 1.5."""
    # the literal, not ATAN_FACTOR: TorchScript cannot read module-level floats
    return (clamp * 0.636) * torch.atan(s / clamp)


# --- affine coupling inverse ----------------------------------------------------------------
# The inverse half-step of a GLOW-style affine coupling: the subnet output ``raw`` holds the raw
# log-scale s (first n channels) and the shift t (last n); v = u * exp(g(s)) + t is undone by
# u = (v - t) / exp(g(s)), in that order, so every backend rounds like the reference.

COUPLING_BACKENDS = EXT_BACKENDS

def affine_coupling_inverse_reference(v: torch.Tensor, raw: torch.Tensor,
                                      clamp: float) -> torch.Tensor:
    """Plain PyTorch oracle: ``(v - t) / exp(soft_clamp(s, clamp))`` with ``s, t = raw.chunk(2, 1)``.

    v: float (N, n, *S); raw: float (N, 2n, *S), S empty (fully connected) or (H, W).
    Returns u: float (N, n, *S).
    """
    n = v.shape[1]
    s, t = raw[:, :n], raw[:, n:]
    return (v - t) / torch.exp(soft_clamp(s, clamp))


def _check_coupling_inputs(v: torch.Tensor, raw: torch.Tensor, clamp: float) -> None:
    # the compiled kernels check the same; here so the eager backend fails the same way
    if v.dim() < 2:
        raise RuntimeError("affine_coupling_inverse: expected v of shape (N, n, *S) with at least "
                           f"2 dims, got shape {tuple(v.shape)}")
    if raw.dim() != v.dim() or raw.shape[1] != 2 * v.shape[1]:
        raise RuntimeError(f"affine_coupling_inverse: expected raw with 2n = {2 * v.shape[1]} "
                           f"channels (scale then shift) for v with n = {v.shape[1]}, "
                           f"got raw of shape {tuple(raw.shape)}")
    if raw.shape[0] != v.shape[0] or raw.shape[2:] != v.shape[2:]:
        raise RuntimeError("affine_coupling_inverse: expected raw (N, 2n, *S) to match v "
                           f"(N, n, *S) in N and S, got v of shape {tuple(v.shape)} and raw of "
                           f"shape {tuple(raw.shape)}")
    if raw.device != v.device:
        raise RuntimeError("affine_coupling_inverse: expected v and raw on one device, got v on "
                           f"{v.device} and raw on {raw.device}")
    if not v.is_floating_point() or raw.dtype != v.dtype:
        raise RuntimeError("affine_coupling_inverse: expected v and raw of one floating dtype, "
                           f"got v {v.dtype} and raw {raw.dtype}")
    if not 0 < clamp < float("inf"):  # also False for NaN
        raise RuntimeError(f"affine_coupling_inverse: expected clamp > 0 and finite, got {clamp}")


def affine_coupling_inverse_backend(v: torch.Tensor, raw: torch.Tensor,
                                    backend: str = "auto") -> str:
    """The backend ("eager" or "ext") that ``affine_coupling_inverse`` runs for these inputs.

    "auto" takes the compiled kernel when the extension is loaded, has a kernel for v's device
    and dtype, and no gradient is needed (the kernel is inference-only); else the reference.
    "ext" raises a RuntimeError naming what is missing instead of falling back
    (``extension.resolve_backend``, the one resolver).
    """
    return resolve_backend(backend, ("affine_coupling_inverse",), v, raw, caller="affine_coupling_inverse",
                           choices=COUPLING_BACKENDS)


def affine_coupling_inverse(v: torch.Tensor, raw: torch.Tensor, clamp: float,
                            backend: str = "auto") -> torch.Tensor:
    """Inverse affine coupling ``u = (v - t) / exp(clamp * 0.636 * atan(s / clamp))``.

    v: float (N, n, *S); raw: float (N, 2n, *S), the subnet output [s | t]; S empty (fully
    connected) or (H, W); clamp > 0. Returns u: float (N, n, *S), contiguous.
    backend: "eager" (``affine_coupling_inverse_reference``), "ext" (``torch.ops.s2vc``; an
    error if unavailable) or "auto" (see ``affine_coupling_inverse_backend``).
    """
    _check_coupling_inputs(v, raw, clamp)
    if affine_coupling_inverse_backend(v, raw, backend) == "ext":
        return torch.ops.s2vc.affine_coupling_inverse(v, raw, clamp)
    return affine_coupling_inverse_reference(v, raw, clamp)
