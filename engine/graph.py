"""The whole generator as one static graph, for TorchScript, ONNX Runtime and TensorRT.

``GeneratorGraph`` computes what ``MotionPreservingGenerator`` computes (the eager reference), with
only ops that TorchScript scripts and that export to standard ONNX ops TensorRT's parser takes:

- the frame size (H, W) is fixed when the graph is built (batch B and frames T stay dynamic), so
  adaptive average pooling becomes two constant matrix products (``P_h @ x @ P_w^T``; the exact
  adaptive-pooling windows, also where H is not a multiple of r) and nearest upsampling two
  constant-index gathers;
- the temporal STD is written out (mean, squared deviations, / (T - 1), sqrt) with constant
  reduce axes;
- random strategies take their randomness as inputs (``noise`` (B, D) for "noise"; ``order``
  (B, T, D) int64 for "shuffle_clip"), drawn by the caller exactly as the reference draws them.
Which strategies are exportable, and the inputs each takes: ``strategies.TABLE``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .strategies import EXPORTABLE_STRATEGIES, STRATEGY_CODES  # noqa: F401 (EXPORTABLE_STRATEGIES re-exported)


def adaptive_pool_matrix(size: int, out: int, dtype=torch.float32) -> torch.Tensor:
    """(out, size) matrix P with (P @ x) = adaptive_avg_pool1d(x, out) along that axis."""
    p = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        start = (i * size) // out
        end = -((-(i + 1) * size) // out)          # ceil((i+1) * size / out)
        p[i, start:end] = 1.0 / (end - start)
    return p.to(dtype)


def bilinear_matrix(out: int, size: int, dtype=torch.float32) -> torch.Tensor:
    """(out, size) matrix U with (U @ x) = interpolate(x, out, 'linear', align_corners=False)."""
    eye = torch.eye(size, dtype=torch.float64)[None]                 # (1, size, size)
    u = torch.nn.functional.interpolate(eye, size=out, mode="linear", align_corners=False)[0]
    return u.t().contiguous().to(dtype)                              # (out, size)


def nearest_index(out: int, size: int) -> torch.Tensor:
    """Source index of each output position under PyTorch's 'nearest' (floor(i * size / out))."""
    return torch.div(torch.arange(out) * size, out, rounding_mode="floor").long()


class GeneratorGraph(nn.Module):
    """``out, mask = graph(video, noise, order)``.

    video: float (B, C, T, H, W) with the (H, W) given here; noise: float (B, D) or None;
    order: int64 (B, T, D) or None; out: float (B, C, T, H, W); mask: bool (B, D), True where a
    latent was suppressed. ``prepared``: a ``PreparedFlow`` (``flow.prepare()``).
    """

    def __init__(self, prepared, alpha: float, strategy: str, height: int, width: int,
                 upsample: str = "nearest", clamp: bool = False):
        super().__init__()
        if strategy not in EXPORTABLE_STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not exportable to a static graph: 'topk' needs a "
                             f"per-clip sort and 'shuffle_frame' a permutation that depends on the mask; "
                             f"exportable: {EXPORTABLE_STRATEGIES}")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        r = prepared.config.resolution
        if min(height, width) < r:
            raise ValueError(f"frames of {height}x{width} are smaller than the flow's {r}x{r} input")
        self.config = prepared.config
        self.encoder = prepared.encoder
        self.decoder = prepared.decoder
        self.alpha = float(alpha)
        self.strategy_code = STRATEGY_CODES[strategy]
        # the codes as attributes: a scripted forward cannot read the module's table
        self.noise_code = STRATEGY_CODES["noise"]
        self.shuffle_clip_code = STRATEGY_CODES["shuffle_clip"]
        self.strategy = strategy
        self.height, self.width = int(height), int(width)
        self.channels = prepared.config.channels
        self.dims = prepared.config.dims
        self.nearest = upsample == "nearest"
        self.upsample = upsample
        self.clamp = bool(clamp)
        self.register_buffer("pool_h", adaptive_pool_matrix(height, r))
        self.register_buffer("pool_w_t", adaptive_pool_matrix(width, r).t().contiguous())
        if self.nearest:
            self.register_buffer("up_h", nearest_index(height, r))
            self.register_buffer("up_w", nearest_index(width, r))
        else:
            self.register_buffer("up_h", bilinear_matrix(height, r))
            self.register_buffer("up_w", bilinear_matrix(width, r).t().contiguous())

    def forward(self, video: torch.Tensor, noise: Optional[torch.Tensor] = None,
                order: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        low = torch.matmul(torch.matmul(self.pool_h.to(frames.dtype), frames), self.pool_w_t.to(frames.dtype))
        z = self.encoder(low).reshape(b, t, self.dims)
        mean = z.mean(dim=1, keepdim=True)
        std = torch.sqrt(((z - mean) * (z - mean)).sum(dim=1) / (t - 1))
        mask = std < self.alpha
        m = mask.unsqueeze(1)
        if self.strategy_code == self.noise_code:
            assert noise is not None, "strategy 'noise' needs the noise input (B, D)"
            z_p = torch.where(m, noise.unsqueeze(1).to(z.dtype), z)
        elif self.strategy_code == self.shuffle_clip_code:
            assert order is not None, "strategy 'shuffle_clip' needs the order input (B, T, D)"
            z_p = torch.where(m, torch.gather(z, 1, order), z)
        else:
            z_p = torch.where(m, torch.zeros_like(z), z)
        diff = self.decoder(z_p.reshape(b * t, self.dims)) - low
        if self.nearest:
            up = diff.index_select(2, self.up_h).index_select(3, self.up_w)
        else:
            up = torch.matmul(torch.matmul(self.up_h.to(diff.dtype), diff), self.up_w.to(diff.dtype))
        out = frames + up
        if self.clamp:
            out = out.clamp(0.0, 1.0)
        return out.reshape(b, t, c, h, w).transpose(1, 2), mask
