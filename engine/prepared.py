"""The flow's inference form: ``AdvFlow.prepare()``.

What changes against the training form, and why:
- no log-det is computed (the generator never needs it);
- the inverse uses the stored ``M_inv`` and precomputed inverse permutations, so no matrix
  inverse or determinant runs per call and the graph exports to ONNX / TensorRT;
- channel permutations next to a fixed 1x1 conv are folded into its weight (a permutation after
  the conv permutes its rows, one before it its columns), and a permutation next to the i-RevNet
  reshape is moved through it first, which removes those memory passes.
Every module here has ``forward(x: Tensor) -> Tensor`` and scripts with TorchScript.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (
    AffineCoupling,
    Fixed1x1Conv,
    Flatten,
    IRevNetDownsampling,
    Permutation,
    depth_to_space,
    space_to_depth,
)
from .ops import soft_clamp


class Gather(nn.Module):
    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index.clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)


class Conv1x1(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)


class SpaceToDepth(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x)


class DepthToSpace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(x)


class CouplingForward(nn.Module):
    def __init__(self, block: AffineCoupling):
        super().__init__()
        self.s1, self.s2 = block.s1, block.s2
        self.n1, self.n2, self.clamp = block.n1, block.n2, block.clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n1, n2 = self.n1, self.n2
        u1, u2 = x[:, :n1], x[:, n1:]
        r2 = self.s2(u2)
        v1 = torch.exp(soft_clamp(r2[:, :n1], self.clamp)) * u1 + r2[:, n1:]
        r1 = self.s1(v1)
        v2 = torch.exp(soft_clamp(r1[:, :n2], self.clamp)) * u2 + r1[:, n2:]
        return torch.cat([v1, v2], dim=1)


class CouplingInverse(nn.Module):
    def __init__(self, block: AffineCoupling):
        super().__init__()
        self.s1, self.s2 = block.s1, block.s2
        self.n1, self.n2, self.clamp = block.n1, block.n2, block.clamp

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n1, n2 = self.n1, self.n2
        v1, v2 = y[:, :n1], y[:, n1:]
        r1 = self.s1(v1)
        u2 = (v2 - r1[:, n2:]) / torch.exp(soft_clamp(r1[:, :n2], self.clamp))
        r2 = self.s2(u2)
        u1 = (v1 - r2[:, n1:]) / torch.exp(soft_clamp(r2[:, :n1], self.clamp))
        return torch.cat([u1, u2], dim=1)


class CouplingInverseExt(CouplingInverse):
    """The same inverse with its elementwise half-steps in the compiled op
    ``s2vc::affine_coupling_inverse`` (one kernel per half instead of five temporaries)."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n1 = self.n1
        if torch.is_autocast_enabled(y.device.type):
            # autocast (the generator's precision): the subnets answer in bf16/fp16 and a fixed
            # 1x1 conv before may too; the op takes one dtype and its CPU kernel only float
            y = y.float()
        v1, v2 = y[:, :n1], y[:, n1:]
        u2 = torch.ops.s2vc.affine_coupling_inverse(v2, self.s1(v1).to(v2.dtype), self.clamp)
        u1 = torch.ops.s2vc.affine_coupling_inverse(v1, self.s2(u2).to(v1.dtype), self.clamp)
        return torch.cat([u1, u2], dim=1)


def _through_reshape(perm: torch.Tensor) -> torch.Tensor:
    """The channel index on 4C channels that equals permuting C channels before space-to-depth
    (or after depth-to-space): Q[g*C + c] = g*C + perm[c]."""
    c = perm.numel()
    return torch.cat([g * c + perm for g in range(4)])


