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

import math

import torch

STRATEGIES = ("zero", "noise", "shuffle_clip", "shuffle_frame", "topk")


def _check(z: torch.Tensor, alpha: float, strategy: str, keep_fraction: float | None) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"temporal_std_mask expects latents z of shape (B, T, D), got {shape}")
    if not z.is_floating_point():
        raise TypeError(f"latents must be floating point, got {z.dtype}")
    if z.shape[1] < 2:
        raise ValueError(f"the temporal STD needs T >= 2 frames per clip, got T = {z.shape[1]}")
    if not torch.isfinite(z).all():
        raise ValueError("latents contain NaN/Inf")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown suppression strategy {strategy!r}; expected one of {STRATEGIES}")
    if strategy == "topk":
        if keep_fraction is None or not (0.0 <= keep_fraction <= 1.0):
            raise ValueError(f"strategy 'topk' needs keep_fraction in [0, 1], got {keep_fraction}")
    elif not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")


def temporal_std(z: torch.Tensor) -> torch.Tensor:
    """Unbiased STD over time: z (B, T, D) -> (B, D)."""
    return z.std(dim=1, unbiased=True)


def temporal_std_mask(z: torch.Tensor, alpha: float = 0.5, strategy: str = "zero", *,
                      keep_fraction: float | None = None, generator: torch.Generator | None = None,
                      backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Suppress the static latents of each clip.

    z: float (B, T, D), latents of B clips of T frames. Returns ``(z_p, mask)``: z_p float
    (B, T, D), mask bool (B, D), True where a latent was suppressed (STD over T < alpha, or not
    among the top ``keep_fraction`` for ``topk``). Random strategies draw from ``generator``
    (seed it for determinism). ``backend``: "auto" or "eager" (the plain PyTorch reference).
    """
    if backend not in ("auto", "eager"):
        raise ValueError(f"temporal_std_mask backend {backend!r} is not available; available: 'auto', 'eager'")
    _check(z, alpha, strategy, keep_fraction)
    s = temporal_std(z)
    b, t, d = z.shape
    if strategy == "topk":
        keep = int(round(keep_fraction * d))
        mask = torch.ones(b, d, dtype=torch.bool, device=z.device)
        if keep:
            mask.scatter_(1, s.topk(keep, dim=1).indices, False)
    else:
        mask = s < alpha
    m = mask.unsqueeze(1)                                    # (B, 1, D), broadcast over T
    if strategy in ("zero", "topk"):
        replacement = torch.zeros((), dtype=z.dtype, device=z.device)
    elif strategy == "noise":
        replacement = torch.randn(b, 1, d, generator=generator, dtype=z.dtype, device=z.device)
    elif strategy == "shuffle_clip":
        order = torch.rand(b, t, d, generator=generator, device=z.device).argsort(dim=1)
        replacement = z.gather(1, order)
    else:  # shuffle_frame
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
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"preserved fraction must be in (0, 1), got {fraction}")
    return float(torch.quantile(z_std.flatten().double(), 1.0 - fraction))
