"""AdvFlow's normalizing flow (ImageNet-64 architecture), configurable for CPU-sized runs.

The chain, in FrEIA's node order (ADVFLOW_SPEC.md 1), for resolution r and C input channels:

    high-res stage   (coupling, permutation) x high_blocks          (B, C, r, r)
    i-RevNet downsampling                                            -> (B, 4C, r/2, r/2)
    low-res stage    (fixed 1x1 conv, coupling, permutation) x low_blocks
    flatten, split   first C*(r/2)^2 features -> FC stage, the rest copied
    FC stage         (coupling, permutation) x fc_blocks
    concat           z = [FC output, copied part]                    (B, C*r*r)

``module_list[i]`` is FrEIA's node i, so a FrEIA state_dict's keys are this module's keys.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial

import numpy as np
import torch
from torch import nn

from .layers import (
    AffineCoupling,
    ConvSubnet,
    FCSubnet,
    Fixed1x1Conv,
    Flatten,
    IRevNetDownsampling,
    InvertibleLayer,
    Permutation,
    random_orthogonal,
)

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Architecture of the flow. The defaults are AdvFlow's ImageNet-64 flow."""

    resolution: int = 64
    channels: int = 3
    high_blocks: int = 4
    low_blocks: int = 6
    fc_blocks: int = 6
    hidden: int = 128           # width of the convolutional subnets
    fc_hidden: int = 128        # width of the fully connected subnets
    clamp: float = 1.5
    matrix_seed: int = 11       # seed of the fixed 1x1 convs' orthogonal matrices (new flows only)

    def __post_init__(self):
        if self.resolution < 2 or self.resolution % 2:
            raise ValueError(f"resolution must be an even number >= 2, got {self.resolution}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        for name in ("high_blocks", "low_blocks", "fc_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.hidden < 1 or self.fc_hidden < 1:
            raise ValueError("hidden widths must be >= 1")
        if not (self.clamp > 0 and math.isfinite(self.clamp)):
            raise ValueError(f"clamp must be positive and finite, got {self.clamp}")
        if self.high_blocks and self.channels < 2:
            raise ValueError("high-resolution couplings need at least 2 channels")

    @property
    def dims(self) -> int:
        """D, the size of z: C * r * r."""
        return self.channels * self.resolution ** 2

    @property
    def fc_features(self) -> int:
        """Features that pass the FC stage: the first C of the 4C low-res channels."""
        return self.channels * (self.resolution // 2) ** 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FlowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown flow config keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**d)


ADVFLOW_IMAGENET64 = FlowConfig()


class _Node(nn.Module):
    """A graph node that owns no module of its own (input, split, concat, output)."""


class AdvFlow(nn.Module):
    """The flow. ``forward(x) -> (z, logdet)``, ``inverse(z) -> (x, logdet)`` (layer contract),
    plus the public ``encode`` / ``decode`` / ``log_prob`` / ``bits_per_dim``.

    x: float (N, C, r, r), fed as is (the checkpoints expect values in [0, 1]).
    z: float (N, C*r*r).  logdet: float (N,), log|det dz/dx|.
    """

    def __init__(self, config: FlowConfig = ADVFLOW_IMAGENET64):
        super().__init__()
        self.config = config
        self.meta: dict = {}               # provenance, filled by the checkpoint loader
        self.sha256: str | None = None     # hash of the loaded weights
        c, r = config.channels, config.resolution
        conv = partial(ConvSubnet, hidden=config.hidden)
        fc = partial(FCSubnet, hidden=config.fc_hidden)
        rng = np.random.RandomState(config.matrix_seed)

        nodes: list[nn.Module] = [_Node()]                              # 0: input
        for k in range(config.high_blocks):
            nodes += [AffineCoupling(c, conv, config.clamp), Permutation(c, k)]
        self.downsample_index = len(nodes)
        nodes.append(IRevNetDownsampling())
        for k in range(config.low_blocks):
            nodes += [Fixed1x1Conv(4 * c, random_orthogonal(4 * c, rng)),
                      AffineCoupling(4 * c, conv, config.clamp), Permutation(4 * c, k)]
        self.flatten_index = len(nodes)
        nodes.append(Flatten((4 * c, r // 2, r // 2)))
        self.split_index = len(nodes)
        nodes.append(_Node())                                           # split
        for k in range(config.fc_blocks):
            nodes += [AffineCoupling(config.fc_features, fc, config.clamp),
                      Permutation(config.fc_features, k)]
        self.concat_index = len(nodes)
        nodes.append(_Node())                                           # concat
        nodes.append(_Node())                                           # output
        self.module_list = nn.ModuleList(nodes)
        self._init_identity()

    @torch.no_grad()
    def _init_identity(self) -> None:
        # As in Glow: the last layer of every subnet starts at zero, so each coupling starts as
        # the identity and training is stable from the first step. Loaded weights replace this.
        for node in self.module_list:
            if isinstance(node, AffineCoupling):
                for subnet in (node.s1, node.s2):
                    last = subnet.conv3 if hasattr(subnet, "conv3") else subnet.fc3
                    last.weight.zero_()
                    last.bias.zero_()

    # -- the layer contract ------------------------------------------------------------------
    def _image_nodes(self) -> list[InvertibleLayer]:
        return list(self.module_list[1:self.split_index])

    def _fc_nodes(self) -> list[InvertibleLayer]:
        return list(self.module_list[self.split_index + 1:self.concat_index])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, r, r) -> z (N, D), logdet (N,); one running sum in node order, as FrEIA."""
        self._check_images(x)
        logdet = x.new_zeros(x.shape[0])
        for node in self._image_nodes():
            x, ld = node(x)
            logdet = logdet + ld
        n = self.config.fc_features
        a, b = x[:, :n], x[:, n:]
        for node in self._fc_nodes():
            a, ld = node(a)
            logdet = logdet + ld
        return torch.cat([a, b], dim=1), logdet

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (N, D) -> x (N, C, r, r), logdet (N,) of the inverse map (= -forward's)."""
        self._check_latents(z)
        logdet = z.new_zeros(z.shape[0])
        n = self.config.fc_features
        a, b = z[:, :n], z[:, n:]
        for node in reversed(self._fc_nodes()):
            a, ld = node.inverse(a)
            logdet = logdet + ld
        x = torch.cat([a, b], dim=1)
        for node in reversed(self._image_nodes()):
            x, ld = node.inverse(x)
            logdet = logdet + ld
        return x, logdet

    # -- public API ---------------------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames float (N, C, r, r) -> z float (N, C*r*r)."""
        return self.forward(frames)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z float (N, C*r*r) -> frames float (N, C, r, r); the exact inverse of encode."""
        return self.inverse(z)[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density (nats) of x under the flow with a standard normal prior, shape (N,)."""
        z, logdet = self.forward(x)
        return -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * LOG_2PI) + logdet

    def nll_bits_per_dim(self, frames: torch.Tensor, noise: torch.Tensor | None = None,
                         levels: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
        """Discrete negative log-likelihood per sample in bits per dim, (N,).

        frames: float (N, C, r, r) in [0, 1], quantised to ``levels`` values. Uniform
        dequantisation: x = (round(frames * (levels-1)) + u) / levels with u ~ U[0, 1) (or the
        given ``noise``); the bin width 1/levels turns the density into a probability.
        """
        self._check_images(frames)
        if frames.min() < 0 or frames.max() > 1:
            raise ValueError(f"bits per dim needs frames in [0, 1]; got range "
                             f"[{frames.min().item():.3g}, {frames.max().item():.3g}]")
        q = torch.round(frames * (levels - 1))
        if noise is None:
            noise = torch.rand(frames.shape, generator=generator, device=frames.device, dtype=frames.dtype) \
                if generator is not None else torch.rand_like(frames)
        x = (q + noise) / levels
        d = frames[0].numel()
        return (-self.log_prob(x) / d + math.log(levels)) / math.log(2)

    def bits_per_dim(self, frames: torch.Tensor, **kwargs) -> torch.Tensor:
        """Mean bits per dim over the batch under uniform dequantisation (a scalar tensor)."""
        return self.nll_bits_per_dim(frames, **kwargs).mean()

    def prepare(self, ext: bool = False) -> "PreparedFlow":
        """The inference form: constants folded, nothing computed per call but the flow itself.
        ``ext=True`` runs the decoder's elementwise coupling steps in the compiled op."""
        from .prepared import PreparedFlow
        return PreparedFlow(self, ext=ext)

    # -- input checks -------------------------------------------------------------------------
    def _check_floating(self, t: torch.Tensor, what: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{what} must be a floating-point tensor (e.g. float32 in [0, 1]), got {t.dtype}")
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise ValueError(f"{what} contains {bad} NaN/Inf values")

    def _check_images(self, x: torch.Tensor) -> None:
        c, r = self.config.channels, self.config.resolution
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (c, r, r):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"flow expects frames of shape (N, {c}, {r}, {r}), got {shape}")
        self._check_floating(x, "frames")

    def _check_latents(self, z: torch.Tensor) -> None:
        d = self.config.dims
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != d:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"flow expects latents of shape (N, {d}), got {shape}")
        self._check_floating(z, "latents")
