"""Clip augmentations: one parameter draw for all frames, value ranges, layouts, normalisation."""
from __future__ import annotations

import pytest
import torch

from s2vc.training.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    eval_transform,
    key_transform,
    normalize_clip,
    query_transform,
)


def _textured(h: int = 20, w: int = 28, seed: int = 0) -> torch.Tensor:
    """One random RGB frame, float (3, H, W) in [0, 1]."""
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make", [query_transform, key_transform])
def test_identical_frames_stay_identical(make):
    torch.manual_seed(0)
    clip = _textured().unsqueeze(1).repeat(1, 6, 1, 1)  # (3, 6, 20, 28): six copies of one frame
    t = make(16)
    for _ in range(20):
        out = t(clip)
        assert out.shape == (3, 6, 16, 16) and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert torch.equal(out, out[:, :1].expand_as(out))


def test_key_is_the_same_crop_and_flip_on_every_frame():
    """Frames that differ by a constant brightness step: crop, flip and bilinear resizing are
    linear and preserve constants, so out[t] - out[0] must stay the constant t * step."""
    torch.manual_seed(1)
    base = 0.5 * _textured()
    clip = torch.stack([base + 0.05 * t for t in range(5)], dim=1)
    t = key_transform(12)
    for _ in range(20):
        out = t(clip)
        diff = out - out[:, :1]
        steps = torch.arange(5, dtype=torch.float32).view(1, 5, 1, 1) * 0.05
        assert torch.allclose(diff, steps.expand_as(diff), atol=1e-5)


def test_query_augmentations_fire_at_their_rates():
    torch.manual_seed(2)
    frame = _textured(16, 16)
    clip = frame.unsqueeze(1).repeat(1, 2, 1, 1)
    t = query_transform(16, scale=(1.0, 1.0))  # full-frame crop: only flip and photometric changes
    gray = flipped = changed = 0
    draws = 200
    for _ in range(draws):
        out = t(clip)[:, 0]
        gray += bool(torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[1], out[2], atol=1e-6))
        flipped += bool((out - frame.flip(-1)).abs().mean() < (out - frame).abs().mean())
        changed += bool((out - frame).abs().max() > 1e-3 and (out - frame.flip(-1)).abs().max() > 1e-3)
    assert 0.12 < gray / draws < 0.28       # grayscale p 0.2
    assert 0.38 < flipped / draws < 0.62    # horizontal flip p 0.5
    assert changed / draws > 0.8            # jitter p 0.8, grayscale, blur p 0.5 (few draws change nothing)
    key = key_transform(16, scale=(1.0, 1.0))
    for _ in range(10):  # the key is never recoloured
        out = key(clip)[:, 0]
        assert torch.allclose(out, frame, atol=1e-6) or torch.allclose(out, frame.flip(-1), atol=1e-6)


def test_eval_transform_is_deterministic_centre_crop():
    clip = torch.rand(3, 4, 20, 30)
    t = eval_transform(10)
    out = t(clip)
    assert out.shape == (3, 4, 10, 10) and torch.equal(out, t(clip))


def test_bad_layout_is_refused():
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        key_transform(8)(torch.rand(4, 3, 8, 8))          # (T, C, H, W) by mistake
    with pytest.raises(ValueError, match="float"):
        key_transform(8)(torch.zeros(3, 2, 8, 8, dtype=torch.uint8))


def test_normalize_clip_both_layouts():
    clip = torch.rand(2, 3, 4, 5, 6)
    out = normalize_clip(clip)
    mean, std = torch.tensor(KINETICS_MEAN), torch.tensor(KINETICS_STD)
    for c in range(3):
        assert torch.allclose(out[:, c], (clip[:, c] - mean[c]) / std[c])
    assert torch.allclose(normalize_clip(clip[0]), out[0])
    with pytest.raises(ValueError, match="C = 3"):
        normalize_clip(torch.rand(4, 3, 5, 6))
