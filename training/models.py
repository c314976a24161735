"""Backbones and the MoCo projection head.

Backbones map a clip batch (B, 3, T, H, W) to pooled features (B, C); ``feature_map(x)`` gives
the last conv block's (B, C, t, h, w) before the pool (for class activation maps):

    r3d_18  torchvision's R3D-18, random init (paper: 16 x 112^2), C = 512
    s3d     torchvision's S3D, random init (paper: 32 x 128^2), C = 1024; its fixed (2, 7, 7)
            average pool needs 224^2 inputs, so it is replaced by a global average pool
    small   a 4-block 3D CNN (~0.5 M parameters) for CPU-sized runs: one r3d_18 step on
            8 clips of 16 x 112^2 takes ~25 s on 2 cores, far too slow for CPU work
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import video as tv_video

BACKBONES = ("r3d_18", "s3d", "small")


class SmallVideoCNN(nn.Module):
    """Conv3d-BN-ReLU blocks with a widening channel count, global average pool."""

    def __init__(self, widths=(32, 64, 128, 256)):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(widths):
            stride = (1, 2, 2) if i == 0 else (2, 2, 2)
            layers += [nn.Conv3d(c_in, c, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(c),
                       nn.ReLU(inplace=True),
                       nn.Conv3d(c, c, 3, padding=1, bias=False), nn.BatchNorm3d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim = c_in

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv block's output before pooling, (B, C, t, h, w) (class activation maps)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class TorchvisionBackbone(nn.Module):
    """A torchvision video model without its classifier: (B, 3, T, H, W) -> (B, C)."""

    def __init__(self, name: str):
        super().__init__()
        if name == "r3d_18":
            net = tv_video.r3d_18(weights=None)
            self.out_dim = net.fc.in_features
            net.fc = nn.Identity()
        elif name == "s3d":
            net = tv_video.s3d(weights=None)
            self.out_dim = net.classifier[1].in_channels
            net.avgpool = nn.AdaptiveAvgPool3d(1)
            net.classifier = nn.Identity()
        else:
            raise ValueError(f"unknown torchvision backbone {name!r}")
        self.net, self.name = net, name

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv block's output before pooling, (B, C, t, h, w) (class activation maps)."""
        n = self.net
        if self.name == "r3d_18":
            return n.layer4(n.layer3(n.layer2(n.layer1(n.stem(x)))))
        return n.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def build_backbone(name: str) -> nn.Module:
    """A backbone with ``out_dim``; ``name`` in BACKBONES."""
    if name == "small":
        return SmallVideoCNN()
    if name in ("r3d_18", "s3d"):
        return TorchvisionBackbone(name)
    raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")


class MoCoHead(nn.Module):
    """The paper's projection: two 1x1x1 Conv3d with a ReLU between, to ``dim`` (128)."""

    def __init__(self, in_dim: int, dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv3d(in_dim, in_dim, 1)
        self.conv2 = nn.Conv3d(in_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, None, None, None]                          # (B, C) -> (B, C, 1, 1, 1)
        return self.conv2(torch.relu(self.conv1(x))).flatten(1)


class Encoder(nn.Module):
    """backbone + head; ``features(x)`` gives the pooled backbone features used by evaluations."""

    def __init__(self, backbone: str, dim: int = 128):
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.head = MoCoHead(self.backbone.out_dim, dim)
        self.backbone_name = backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
