"""Invertible layers of the AdvFlow normalizing flow, with one contract.

Every layer maps ``x -> (y, logdet)`` in ``forward`` and ``y -> (x, logdet)`` in ``inverse``, where
``logdet`` is a float tensor of shape (B,) holding log|det dy/dx| (forward) or its negative
(inverse). Composites invert by running their parts backwards. Sub-networks are injected as
constructors (``subnet(in_features, out_features) -> nn.Module``) so tests can plug in tiny ones.

The numbering, parameter names and arithmetic follow ADVFLOW_SPEC.md (FrEIA v0.2 legacy API), so
that a FrEIA-made state_dict loads into these modules unchanged.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ops import soft_clamp

SubnetConstructor = Callable[[int, int], nn.Module]


def _zeros_logdet(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


class InvertibleLayer(nn.Module):
    """Base class: ``forward(x) -> (y, logdet)``, ``inverse(y) -> (x, logdet)``; logdet (B,)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class ConvSubnet(nn.Module):
    """AdvFlow's convolutional subnet: 3x3 conv, leaky ReLU 0.1, 3x3 conv, leaky ReLU, 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        return self.conv3(x)


class FCSubnet(nn.Module):
    """AdvFlow's fully connected subnet: fc1, ReLU, fc2, ReLU, fc2b, ReLU, fc3 (dropout p = 0)."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc2b = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.relu(self.fc2b(x))
        return self.fc3(x)


def _sum_nonbatch(t: torch.Tensor) -> torch.Tensor:
    return torch.sum(t, dim=tuple(range(1, t.dim())))


class AffineCoupling(InvertibleLayer):
    """GLOW-style affine coupling that updates both halves (ADVFLOW_SPEC 3).

    Input (B, C, ...) is cut into u1 = x[:, :C//2] and u2 = x[:, C//2:]. ``s2`` reads u2 and
    scales/shifts u1; ``s1`` reads the new first half and scales/shifts u2. Each subnet's output
    holds the raw scales first, then the shifts; only the scales pass the soft clamp.
    """

    def __init__(self, channels: int, subnet: SubnetConstructor, clamp: float = 1.5):
        super().__init__()
        if channels < 2:
            raise ValueError(f"affine coupling needs at least 2 channels, got {channels}")
        self.channels = channels
        self.n1 = channels // 2
        self.n2 = channels - self.n1
        self.clamp = float(clamp)
        self.s1 = subnet(self.n1, 2 * self.n2)
        self.s2 = subnet(self.n2, 2 * self.n1)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"coupling expects (B, {self.channels}, ...), got shape {tuple(x.shape)}")

    def forward(self, x):
        self._check(x)
        n1, n2 = self.n1, self.n2
        u1, u2 = x[:, :n1], x[:, n1:]
        r2 = self.s2(u2)
        a2, b2 = r2[:, :n1], r2[:, n1:]
        v1 = torch.exp(soft_clamp(a2, self.clamp)) * u1 + b2
        r1 = self.s1(v1)
        a1, b1 = r1[:, :n2], r1[:, n2:]
        v2 = torch.exp(soft_clamp(a1, self.clamp)) * u2 + b1
        logdet = _sum_nonbatch(soft_clamp(a1, self.clamp)) + _sum_nonbatch(soft_clamp(a2, self.clamp))
        return torch.cat([v1, v2], dim=1), logdet

    def inverse(self, y):
        self._check(y)
        n1, n2 = self.n1, self.n2
        v1, v2 = y[:, :n1], y[:, n1:]
        r1 = self.s1(v1)
        a1, b1 = r1[:, :n2], r1[:, n2:]
        u2 = (v2 - b1) / torch.exp(soft_clamp(a1, self.clamp))
        r2 = self.s2(u2)
        a2, b2 = r2[:, :n1], r2[:, n1:]
        u1 = (v1 - b2) / torch.exp(soft_clamp(a2, self.clamp))
        logdet = _sum_nonbatch(soft_clamp(a1, self.clamp)) + _sum_nonbatch(soft_clamp(a2, self.clamp))
        return torch.cat([u1, u2], dim=1), -logdet


