"""The keys of the two peer methods, BE and FAME, as batched pixel operations (pretraining arms).

Both take the MoCo key clip the trainer has already cropped and flipped — float
``(B, 3, T, H, W)`` in [0, 1], on the training device — and return a clip of the same shape,
dtype and device. Plain PyTorch, no gradient needed, deterministic given a ``torch.Generator``:
the random numbers are drawn on the generator's device (CPU when none is given) and then moved,
so a CPU generator gives the same draws whatever device the clip is on.

- ``background_erasing`` (BE, Wang et al. CVPR 2021, FingerRec/BE): one frame of each clip,
  mixed into every frame of that clip: ``x~_t = (1 - lam) x_t + lam x_f``.
- ``fame_merge`` (FAME, Ding et al. CVPR 2022, Mark12Ding/FAME): the moving foreground, found
  from frame differences refined by colour statistics, pasted onto another clip's background.

docs/PEERS.md gives the papers' definitions, the official defaults and where this differs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "background_erasing",
    "mix_static_frame",
    "fame_merge",
    "fame_foreground_mask",
    "derangement",
]


# ---------------------------------------------------------------------------------------------
# shared helpers

def _check_clip(k, name: str, *, min_frames: int = 1, min_batch: int = 1) -> None:
    """Raise a one-line error unless ``k`` is a float (B, 3, T, H, W) clip with B >= min_batch,
    T >= min_frames and a non-empty frame."""
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor clip (B, 3, T, H, W), got {type(k).__name__}")
    if k.ndim != 5:
        raise ValueError(f"{name}: expected a clip of 5 dims (B, 3, T, H, W), got {k.ndim} dims {tuple(k.shape)}")
    if k.shape[1] != 3:
        raise ValueError(f"{name}: expected 3 colour channels in dim 1 of (B, 3, T, H, W), got {k.shape[1]} "
                         f"(shape {tuple(k.shape)})")
    if not k.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point clip with values in [0, 1], got dtype {k.dtype}")
    b, _, t, h, w = k.shape
    if b < min_batch:
        raise ValueError(f"{name}: expected a batch of at least {min_batch} clips "
                         f"(the background comes from another clip), got {b}")
    if t < min_frames:
        raise ValueError(f"{name}: expected at least {min_frames} frames per clip, got T={t}")
    if h < 1 or w < 1:
        raise ValueError(f"{name}: expected frames of at least 1x1 pixels, got {h}x{w}")


def _draw_device(generator: torch.Generator | None) -> torch.device:
    """Where random numbers are drawn: the generator's device, the CPU without one."""
    return torch.device("cpu") if generator is None else generator.device


