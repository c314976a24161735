"""Clip augmentations for MoCo pretraining and evaluation, consistent over the frames of a clip.

Every transform takes and returns a float clip ``(C, T, H, W)`` in [0, 1] (the layout of the
generator and of torchvision's video models). Inside, the clip is viewed as a plain tensor
``(T, C, H, W)``: torchvision's v2 transforms treat it as an image whose leading dimension is a
batch and draw their random parameters once per call, so one call applies the same crop, flip,
jitter, grayscale and blur to every frame (``tests/test_transforms.py`` checks it). Not as a
``tv_tensors.Video``: torchvision 0.29's ``Grayscale``/``RandomGrayscale`` return a Video
unchanged (no kernel registered for it), which would silently drop the grayscale augmentation.

Nothing here normalises: the key clip goes through the motion-preserving generator first, which
expects [0, 1]; ``normalize_clip`` is applied afterwards, to both clips, by the training step.

- ``query_transform``: RandomResizedCrop, horizontal flip, colour jitter (p 0.8), grayscale
  (p 0.2), Gaussian blur (p 0.5) — MoCo v2's recipe as the paper uses it.
- ``key_transform``: RandomResizedCrop and horizontal flip only.
- ``eval_transform``: resize the shorter side, centre crop (retrieval, linear probe).
- ``ten_crop_transform``: the four corners and the centre, each also flipped (v2.TenCrop), for
  ten-crop testing; returns ``(10, C, T, size, size)``.
- ``finetune_transform``: the supervised training crop (RandomResizedCrop scale 0.5-1, flip).
"""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "ClipTransform",
    "query_transform",
    "key_transform",
    "eval_transform",
    "ten_crop_transform",
    "finetune_transform",
    "normalize_clip",
]

# The statistics torchvision's Kinetics-400 video models were trained with.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class ClipTransform:
    """Apply a v2 transform to a float clip ``(C, T, H, W)`` with one parameter draw for all frames.

    Returns float ``(C, T, H', W')`` clamped to [0, 1] (bilinear resizing and blur stay in range
    anyway; the clamp only guards against rounding).
    """

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 4 or clip.shape[0] != 3 or not clip.is_floating_point():
            raise ValueError(f"expected a float RGB clip (3, T, H, W), got {clip.dtype} {tuple(clip.shape)}")
        # a plain (T, C, H, W) tensor, not tv_tensors.Video: v2 takes it as an image with T as a
        # batch dimension, while (Random)Grayscale passes a Video through untouched
        out = self.transform(clip.transpose(0, 1))
        return out.transpose(0, 1).clamp(0.0, 1.0).contiguous()  # not in place: out may be a view

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


def _crop_flip(size: int | tuple[int, int], scale: tuple[float, float]) -> list:
    return [v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()]


def query_transform(
    size: int | tuple[int, int],
    *,
    scale: tuple[float, float] = (0.2, 1.0),
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    blur_sigma: tuple[float, float] = (0.1, 2.0),
) -> ClipTransform:
    """The query's strong augmentation; output float ``(C, T, size, size)`` in [0, 1].

    ``jitter`` is (brightness, contrast, saturation, hue), applied with p 0.8; grayscale p 0.2;
    Gaussian blur p 0.5 with a kernel ~10% of the output side (odd) and sigma in ``blur_sigma``.
    """
    side = size if isinstance(size, int) else min(size)
    kernel = max(3, int(0.1 * side) // 2 * 2 + 1)
    return ClipTransform(v2.Compose([
        *_crop_flip(size, scale),
        v2.RandomApply([v2.ColorJitter(*jitter)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=blur_sigma)], p=0.5),
    ]))


def key_transform(size: int | tuple[int, int], *, scale: tuple[float, float] = (0.2, 1.0)) -> ClipTransform:
    """The key's augmentation: crop and flip only (the generator then suppresses static cues)."""
    return ClipTransform(v2.Compose(_crop_flip(size, scale)))


def eval_transform(size: int | tuple[int, int]) -> ClipTransform:
    """Deterministic: resize the shorter side to ``size`` (int) and centre-crop ``size``."""
    resize = size if isinstance(size, int) else min(size)
    return ClipTransform(v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size)]))


class MultiCropTransform:
    """A v2 transform that returns several crops (v2.TenCrop), applied to a float clip
    ``(C, T, H, W)`` with one set of crop positions for all frames: ``(V, C, T, h, w)``."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 4 or clip.shape[0] != 3 or not clip.is_floating_point():
            raise ValueError(f"expected a float RGB clip (3, T, H, W), got {clip.dtype} {tuple(clip.shape)}")
        crops = self.transform(clip.transpose(0, 1))              # V x (T, C, h, w)
        return torch.stack([c.transpose(0, 1) for c in crops]).clamp(0.0, 1.0).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


def ten_crop_transform(size: int, resize: int | None = None) -> MultiCropTransform:
    """Ten-crop testing: resize the shorter side to ``resize`` (default: only when it is shorter
    than ``size``; the decoder already resized it, e.g. to 128 for 112 crops), then the four
    corner crops and the centre crop of ``size`` and their horizontal flips:
    ``(10, C, T, size, size)``."""
    steps = [v2.Resize(resize, antialias=True)] if resize else []
    return MultiCropTransform(v2.Compose(steps + [_AtLeast(size), v2.TenCrop(size)]))


class _AtLeast(torch.nn.Module):
    """Resize the shorter side up to ``size`` when it is shorter (so a crop of ``size`` fits)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.size:
            return v2.functional.resize(x, self.size, antialias=True)
        return x


def finetune_transform(size: int | tuple[int, int], *, scale: tuple[float, float] = (0.5, 1.0)) -> ClipTransform:
    """Supervised finetuning's augmentation: RandomResizedCrop (``scale``) and horizontal flip."""
    return ClipTransform(v2.Compose(_crop_flip(size, scale)))


def normalize_clip(clip: torch.Tensor, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """``(clip - mean) / std`` per channel; clip float ``(C, T, H, W)`` or ``(B, C, T, H, W)``.

    The channel axis is the 4th from the end in both layouts. Returns a new tensor.
    """
    if clip.ndim not in (4, 5) or clip.shape[-4] != len(mean):
        raise ValueError(f"expected (C, T, H, W) or (B, C, T, H, W) with C = {len(mean)}, "
                         f"got {tuple(clip.shape)}")
    shape = (len(mean), 1, 1, 1)
    m = torch.as_tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    s = torch.as_tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    return (clip - m) / s
