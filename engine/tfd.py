"""The pixel-level baseline of the paper's Table 4: thresholding frame difference (TFD).

"Each frame in a video is reshaped to R^d ... the top 20% pixels with the largest STD along the
time dimension are preserved." TFD is the generator with the identity in place of the flow:
frames are pooled to the same r x r, the pixel values (C*r*r per frame) play the latents' part,
the ``topk`` strategy keeps the 20% most-varying and zeroes the rest, and the pooled difference is
added back at full resolution exactly as for S²VC. So training can swap one for the other.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .flow import FlowConfig
from .generator import MotionPreservingGenerator

TFD_KEEP_FRACTION = 0.2


class PixelIdentity(nn.Module):
    """Stands in for the flow: encode = flatten pooled frames (N, C, r, r) -> (N, C*r*r)."""

    def __init__(self, resolution: int, channels: int = 3):
        super().__init__()
        self.config = dataclasses.replace(FlowConfig(), resolution=resolution, channels=channels)

    def prepare(self) -> "PixelIdentity":
        return self

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.reshape(frames.shape[0], -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c, r = self.config.channels, self.config.resolution
        return z.reshape(z.shape[0], c, r, r)


def tfd_generator(resolution: int = 32, keep_fraction: float = TFD_KEEP_FRACTION, **kwargs) -> MotionPreservingGenerator:
    """The TFD baseline with the generator's interface: ``out, stats = tfd(video)``."""
    return MotionPreservingGenerator(PixelIdentity(resolution), alpha=1.0, strategy="topk",
                                     keep_fraction=keep_fraction, **kwargs)