def derangement(n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """A uniformly random permutation of ``range(n)`` with no fixed point: int64 (n,), ``p[i] != i``.

    Drawn by rejection (``torch.randperm`` until no index stays put: about e = 2.7 draws on
    average), so it is uniform over derangements and deterministic given ``generator``.
    n must be >= 2 (one element cannot move). ``device``: where the result goes.
    """
    if n < 2:
        raise ValueError(f"derangement: expected n >= 2 (a single element cannot move), got {n}")
    where = _draw_device(generator)
    identity = torch.arange(n, device=where)
    for _ in range(10_000):                 # P(no derangement in 10k draws) ~ 0.63**10000: never
        perm = torch.randperm(n, generator=generator, device=where)
        if not bool((perm == identity).any()):
            return perm.to(device if device is not None else where)
    raise RuntimeError("derangement: no permutation without a fixed point after 10000 draws")


# ---------------------------------------------------------------------------------------------
# BE: Background Erasing

def mix_static_frame(k: torch.Tensor, weight: float | torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """BE's formula with its random inputs given: ``out[b, :, t] = (1 - w_b) k[b, :, t] + w_b k[b, :, f_b]``.

    k: float (B, 3, T, H, W) in [0, 1]; weight: lam, a float or a (B,) tensor (one per clip), in
    [0, 1]; frame: int (B,) index of each clip's static frame, in [0, T). Returns (B, 3, T, H, W),
    still in [0, 1] (a convex mix). The temporal differences are scaled by (1 - w_b):
    ``out[:, :, t+1] - out[:, :, t] = (1 - w_b) (k[:, :, t+1] - k[:, :, t])``.
    """
    _check_clip(k, "mix_static_frame")
    b, _, t = k.shape[:3]
    frame = torch.as_tensor(frame).long().reshape(-1)
    if frame.numel() != b:
        raise ValueError(f"mix_static_frame: expected one static frame index per clip ({b}), got {frame.numel()}")
    if bool(((frame < 0) | (frame >= t)).any()):
        raise ValueError(f"mix_static_frame: static frame indices must lie in [0, {t}), got {frame.tolist()}")
    return _mix(k, weight, frame.to(k.device))


def _mix(k: torch.Tensor, weight, frame: torch.Tensor) -> torch.Tensor:
    """``mix_static_frame`` without its checks (``frame`` long (B,) on k's device, in range)."""
    b = k.shape[0]
    w = torch.as_tensor(weight, dtype=k.dtype, device=k.device)
    w = w.reshape(-1, 1, 1, 1, 1) if w.ndim else w
    static = k[torch.arange(b, device=k.device), :, frame].unsqueeze(2)    # (B, 3, 1, H, W)
    return (1 - w) * k + w * static


def background_erasing(k: torch.Tensor, *, generator: torch.Generator | None = None,
                       max_weight: float = 0.3) -> torch.Tensor:
    """BE's distracting clip: a random frame of each clip mixed into every frame of that clip.

    k: float (B, 3, T, H, W) in [0, 1]. Draws, in this order: one mixing weight
    ``lam ~ U[0, max_weight)`` for the whole batch (the official code draws one per batch), then
    one static frame index ``f_b ~ U{0, ..., T-1}`` per clip; returns
    ``(1 - lam) k[:, :, t] + lam k[b, :, f_b]`` for every frame t (``mix_static_frame``):
    (B, 3, T, H, W), same dtype and device, still in [0, 1].
    max_weight: the official 0.3 (``SpatialMixup(0.3, version=2)`` in FingerRec/BE), in [0, 1].
    """
    _check_clip(k, "background_erasing")
    if not 0.0 <= max_weight <= 1.0:
        raise ValueError(f"background_erasing: max_weight must lie in [0, 1], got {max_weight}")
    b, _, t = k.shape[:3]
    where = _draw_device(generator)
    lam = float(torch.rand((), generator=generator, device=where)) * max_weight
    frame = torch.randint(0, t, (b,), generator=generator, device=where)   # in [0, T) by construction
    return _mix(k, lam, frame.to(k.device))


# ---------------------------------------------------------------------------------------------
# FAME: Foreground-background Merging

def _gaussian_blur(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Blur (N, H, W) maps with a normalised Gaussian of odd ``size`` and sigma ``size / 3``,
    reflecting at the borders (the official kornia GaussianBlur2d); size 1 leaves them as is."""
    if size <= 1:
        return maps
    x = torch.arange(size, dtype=maps.dtype, device=maps.device) - size // 2
    g = torch.exp(-x.square() / (2 * (size / 3) ** 2))
    g = g / g.sum()
    out = maps.unsqueeze(1)                                               # (N, 1, H, W)
    pad = size // 2
    # reflect padding needs pad < the padded dim; on tiny frames fall back to replicate
    mode = "reflect" if pad < min(out.shape[-2:]) else "replicate"
    out = F.conv2d(F.pad(out, (0, 0, pad, pad), mode=mode), g.view(1, 1, size, 1))
    out = F.conv2d(F.pad(out, (pad, pad, 0, 0), mode=mode), g.view(1, 1, 1, size))
    return out.squeeze(1)


def _colour_bins(frames: torch.Tensor, bins: int) -> torch.Tensor:
    """Quantise RGB (N, 3, H, W) in [0, 1] into ``bins**3`` colours: int64 (N, H*W) in [0, bins**3).

    FAME's colour space: HSV, with hue and saturation as a point on the colour wheel
    (s cos 2πh, s sin 2πh) mapped to [0, 1], and value; each of the three rounded to ``bins``
    levels (round half to even, like the official torch.round).
    """
    rgb = frames.clamp(0, 1)
    v, arg = rgb.max(dim=1)
    delta = v - rgb.min(dim=1).values
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    r, g, b = rgb.unbind(1)
    d = delta.clamp_min(1e-12)
    # hue in turns [0, 1): sector by the largest channel (ties: red, then green, like argmax)
    hue = torch.stack([((g - b) / d) % 6, (b - r) / d + 2, (r - g) / d + 4], 1).gather(1, arg[:, None]).squeeze(1) / 6
    hx = (s * torch.cos(2 * math.pi * hue) + 1) / 2
    hy = (s * torch.sin(2 * math.pi * hue) + 1) / 2
    levels = [torch.round(c * (bins - 1)).long().clamp_(0, bins - 1) for c in (hx, hy, v)]
    return (levels[0] + levels[1] * bins + levels[2] * bins * bins).flatten(1)


def _histogram(colours: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Per-row counts of int64 (N, K) colour indices: float32 (N, n_bins)."""
    counts = torch.zeros(colours.shape[0], n_bins, device=colours.device)
    return counts.scatter_add_(1, colours, torch.ones_like(colours, dtype=counts.dtype))


def _top_pixels(score: torch.Tensor, count: int, *, largest: bool = True) -> torch.Tensor:
    """Indices (N, count) of the ``count`` highest (lowest) of (N, P) scores; ties go to the lower
    pixel index, on every device (a stable sort, where topk's tie order is unspecified)."""
    return torch.sort(score, dim=1, descending=largest, stable=True).indices[:, :count]


def fame_foreground_mask(k: torch.Tensor, *, beta: float = 0.5, blur_ratio: float = 0.1,
                         fg_sample: float = 0.5, bg_sample: float = 0.1, colour_bins: int = 10) -> torch.Tensor:
    """FAME's foreground: bool (B, 1, 1, H, W), True on ``max(1, int(beta * H * W))`` pixels of each
    clip, the same pixels in every frame.

    k: float (B, 3, T >= 2, H, W) in [0, 1]. Steps (official defaults in brackets):
    1. motion = sum over channels of |k_t - k_{t+1}|, averaged over the T-1 pairs; Gaussian blur
       of odd size ``int(blur_ratio * min(H, W)) // 2 * 2 + 1`` [blur_ratio 0.1], sigma size/3;
    2. colour statistics of the clip's mean frame (``_colour_bins``, ``colour_bins**3`` colours
       [10]): a histogram over the ``fg_sample`` share of pixels with the most motion [0.5], and
       one over the ``bg_sample`` share with the least [0.1], plus one count in every bin;
    3. score of a pixel = P_fg(colour) / (P_fg(colour) + P_bg(colour)), blurred as in 1;
    4. the foreground: the ``beta`` share of pixels with the highest score [0.5].
    (The official min-max normalisations between the steps do not change any ranking: left out.)
    """
    _check_clip(k, "fame_foreground_mask", min_frames=2)
    for name, share in (("beta", beta), ("fg_sample", fg_sample), ("bg_sample", bg_sample)):
        if not 0.0 < share <= 1.0:
            raise ValueError(f"fame_foreground_mask: {name} must lie in (0, 1], got {share}")
    if blur_ratio < 0:
        raise ValueError(f"fame_foreground_mask: blur_ratio must be >= 0, got {blur_ratio}")
    if colour_bins < 1:
        raise ValueError(f"fame_foreground_mask: colour_bins must be >= 1, got {colour_bins}")
    b, _, _, h, w = k.shape
    n_pixels = h * w
    size = int(blur_ratio * min(h, w)) // 2 * 2 + 1
    clip = k.float()                                                      # statistics in float32
    motion = (clip[:, :, :-1] - clip[:, :, 1:]).abs().sum(dim=1).mean(dim=1)      # (B, H, W)
    motion = _gaussian_blur(motion, size).flatten(1)                             # (B, H*W)

    n_colours = colour_bins ** 3
    colours = _colour_bins(clip.mean(dim=2), colour_bins)                 # (B, H*W)
    fg = colours.gather(1, _top_pixels(motion, max(1, int(fg_sample * n_pixels))))
    bg = colours.gather(1, _top_pixels(motion, max(1, int(bg_sample * n_pixels)), largest=False))
    p_fg = _histogram(fg, n_colours)
    p_bg = _histogram(bg, n_colours) + 1                                  # every colour possible in bg
    p_fg = (p_fg / p_fg.sum(dim=1, keepdim=True)).gather(1, colours)
    p_bg = (p_bg / p_bg.sum(dim=1, keepdim=True)).gather(1, colours)
    score = _gaussian_blur((p_fg / (p_fg + p_bg)).view(b, h, w), size).flatten(1)

    mask = torch.zeros(b, n_pixels, dtype=torch.bool, device=k.device)
    mask.scatter_(1, _top_pixels(score, max(1, int(beta * n_pixels))), True)
    return mask.view(b, 1, 1, h, w)


def fame_merge(k: torch.Tensor, *, generator: torch.Generator | None = None, beta: float = 0.5,
               blur_ratio: float = 0.1, fg_sample: float = 0.5, bg_sample: float = 0.1,
               colour_bins: int = 10, derange: bool = True) -> torch.Tensor:
    """FAME's merged clip: each clip's moving foreground pasted onto another clip's background.

    k: float (B >= 2, 3, T >= 2, H, W) in [0, 1]. ``out[b] = k[b]`` on the foreground mask of clip
    b (``fame_foreground_mask``: beta etc., the official defaults), ``k[p[b]]`` elsewhere, every
    frame; p: ``derangement(B)`` (derange=True: no clip keeps its own background) or, as the
    official code, ``torch.randperm(B)`` (derange=False: a clip may draw itself). The only random
    draw is p. Returns (B, 3, T, H, W), same dtype and device, values taken from k (so in [0, 1]).
    """
    _check_clip(k, "fame_merge", min_frames=2, min_batch=2)
    mask = fame_foreground_mask(k, beta=beta, blur_ratio=blur_ratio, fg_sample=fg_sample,
                                bg_sample=bg_sample, colour_bins=colour_bins)
    if derange:
        perm = derangement(k.shape[0], generator=generator, device=k.device)
    else:
        perm = torch.randperm(k.shape[0], generator=generator, device=_draw_device(generator)).to(k.device)
    return torch.where(mask, k, k[perm])
