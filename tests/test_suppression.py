"""temporal_std_mask: eq. (4) against NumPy float64, every strategy's defining property, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2vc.engine.suppression import STRATEGIES, alpha_for_preserved_fraction, temporal_std_mask


def _numpy_mask(z: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    z = z.astype(np.float64)
    t = z.shape[1]
    mean = z.sum(axis=1, keepdims=True) / t
    std = np.sqrt(((z - mean) ** 2).sum(axis=1) / (t - 1))      # eq. (4), unbiased
    return std < alpha, std


@pytest.mark.parametrize("shape", [(3, 16, 97), (1, 2, 5), (2, 32, 3072), (4, 7, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_strategy_matches_numpy(shape, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    # latents whose scale over time varies per dim, so the mask is mixed
    z = torch.randn(shape, generator=g, dtype=torch.float64) * torch.rand(shape[0], 1, shape[2], generator=g,
                                                                          dtype=torch.float64) * 1.5
    z = z.to(dtype)
    alpha = 0.5
    z_p, mask = temporal_std_mask(z, alpha)
    ref_mask, std = _numpy_mask(z.double().numpy(), alpha)
    flips = mask.numpy() != ref_mask
    eps = 1e-5 if dtype == torch.float32 else 1e-12
    assert np.all(np.abs(std[flips] - alpha) < eps), "a latent flipped away from the threshold"
    if shape[2] > 50:
        assert 0.05 < ref_mask.mean() < 0.95
    expected = np.where(mask.numpy()[:, None, :], 0.0, z.numpy())
    np.testing.assert_array_equal(z_p.numpy(), expected)


def test_flip_only_at_threshold():
    # latents constructed with an STD just below alpha, far below and far above
    t = 8
    base = torch.tensor([1.0, -1.0] * (t // 2), dtype=torch.float64)
    s = base.std()
    z = torch.stack([base / s * a for a in (0.5 - 1e-9, 0.5 + 1e-9, 0.2, 0.9)], dim=1)[None]
    _, mask = temporal_std_mask(z, 0.5)
    assert mask[0].tolist() == [True, False, True, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", ["eager", "ext"])
def test_std_equal_to_alpha_is_kept(backend, dtype):
    """Eq. (4) is strict (static: STD < alpha): the latent whose STD equals alpha, as the backend
    computes it, is kept; one ulp higher alpha suppresses it."""
    import math

    from s2vc.engine import extension
    if backend == "ext" and not extension.ext_has_kernel("temporal_std_mask", "cpu"):
        pytest.skip(f"s2vc._C is not loaded: {extension.EXT_ERROR}")
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1, 6, 1, generator=g, dtype=torch.float64)
    z = (base / base.std() * torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)).to(dtype)  # STDs ~ 0.3, 0.5, 0.7
    if backend == "ext":
        std = torch.ops.s2vc.temporal_std_mask(z, 1.0, -1, None, None, None)[2]
    else:
        std = z.std(dim=1)
    alpha = float(std[0, 1])                      # exactly latent 1's STD (a float64 holds any float32)
    assert float(std[0, 0]) < alpha < float(std[0, 2])
    _, mask = temporal_std_mask(z, alpha, backend=backend)
    assert mask[0].tolist() == [True, False, False]
    above = math.nextafter(alpha, math.inf) if dtype == torch.float64 else float(
        torch.nextafter(std[0, 1], torch.tensor(math.inf, dtype=dtype)))
    _, mask = temporal_std_mask(z, above, backend=backend)
    assert mask[0].tolist() == [True, True, False]


def _mixed(seed=0, b=2, t=6, d=40):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, t, d, generator=g) * torch.linspace(0.05, 2.0, d)
    return z


def test_noise_is_fixed_over_time_and_seeded():
    z = _mixed()
    z_p, mask = temporal_std_mask(z, 0.5, "noise", generator=torch.Generator().manual_seed(1))
    sup = mask.unsqueeze(1).expand_as(z)
    assert mask.any() and (~mask).any()
    replaced = z_p[sup].reshape(-1)
    assert torch.all(z_p.std(dim=1)[mask] == 0)                  # the same value in every frame
    assert not torch.allclose(replaced, torch.zeros_like(replaced))
    assert torch.equal(z_p[~sup], z[~sup])
    again, _ = temporal_std_mask(z, 0.5, "noise", generator=torch.Generator().manual_seed(1))
    other, _ = temporal_std_mask(z, 0.5, "noise", generator=torch.Generator().manual_seed(2))
    assert torch.equal(z_p, again) and not torch.equal(z_p, other)


def test_shuffle_clip_permutes_each_latent_over_time():
    z = _mixed(t=12)
    z_p, mask = temporal_std_mask(z, 0.5, "shuffle_clip", generator=torch.Generator().manual_seed(0))
    for b in range(z.shape[0]):
        for d in range(z.shape[2]):
            if mask[b, d]:
                assert torch.equal(z_p[b, :, d].sort().values, z[b, :, d].sort().values)
            else:
                assert torch.equal(z_p[b, :, d], z[b, :, d])
    assert not torch.equal(z_p, z)


def test_shuffle_frame_permutes_suppressed_values_within_each_frame():
    z = _mixed()
    z_p, mask = temporal_std_mask(z, 0.5, "shuffle_frame", generator=torch.Generator().manual_seed(0))
    for b in range(z.shape[0]):
        idx = mask[b].nonzero().squeeze(1)
        for t in range(z.shape[1]):
            assert torch.equal(z_p[b, t, idx].sort().values, z[b, t, idx].sort().values)
            assert torch.equal(z_p[b, t, ~mask[b]], z[b, t, ~mask[b]])
    assert not torch.equal(z_p, z)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 1.0])
def test_topk_keeps_exactly_the_fraction(fraction):
    z = _mixed(d=97)
    z_p, mask = temporal_std_mask(z, 0.5, "topk", keep_fraction=fraction)
    kept = (~mask).sum(dim=1)
    assert kept.tolist() == [round(fraction * 97)] * 2
    std = z.std(dim=1)
    for b in range(2):
        if 0 < kept[b] < 97:
            assert std[b][~mask[b]].min() >= std[b][mask[b]].max()
    assert torch.all(z_p[mask.unsqueeze(1).expand_as(z)] == 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_deterministic_under_a_seed(strategy):
    z = _mixed()
    kw = {"keep_fraction": 0.3} if strategy == "topk" else {}
    a, ma = temporal_std_mask(z, 0.5, strategy, generator=torch.Generator().manual_seed(7), **kw)
    b, mb = temporal_std_mask(z, 0.5, strategy, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a, b) and torch.equal(ma, mb)


def test_alpha_for_preserved_fraction():
    std = torch.rand(10, 1000)
    alpha = alpha_for_preserved_fraction(std, 0.25)
    assert (std >= alpha).float().mean().item() == pytest.approx(0.25, abs=0.002)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(z=torch.zeros(2, 1, 4)), ValueError, "T >= 2"),
    (dict(z=torch.zeros(2, 4)), ValueError, r"\(B, T, D\)"),
    (dict(z=torch.zeros(2, 3, 4, dtype=torch.int64)), TypeError, "floating point"),
    (dict(z=torch.full((1, 3, 2), float("nan"))), ValueError, "NaN"),
    (dict(z=torch.zeros(1, 3, 2), alpha=0.0), ValueError, "alpha"),
    (dict(z=torch.zeros(1, 3, 2), alpha=float("inf")), ValueError, "alpha"),
    (dict(z=torch.zeros(1, 3, 2), strategy="blur"), ValueError, "unknown suppression strategy"),
    (dict(z=torch.zeros(1, 3, 2), strategy="topk"), ValueError, "keep_fraction"),
    (dict(z=torch.zeros(1, 3, 2), backend="tensorrt"), ValueError, "not available"),
])
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        temporal_std_mask(**kwargs)


def test_resolve_keep_fraction_follows_the_flows_calibration():
    from types import SimpleNamespace

    from s2vc.engine.calibrate import DEFAULT_PRESERVE
    from s2vc.engine.suppression import resolve_keep_fraction
    calibrated = SimpleNamespace(meta={"alpha": 0.4, "alpha_calibration": {"preserve": 0.31}})
    assert resolve_keep_fraction(calibrated) == 0.31
    assert resolve_keep_fraction(calibrated, 0.05) == 0.05
    assert resolve_keep_fraction(SimpleNamespace(meta={})) == DEFAULT_PRESERVE
    assert resolve_keep_fraction(object()) == DEFAULT_PRESERVE
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="topk"):
            resolve_keep_fraction(calibrated, bad)


def test_the_compiled_ops_enum_agrees_with_the_strategy_table():
    """cpp_ext/temporal_std.h's strategy enum and its list of valid codes say what
    engine/strategies.py's table says (the kernels are compiled from the header)."""
    import re
    from pathlib import Path

    from s2vc.engine import strategies
    header = (Path(__file__).resolve().parents[1] / "cpp_ext" / "temporal_std.h").read_text()
    body = re.search(r"enum\s+TemporalStdStrategy\s*:\s*int64_t\s*\{(.*?)\};", header, re.S).group(1)
    enum = {m.group(1): int(m.group(2)) for m in re.finditer(r"\bk(\w+)\s*=\s*(-?\d+)\s*,", body)}
    camel = {"".join(part.title() for part in s.name.split("_")): s.code
             for s in strategies.TABLE if s.code is not None}
    assert enum == {"StdOnly": strategies.STD_ONLY_CODE, **camel}
    listed = re.search(r'kTemporalStdValidCodes\s*=\s*"([^"]*)"', header).group(1)
    assert dict((name, int(code)) for code, name in re.findall(r"(-?\d+) \(([\w ]+)\)", listed)) == {
        "std and mask only": strategies.STD_ONLY_CODE, **strategies.STRATEGY_CODES}
    assert "engine/strategies.py" in header and "_EXT_CODES" not in header


