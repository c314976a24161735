"""Selecting and suppressing static cues in latent space (the paper's eqs. (4)-(5), Table 4).

``temporal_std_mask(z, alpha, strategy)`` takes the latents of a batch of clips, z (B, T, D),
computes each latent variable's unbiased standard deviation over time (divide by T-1, as the
authors' code), marks the variables with STD < alpha as static cues (eq. 4) and suppresses them.

Strategies:
    zero           static latents set to 0, the prior's mean (eq. 5; the paper's default)
    noise          static latents replaced by N(0, 1) noise drawn once per clip (for the first
                   frame) and held fixed over time, so the replacement itself is static
    shuffle_clip   each static latent's values shuffled across the frames of its clip
    shuffle_frame  within each frame, the static latents' values permuted among themselves
    topk           keep the ``keep_fraction`` most-varying latents of each clip, zero the rest
                   (alpha is not used)
"""
from __future__ import annotations

import torch

from .defaults import (DEFAULT_PRESERVE, PAPER_ALPHA, check_alpha, check_keep_fraction,  # noqa: F401 (re-exported)
                       check_preserved_fraction, resolve_alpha, resolve_keep_fraction)
from .extension import EXT_BACKENDS, resolve_backend as _resolve_backend
from .strategies import STD_ONLY_CODE, STRATEGIES, STRATEGY_CODES, strategy as _strategy  # noqa: F401

BACKENDS = EXT_BACKENDS


def _check(z: torch.Tensor, alpha: float, strategy: str, keep_fraction: float | None) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"temporal_std_mask expects latents z of shape (B, T, D), got {shape}")
    if not z.is_floating_point():
        raise TypeError(f"latents must be floating point, got {z.dtype}")
    if z.shape[1] < 2:
        raise ValueError(f"the temporal STD needs T >= 2 frames per clip, got T = {z.shape[1]}")
    if _strategy(strategy).needs_keep_fraction:
        check_keep_fraction(keep_fraction, allow_zero=True)   # the op may keep nothing
    else:
        check_alpha(alpha)


def temporal_std(z: torch.Tensor) -> torch.Tensor:
    """Unbiased STD over time: z (B, T, D) -> (B, D)."""
    return z.std(dim=1, unbiased=True)


def resolve_backend(backend: str, z: torch.Tensor) -> str:
    """"eager" or "ext" for these latents. "auto" takes the compiled op when it can run on z
    (kernel for z's device and dtype; no gradient needed: the op is inference-only); "ext"
    raises an error naming what is missing rather than falling back (``extension.resolve_backend``)."""
    return _resolve_backend(backend, ("temporal_std_mask",), z, caller="temporal_std_mask", choices=BACKENDS)


def _check_finite(s: torch.Tensor) -> None:
    # reads a flag back from the device (a synchronisation): only when the caller validates
    if not torch.isfinite(s).all():          # a NaN/Inf anywhere in a clip makes its STD non-finite
        raise ValueError("latents contain NaN/Inf (their temporal STD is not finite)")


def _std_and_mask(z, alpha, strategy, keep_fraction, backend, validate):
    """The STD (B, D) and the mask (B, D) of eq. (4), or of the top-k rule."""
    by_rank = _strategy(strategy).needs_keep_fraction
    if backend == "ext":
        _, mask, s = torch.ops.s2vc.temporal_std_mask(z, float(alpha if not by_rank else 1.0), STD_ONLY_CODE,
                                                      None, None, None)
    else:
        s = temporal_std(z)
        mask = s < alpha if not by_rank else None
    if validate:
        _check_finite(s)
    if by_rank:
        b, d = s.shape
        keep = int(round(keep_fraction * d))
        mask = torch.ones(b, d, dtype=torch.bool, device=z.device)
        if keep:
            mask.scatter_(1, s.topk(keep, dim=1).indices, False)
    return s, mask


def draw_random_inputs(strategy: str, batch: int, frames: int, dims: int, *, device="cpu",
                       dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
    """``(noise, order)`` a random strategy needs: noise (B, D) for "noise", order int64 (B, T, D)
    (a permutation of 0..T-1 along T) for "shuffle_clip", else None. Every backend draws them
    here, with the same calls in the same order, so a seeded generator gives the same numbers."""
    noise = order = None
    inputs = _strategy(strategy).graph_inputs
    if "noise" in inputs:
        noise = torch.randn(batch, dims, generator=generator, dtype=dtype, device=device)
    if "order" in inputs:
        order = torch.rand(batch, frames, dims, generator=generator, device=device).argsort(dim=1)
    return noise, order


def temporal_std_mask(z: torch.Tensor, alpha: float = 0.5, strategy: str = "zero", *,
                      keep_fraction: float | None = None, generator: torch.Generator | None = None,
                      backend: str = "auto", validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Suppress the static latents of each clip.

    z: float (B, T, D), latents of B clips of T frames. Returns ``(z_p, mask)``: z_p float
    (B, T, D), mask bool (B, D), True where a latent was suppressed (STD over T < alpha, or not
    among the top ``keep_fraction`` for ``topk``). Random strategies draw from ``generator``
    (seed it for determinism); both backends draw the same numbers, so they agree exactly.
    backend: "eager" (the plain PyTorch reference), "ext" (the compiled op: one pass that reads z
    once and writes z_p once for zero / noise / shuffle_clip) or "auto".
    validate: check that the latents' STDs are finite (a ValueError otherwise); it reads one flag
    back from the device, so callers that must not synchronise (training) pass False.
    """
    _check(z, alpha, strategy, keep_fraction)
    backend = resolve_backend(backend, z)
    b, t, d = z.shape
    noise, order = draw_random_inputs(strategy, b, t, d, device=z.device, dtype=z.dtype, generator=generator)

    if backend == "ext" and strategy in STRATEGY_CODES:
        z_p, mask, s = torch.ops.s2vc.temporal_std_mask(z, float(alpha), STRATEGY_CODES[strategy], noise, order, None)
        if validate:
            _check_finite(s)
        return z_p, mask

    s, mask = _std_and_mask(z, alpha, strategy, keep_fraction, backend, validate)
    if backend == "ext" and _strategy(strategy).needs_keep_fraction:
        z_p, _, _ = torch.ops.s2vc.temporal_std_mask(z, 1.0, 0, None, None, mask)
        return z_p, mask
    m = mask.unsqueeze(1)                                    # (B, 1, D), broadcast over T
    if strategy in ("zero", "topk"):
        replacement = torch.zeros((), dtype=z.dtype, device=z.device)
    elif strategy == "noise":
        replacement = noise.unsqueeze(1)
    elif strategy == "shuffle_clip":
        replacement = z.gather(1, order)
    else:  # shuffle_frame: the permutation depends on the mask, so it follows the mask pass
        replacement = z.clone()
        for i in range(b):
            idx = mask[i].nonzero().squeeze(1)                # the suppressed dims of clip i
            if idx.numel() > 1:
                perm = torch.rand(t, idx.numel(), generator=generator, device=z.device).argsort(dim=1)
                replacement[i][:, idx] = z[i][:, idx].gather(1, perm)
    return torch.where(m, replacement, z), mask


def alpha_for_preserved_fraction(z_std: torch.Tensor, fraction: float) -> float:
    """The alpha at which a ``fraction`` of latents is preserved (STD >= alpha), read off the
    STDs ``z_std`` of some clips, any shape. The paper's 22.7% at alpha = 0.5 belongs to its own
    flow; a flow of another size or training needs its own alpha for the same fraction."""
    check_preserved_fraction(fraction)
    return float(torch.quantile(z_std.flatten().double(), 1.0 - fraction))