def _fold(steps: list[nn.Module]) -> list[nn.Module]:
    """Peephole passes that fold permutations into 1x1 convs (exact: only indices move)."""
    # Move a gather through a space-to-depth (encoder) or pull it in front of one (decoder).
    moved: list[nn.Module] = []
    for step in steps:
        if isinstance(step, SpaceToDepth) and moved and isinstance(moved[-1], Gather):
            g = moved.pop()
            moved += [step, Gather(_through_reshape(g.index))]
        elif isinstance(step, Gather) and moved and isinstance(moved[-1], DepthToSpace) \
                and len(moved) >= 2 and isinstance(moved[-2], Conv1x1):
            d2s = moved.pop()
            moved += [Gather(_through_reshape(step.index)), d2s]
        else:
            moved.append(step)
    out: list[nn.Module] = []
    for step in moved:
        prev = out[-1] if out else None
        if isinstance(step, Conv1x1) and isinstance(prev, Gather):
            # conv(x[:, p]) = conv with columns W[:, argsort(p)]
            out[-1] = Conv1x1(step.weight[:, torch.argsort(prev.index)])
        elif isinstance(step, Gather) and isinstance(prev, Conv1x1):
            # conv(x)[:, p] = conv with rows W[p]
            out[-1] = Conv1x1(prev.weight[step.index])
        else:
            out.append(step)
    return out


def _forward_step(node: nn.Module) -> nn.Module:
    if isinstance(node, AffineCoupling):
        return CouplingForward(node)
    if isinstance(node, Permutation):
        return Gather(node.perm)
    if isinstance(node, IRevNetDownsampling):
        return SpaceToDepth()
    if isinstance(node, Fixed1x1Conv):
        return Conv1x1(node.M)
    raise TypeError(f"no inference form for {type(node).__name__}")


def _inverse_step(node: nn.Module, ext: bool = False) -> nn.Module:
    if isinstance(node, AffineCoupling):
        return CouplingInverseExt(node) if ext else CouplingInverse(node)
    if isinstance(node, Permutation):
        return Gather(node.perm_inv)
    if isinstance(node, IRevNetDownsampling):
        return DepthToSpace()
    if isinstance(node, Fixed1x1Conv):
        return Conv1x1(node.M_inv)
    raise TypeError(f"no inference form for {type(node).__name__}")


class PreparedEncoder(nn.Module):
    """frames (N, C, r, r) -> z (N, D)."""

    def __init__(self, flow):
        super().__init__()
        image = [n for n in flow._image_nodes() if not isinstance(n, Flatten)]
        self.image_steps = nn.ModuleList(_fold([_forward_step(n) for n in image]))
        self.fc_steps = nn.ModuleList([_forward_step(n) for n in flow._fc_nodes()])
        self.fc_features = flow.config.fc_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.image_steps:
            x = step(x)
        x = x.reshape(x.shape[0], -1)
        a, b = x[:, :self.fc_features], x[:, self.fc_features:]
        for step in self.fc_steps:
            a = step(a)
        return torch.cat([a, b], dim=1)


class PreparedDecoder(nn.Module):
    """z (N, D) -> frames (N, C, r, r). ``ext``: coupling inverses use the compiled op."""

    def __init__(self, flow, ext: bool = False):
        super().__init__()
        image = [n for n in flow._image_nodes() if not isinstance(n, Flatten)]
        self.image_steps = nn.ModuleList(_fold([_inverse_step(n, ext) for n in reversed(image)]))
        self.fc_steps = nn.ModuleList([_inverse_step(n, ext) for n in reversed(flow._fc_nodes())])
        self.fc_features = flow.config.fc_features
        c, r = flow.config.channels, flow.config.resolution
        self.low_shape = [4 * c, r // 2, r // 2]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a, b = z[:, :self.fc_features], z[:, self.fc_features:]
        for step in self.fc_steps:
            a = step(a)
        x = torch.cat([a, b], dim=1).reshape([z.shape[0]] + self.low_shape)
        for step in self.image_steps:
            x = step(x)
        return x


class PreparedFlow(nn.Module):
    """Inference-only flow: ``encode`` / ``decode`` without log-det; weights shared with the
    source flow's subnets, fixed matrices folded. Built by ``AdvFlow.prepare()``; call again
    after the weights change. ``ext=True``: the decoder's coupling inverses run the compiled op
    (the extension must be loaded)."""

    def __init__(self, flow, ext: bool = False):
        super().__init__()
        if ext:
            from . import extension as _extension
            _extension.require_ext("PreparedFlow(ext=True)")
        self.config = flow.config
        self.encoder = PreparedEncoder(flow)
        self.decoder = PreparedDecoder(flow, ext=ext)
        self.eval()

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)