def test_the_strategy_table_is_what_everything_derives_from():
    from s2vc.engine import exported_meta, graph, strategies, suppression
    assert suppression.STRATEGIES == strategies.STRATEGIES == tuple(s.name for s in strategies.TABLE)
    assert graph.EXPORTABLE_STRATEGIES == tuple(exported_meta.STRATEGY_INPUTS) == ("zero", "noise", "shuffle_clip")
    assert not hasattr(graph, "strategy_inputs")
    for s in strategies.TABLE:
        noise, order = suppression.draw_random_inputs(s.name, 2, 3, 4)
        assert ("noise" in s.graph_inputs, "order" in s.graph_inputs) == (noise is not None, order is not None)
    with pytest.raises(ValueError, match="unknown suppression strategy 'blur'"):
        strategies.strategy("blur")


def test_validate_false_skips_only_the_finite_check():
    """validate=False (training) reads nothing back: NaN latents pass through instead of raising;
    the result on finite latents is the same either way."""
    z = _mixed()
    assert all(torch.equal(a, b) for a, b in zip(temporal_std_mask(z, 0.5), temporal_std_mask(z, 0.5, validate=False)))
    nan = torch.full((1, 3, 2), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        temporal_std_mask(nan, 0.5)
    z_p, mask = temporal_std_mask(nan, 0.5, validate=False, backend="eager")
    assert mask.shape == (1, 2) and z_p.shape == nan.shape


def test_one_keep_fraction_check():
    """(0, 1] for a setting (generator, resolver, pretraining config); the op alone also takes 0."""
    from s2vc.engine.defaults import check_keep_fraction
    assert check_keep_fraction(1) == 1.0 and check_keep_fraction(0.0, allow_zero=True) == 0.0
    for bad in (0.0, -0.1, 1.5, None, True, "0.5"):
        with pytest.raises(ValueError, match=r"keep_fraction in \(0, 1\]"):
            check_keep_fraction(bad)