def seeded_permutation(n: int, seed: int) -> np.ndarray:
    """FrEIA's permutation: ``RandomState(seed).permutation(n)`` (legacy MT19937)."""
    return np.random.RandomState(seed).permutation(n)


class Permutation(InvertibleLayer):
    """Fixed permutation of dim 1 applied as a gather: ``y = x[:, perm]``.

    The index tensors are non-persistent buffers: FrEIA does not store them, they are
    regenerated from the seed, and they follow the module across devices.
    """

    def __init__(self, n: int, seed: int):
        super().__init__()
        perm = seeded_permutation(n, seed)
        self.n = n
        self.seed = seed
        self.register_buffer("perm", torch.from_numpy(perm).long(), persistent=False)
        self.register_buffer("perm_inv", torch.from_numpy(np.argsort(perm)).long(), persistent=False)

    def forward(self, x):
        return x[:, self.perm], _zeros_logdet(x)

    def inverse(self, y):
        return y[:, self.perm_inv], _zeros_logdet(y)


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """i-RevNet downsampling (ADVFLOW_SPEC 6.1): (B, C, 2H, 2W) -> (B, 4C, H, W),
    out channel (2*dh + dw)*C + c; position-major, not PixelUnshuffle's channel-major order."""
    b, c, h2, w2 = x.shape
    x = x.reshape(b, c, h2 // 2, 2, w2 // 2, 2)          # b, c, i, dh, j, dw
    x = x.permute(0, 3, 5, 1, 2, 4)                      # b, dh, dw, c, i, j
    return x.reshape(b, 4 * c, h2 // 2, w2 // 2)


def depth_to_space(y: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`space_to_depth`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c4, h, w = y.shape
    c = c4 // 4
    y = y.reshape(b, 2, 2, c, h, w)                      # b, dh, dw, c, i, j
    y = y.permute(0, 3, 4, 1, 5, 2)                      # b, c, i, dh, j, dw
    return y.reshape(b, c, 2 * h, 2 * w)


class IRevNetDownsampling(InvertibleLayer):
    def forward(self, x):
        if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"i-RevNet downsampling expects (B, C, H, W) with even H, W, got {tuple(x.shape)}")
        return space_to_depth(x), _zeros_logdet(x)

    def inverse(self, y):
        return depth_to_space(y), _zeros_logdet(y)


def random_orthogonal(n: int, rng: np.random.RandomState) -> np.ndarray:
    """AdvFlow's draw: left singular vectors of a random symmetric matrix (float32)."""
    w = rng.randn(n, n)
    w = w + w.T
    u, _, _ = np.linalg.svd(w)
    return u.astype(np.float32)


class Fixed1x1Conv(InvertibleLayer):
    """Frozen invertible 1x1 convolution (ADVFLOW_SPEC 7).

    Buffers ``M`` (the forward weight), ``M_inv`` (the inverse's weight, stored, never
    re-inverted at run time) and ``logDetM`` (added once per sample, as FrEIA does).
    """

    def __init__(self, channels: int, matrix: np.ndarray | None = None):
        super().__init__()
        if matrix is None:
            matrix = np.eye(channels, dtype=np.float32)
        a = np.asarray(matrix, dtype=np.float64)
        m = a.T
        self.register_buffer("M", torch.from_numpy(m.astype(np.float32)).reshape(channels, channels, 1, 1))
        self.register_buffer("M_inv", torch.from_numpy(np.linalg.inv(m).astype(np.float32)).reshape(channels, channels, 1, 1))
        self.register_buffer("logDetM", torch.tensor(float(np.linalg.slogdet(a)[1]), dtype=torch.float32))

    def forward(self, x):
        return F.conv2d(x, self.M), self.logDetM.expand(x.shape[0]).to(x.dtype)

    def inverse(self, y):
        return F.conv2d(y, self.M_inv), -self.logDetM.expand(y.shape[0]).to(y.dtype)


class Flatten(InvertibleLayer):
    """Row-major flatten (B, C, H, W) -> (B, C*H*W); remembers the shape for the inverse."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], -1), _zeros_logdet(x)

    def inverse(self, y):
        return y.reshape((y.shape[0],) + self.shape), _zeros_logdet(y)
