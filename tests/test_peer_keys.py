"""The peers' keys (training/pretrain/peer_keys.py): BE's static-frame mix and FAME's foreground merge,
checked on clips with known answers, plus determinism, layouts and bad input."""
from __future__ import annotations

import math

import pytest
import torch

from s2vc.training.pretrain.peer_keys import (
    background_erasing,
    derangement,
    fame_foreground_mask,
    fame_merge,
    mix_static_frame,
)

H = W = 32          # 1024 pixels: shares like 64/1024 are exact in binary, so int(beta*H*W) is too
T = 4
SQUARE = 4          # the square jumps by its own width each frame: every trail pixel is covered once
BACKGROUNDS = [(0.2, 0.2, 0.2), (0.1, 0.3, 0.5), (0.6, 0.5, 0.1), (0.3, 0.6, 0.3), (0.5, 0.1, 0.4)]
SQUARES = [(1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 0.0, 1.0)]
TOPS = [6, 12, 20, 9, 16]       # the row of each clip's square


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _squares(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """b clips (b, 3, T, H, W) in [0, 1]: a flat background of its own colour, a square of its own
    colour jumping SQUARE px to the right each frame; and each clip's trail, bool (b, H, W): the
    pixels the square covers in some frame (4 x 16 = 64 pixels, away from the borders). Every
    colour differs from every other, so each output pixel tells which clip it came from."""
    clips = torch.empty(b, 3, T, H, W)
    trail = torch.zeros(b, H, W, dtype=torch.bool)
    for i in range(b):
        clips[i] = torch.tensor(BACKGROUNDS[i]).view(3, 1, 1, 1)
        top, left = TOPS[i], 8
        for t in range(T):
            x = left + SQUARE * t
            clips[i, :, t, top:top + SQUARE, x:x + SQUARE] = torch.tensor(SQUARES[i]).view(3, 1, 1)
            trail[i, top:top + SQUARE, x:x + SQUARE] = True
    return clips, trail


def _sources(out: torch.Tensor, k: torch.Tensor) -> list[tuple[torch.Tensor, set[int]]]:
    """Per output clip i: (the pixels, bool (H, W), where it equals k[i] in every channel and
    frame; the set of other clips j that supply all the remaining pixels)."""
    result = []
    for i in range(k.shape[0]):
        own = (out[i] == k[i]).all(dim=0).all(dim=0)
        others = {j for j in range(k.shape[0]) if j != i and bool((out[i] == k[j]).all(dim=0).all(dim=0)[~own].all())}
        result.append((own, others))
    return result


# ---------------------------------------------------------------------------------------------
# BE

def test_be_static_clip_stays_the_mixed_frame():
    frame = torch.rand(2, 3, 1, 8, 9, generator=_gen(0))
    clip = frame.expand(2, 3, 6, 8, 9).clone()
    out = background_erasing(clip, generator=_gen(1))
    # (1 - lam) x + lam x = x: every frame equal, and equal to the mixed frame
    assert torch.allclose(out, out[:, :, :1].expand_as(out), atol=1e-6)
    assert torch.allclose(out[:, :, 0], frame[:, :, 0], atol=1e-6)


def test_mix_static_frame_is_the_formula():
    k = torch.rand(3, 3, 5, 6, 7, generator=_gen(2))
    weight, frame = torch.tensor([0.0, 0.25, 0.3]), torch.tensor([4, 0, 2])
    out = mix_static_frame(k, weight, frame)
    for b in range(3):
        for t in range(5):
            expected = (1 - weight[b]) * k[b, :, t] + weight[b] * k[b, :, frame[b]]
            assert torch.allclose(out[b, :, t], expected, atol=1e-6)
    # temporal differences are scaled by (1 - w): the motion survives, weaker
    scaled = (1 - weight).view(3, 1, 1, 1, 1) * k.diff(dim=2)
    assert torch.allclose(out.diff(dim=2), scaled, atol=1e-6)
    # the static frame itself becomes (1 - w) x_f + w x_f = x_f
    assert torch.allclose(out[torch.arange(3), :, frame], k[torch.arange(3), :, frame], atol=1e-6)


def test_be_is_one_weight_and_one_frame_of_each_clip():
    """Recover BE's draws from its output: one lam < 0.3 for the batch (the temporal differences
    shrink by 1 - lam), and out - (1 - lam) k is lam times one frame of the same clip."""
    k = torch.rand(4, 3, 6, 10, 11, generator=_gen(3))
    for seed in range(5):
        out = background_erasing(k, generator=_gen(seed))
        ratio = out.diff(dim=2) / k.diff(dim=2)
        lam = 1 - ratio.median()
        assert 0 <= lam < 0.3
        assert torch.allclose(out.diff(dim=2), (1 - lam) * k.diff(dim=2), atol=1e-5)
        added = out - (1 - lam) * k                                    # lam * static, every frame
        assert torch.allclose(added, added[:, :, :1].expand_as(added), atol=1e-5)
        if lam > 1e-3:
            for b in range(4):
                err = (added[b, :, :1] - lam * k[b]).abs().amax(dim=(0, 2, 3))    # per candidate frame
                assert err.min() < 1e-4, f"clip {b}: the added frame is no frame of the clip"
        assert 0 <= out.min() and out.max() <= 1


def test_be_weight_range_and_per_clip_frames_over_many_draws():
    k = torch.rand(8, 3, 5, 4, 4, generator=_gen(4))
    lams = []
    for seed in range(40):
        out = background_erasing(k, generator=_gen(seed), max_weight=0.5)
        lams.append(float(1 - (out.diff(dim=2) / k.diff(dim=2)).median()))
    assert min(lams) >= 0 and max(lams) < 0.5 and max(lams) > 0.3       # U[0, 0.5), all of it used
    assert torch.equal(background_erasing(k, generator=_gen(0), max_weight=0.0), k)


def test_be_is_deterministic_given_a_generator():
    k = torch.rand(3, 3, 4, 8, 8, generator=_gen(5))
    a = background_erasing(k, generator=_gen(7))
    assert torch.equal(a, background_erasing(k, generator=_gen(7)))
    assert not torch.equal(a, background_erasing(k, generator=_gen(8)))


# ---------------------------------------------------------------------------------------------
# FAME

def test_fame_mask_is_exactly_the_moving_region():
    k, trail = _squares(4)
    beta = 64 / (H * W)                                # the trail's area
    mask = fame_foreground_mask(k, beta=beta)
    assert mask.shape == (4, 1, 1, H, W) and mask.dtype == torch.bool
    assert torch.equal(mask[:, 0, 0], trail)


def test_fame_pastes_the_moving_region_onto_another_clips_background():
    k, trail = _squares(4)
    beta = 64 / (H * W)
    out = fame_merge(k, generator=_gen(0), beta=beta)
    for i, (own, others) in enumerate(_sources(out, k)):
        assert torch.equal(own, trail[i]), f"clip {i}: kept pixels are not the moving region"
        assert len(others) == 1 and i not in others, f"clip {i}: background from {others}"
        j = others.pop()
        assert torch.equal(out[i][:, :, ~trail[i]], k[j][:, :, ~trail[i]])


def test_fame_default_share_keeps_the_moving_region_and_half_the_frame():
    k, trail = _squares(5)
    out = fame_merge(k, generator=_gen(1))                   # beta 0.5: the official default
    for i, (own, others) in enumerate(_sources(out, k)):
        assert int(own.sum()) == H * W // 2
        assert bool(own[trail[i]].all()), f"clip {i}: part of the moving square was replaced"
        assert len(others) == 1 and i not in others


@pytest.mark.parametrize("b", [2, 3, 5])
def test_fame_background_is_never_the_clip_itself(b):
    k, _ = _squares(b)
    for seed in range(25):
        for i, (own, others) in enumerate(_sources(fame_merge(k, generator=_gen(seed)), k)):
            assert not bool(own.all()) and len(others) == 1 and i not in others


def test_fame_official_permutation_when_not_deranged():
    k, _ = _squares(5)
    out = fame_merge(k, generator=_gen(3), derange=False)
    perm = torch.randperm(5, generator=_gen(3))
    mask = fame_foreground_mask(k)
    assert torch.equal(out, torch.where(mask, k, k[perm]))


def test_fame_is_deterministic_given_a_generator():
    k = torch.rand(6, 3, 4, 16, 16, generator=_gen(6))
    a = fame_merge(k, generator=_gen(9))
    assert torch.equal(a, fame_merge(k, generator=_gen(9)))
    assert any(not torch.equal(a, fame_merge(k, generator=_gen(s))) for s in range(10, 14))


def test_fame_handles_a_still_clip_and_tiny_frames():
    still = torch.rand(2, 3, 1, 5, 3, generator=_gen(10)).expand(2, 3, 3, 5, 3).contiguous()
    out = fame_merge(still, generator=_gen(0))                # no motion: ties broken by pixel order
    assert out.shape == still.shape and torch.isfinite(out).all()
    assert int(fame_foreground_mask(still).sum()) == 2 * int(0.5 * 15)


# ---------------------------------------------------------------------------------------------
# both

def test_derangement_moves_every_index():
    for n in (2, 3, 7):
        seen = set()
        for seed in range(30):
            p = derangement(n, generator=_gen(seed))
            assert p.dtype == torch.int64 and sorted(p.tolist()) == list(range(n))
            assert bool((p != torch.arange(n)).all())
            seen.add(tuple(p.tolist()))
        if n == 3:
            assert seen == {(1, 2, 0), (2, 0, 1)}               # both derangements of 3 occur
    assert derangement(2).tolist() == [1, 0]
    with pytest.raises(ValueError, match="n >= 2"):
        derangement(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("op", [background_erasing, fame_merge])
def test_shape_dtype_device_preserved_under_no_grad(op, dtype):
    k = torch.rand(3, 3, 4, 12, 10, generator=_gen(11)).to(dtype)
    with torch.no_grad():
        out = op(k, generator=_gen(0))
    assert out.shape == k.shape and out.dtype == dtype and out.device == k.device


def test_works_without_a_generator():
    k, _ = _squares(3)
    torch.manual_seed(0)
    assert fame_merge(k).shape == k.shape and background_erasing(k).shape == k.shape


@pytest.mark.parametrize("op", [background_erasing, fame_merge])
@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 4, 8, 8), "5 dims"),
    (torch.rand(2, 1, 4, 8, 8), "3 colour channels"),
    (torch.randint(0, 255, (2, 3, 4, 8, 8), dtype=torch.uint8), "floating-point"),
    ([[0.0]], "torch.Tensor"),
])
def test_bad_clips_are_refused(op, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        op(bad)


def test_fame_needs_two_frames_and_two_clips():
    with pytest.raises(ValueError, match="at least 2 frames.*T=1"):
        fame_merge(torch.rand(3, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 2 clips.*got 1"):
        fame_merge(torch.rand(1, 3, 4, 8, 8))
    assert background_erasing(torch.rand(1, 3, 1, 8, 8)).shape == (1, 3, 1, 8, 8)   # BE needs neither


@pytest.mark.parametrize("kwargs, message", [
    ({"beta": 0.0}, "beta"), ({"beta": 1.5}, "beta"), ({"fg_sample": 0}, "fg_sample"),
    ({"bg_sample": -0.1}, "bg_sample"), ({"blur_ratio": -1}, "blur_ratio"), ({"colour_bins": 0}, "colour_bins"),
])
def test_fame_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fame_merge(torch.rand(2, 3, 3, 8, 8), **kwargs)


def test_be_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_weight"):
        background_erasing(torch.rand(2, 3, 3, 8, 8), max_weight=1.5)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        mix_static_frame(torch.rand(2, 3, 3, 8, 8), 0.1, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="one static frame index per clip"):
        mix_static_frame(torch.rand(2, 3, 3, 8, 8), 0.1, torch.tensor([0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_with_a_cpu_generator():
    k, trail = _squares(4)
    kc = k.cuda()
    with torch.no_grad():
        be = background_erasing(kc, generator=_gen(2))
        fame = fame_merge(kc, generator=_gen(2))
        mask = fame_foreground_mask(kc, beta=64 / (H * W))
    assert be.is_cuda and fame.is_cuda
    assert torch.allclose(be.cpu(), background_erasing(k, generator=_gen(2)), atol=1e-6)
    assert torch.equal(fame.cpu(), fame_merge(k, generator=_gen(2)))
    assert torch.equal(mask[:, 0, 0].cpu(), trail)
    cuda_gen = torch.Generator(device="cuda").manual_seed(4)       # a CUDA generator works too
    assert fame_merge(kc, generator=cuda_gen).is_cuda and background_erasing(kc, generator=cuda_gen).is_cuda


@pytest.mark.parametrize("mode", ["be", "fame"])
def test_key_maker_arms_run_the_peer_operations(mode):
    """Pretraining's be / fame arms make exactly the peer's key (seeded per run and step)."""
    from s2vc.training.pretrain.keys import KeyMaker
    g = torch.Generator().manual_seed(3)
    k = torch.rand(3, 3, 4, 16, 16, generator=g)
    maker = KeyMaker(mode, seed=0)
    key, preserved = maker(k, {}, 5)
    op = background_erasing if mode == "be" else fame_merge
    expected = op(k, generator=torch.Generator().manual_seed(5))
    assert torch.equal(key, expected) and not torch.equal(key, k) and math.isnan(preserved)
    assert not torch.equal(maker(k, {}, 6)[0], key)               # fresh draws every step
