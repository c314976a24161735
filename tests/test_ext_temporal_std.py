"""The compiled op s2vc::temporal_std_mask against the eager reference of engine/suppression.py.

Fresh random inputs (seeded per case), over device, dtype, shape and contiguity; every strategy
through the public ``temporal_std_mask`` with backend "ext" against backend "eager" on the same
seeded generator; the op's own contract (strategy -1, a given mask, NaN); input checks; opcheck
and torch.compile through the fake kernel. Tests that need the compiled extension skip where it
was not built; tests/test_build.py fails instead when S2VC_REQUIRE_EXT=1 (CI).

Agreement rule: the masks may differ only where the STD is within rounding of the threshold
(alpha, or for topk the STD at the keep boundary); z_p must agree exactly wherever they agree.
"""
from __future__ import annotations

import zlib

import pytest
import torch

from s2vc.engine import extension as ext
from s2vc.engine.suppression import STRATEGIES, resolve_backend, temporal_std_mask

ALPHA = 0.5
OP = torch.ops.s2vc.temporal_std_mask if ext.EXT_AVAILABLE else None

needs_ext = pytest.mark.skipif(not ext.EXT_AVAILABLE,
                               reason=f"compiled extension not built: {ext.EXT_ERROR}")


def _cuda_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    if ext.EXT_AVAILABLE and not ext.ext_has_kernel("temporal_std_mask", "cuda"):
        return "s2vc._C was built without CUDA kernels (S2VC_CUDA=0 or no toolkit at build time)"
    return None


_CUDA_SKIP = _cuda_skip_reason()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(_CUDA_SKIP is not None,
                                                  reason=_CUDA_SKIP or "")),
]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]

# T = 2 (the smallest, and CUDA's T <= 8 bucket), odd D and D below any vector width, T = 9 / 16
# / 32 (CUDA's register buckets), T = 33 (CUDA re-reads z), T = 600 (CPU narrows its tiles)
SHAPES = [(1, 2, 1), (1, 2, 7), (4, 9, 5), (3, 16, 97), (2, 32, 3072), (2, 33, 300), (1, 600, 70)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]

# the CUDA kernel also takes half and bfloat16 (accumulating in float, rounding the STD once)
REDUCED = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
CUDA_ONLY = DEVICES[1:]

# STD: relative, against torch.std of the same dtype (two roundings apart at most for half / bf16:
# both accumulate in float, in another order); flips: |std - threshold| below this
STD_RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
FLIP_TOL = {dtype: rtol * ALPHA for dtype, rtol in STD_RTOL.items()}


def _gen(*key) -> torch.Generator:
    # fresh random inputs per case, reproducible from the test's own parameters
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _latents(shape, dtype, device, layout="contiguous", key=()):
    """z (B, T, D) whose temporal scale varies per latent, so the mask is mixed at alpha."""
    b, t, d = shape
    g = _gen(shape, str(dtype), layout, *key)
    scale = 1.5 * torch.rand(b, 1, d, generator=g, dtype=torch.float64)
    if layout == "transposed":    # stored (B, D, T)
        z = (torch.randn(b, d, t, generator=g, dtype=torch.float64) * scale.transpose(1, 2))
        z = z.to(device=device, dtype=dtype).transpose(1, 2)
    elif layout == "strided":     # every other frame and latent of a larger tensor
        z = torch.randn(b, 2 * t, 2 * d, generator=g, dtype=torch.float64)
        z = (z * scale.repeat_interleave(2, dim=2)).to(device=device, dtype=dtype)[:, ::2, ::2]
    else:
        z = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device=device,
                                                                              dtype=dtype)
    assert z.shape == shape and z.is_contiguous() == (layout == "contiguous")
    return z


def _assert_masks_close(mask, ref_mask, std, threshold, dtype):
    flips = mask != ref_mask
    near = (std.double() - threshold).abs() < FLIP_TOL[dtype]
    assert not (flips & ~near).any(), (
        f"{int(flips.sum())} mask entries differ away from the threshold {threshold}: STD "
        f"{std[flips & ~near][:5].tolist()}")
    return flips


def _assert_agree(z_p, mask, ref_z_p, ref_mask, std, threshold, dtype):
    flips = _assert_masks_close(mask, ref_mask, std, threshold, dtype)
    agree = (~flips).unsqueeze(1).expand_as(z_p)
    assert torch.equal(z_p[agree], ref_z_p[agree])


# --------------------------------------------------------------------------- the op itself


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_std_mask_and_zero_match_reference(device, dtype, shape):
    z = _latents(shape, dtype, device)
    z_p, mask, std = OP(z, ALPHA, 0, None, None, None)
    ref_std = z.std(dim=1)
    assert std.shape == mask.shape == shape[::2] and z_p.shape == shape
    assert std.dtype == dtype and mask.dtype == torch.bool and z_p.dtype == dtype
    assert all(t.device == z.device and t.is_contiguous() for t in (z_p, mask, std))
    torch.testing.assert_close(std, ref_std, rtol=STD_RTOL[dtype], atol=0)
    # the mask is exactly the op's own STD against alpha (rounded to z's dtype)
    assert torch.equal(mask, std < ALPHA)
    _assert_agree(z_p, mask, torch.where(ref_std.unsqueeze(1) < ALPHA, 0, z), ref_std < ALPHA,
                  ref_std, ALPHA, dtype)
    if shape[2] > 50:
        assert 0.05 < mask.double().mean() < 0.95, "the test latents should give a mixed mask"


@needs_ext
@pytest.mark.parametrize("device", CUDA_ONLY)
@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_reduced_precision_cuda_matches_reference(device, dtype, shape):
    # the same checks as float32 / float64, at the dtype's own tolerance
    test_std_mask_and_zero_match_reference(device, dtype, shape)


@needs_ext
@pytest.mark.parametrize("device", CUDA_ONLY)
@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reduced_precision_public_ext_matches_eager(device, dtype, strategy):
    assert resolve_backend("auto", torch.zeros(1, 2, 3, dtype=dtype, device=device)) == "ext"
    z = _latents((3, 16, 97), dtype, device, key=(strategy,))
    _check_strategy(z, strategy, seed=zlib.crc32(repr(("reduced", strategy)).encode()))


@needs_ext
def test_cpu_kernel_refuses_reduced_precision():
    for dtype, name in ((torch.float16, "Half"), (torch.bfloat16, "BFloat16")):
        with pytest.raises(RuntimeError, match=rf"\(CPU kernel\): expected z of dtype float32 or float64, got {name}"):
            OP(torch.randn(2, 4, 6).to(dtype), ALPHA, 0, None, None, None)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_std_only_returns_empty_z_p(device, dtype):
    z = _latents((3, 16, 97), dtype, device)
    z_p, mask, std = OP(z, ALPHA, -1, None, None, None)
    assert z_p.shape == (0,) and z_p.dtype == dtype and z_p.device == z.device
    full = OP(z, ALPHA, 0, None, None, None)
    assert torch.equal(mask, full[1]) and torch.equal(std, full[2])


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", [-1, 0, 1, 2])
def test_given_mask_is_used_as_is(device, strategy):
    shape = (2, 12, 33)
    z = _latents(shape, torch.float32, device)
    g = _gen("given-mask", strategy)
    given = (torch.rand(2, 33, generator=g) < 0.5).to(device)
    noise = torch.randn(2, 33, generator=g).to(device) if strategy == 1 else None
    order = (torch.rand(shape, generator=g).argsort(dim=1).to(device) if strategy == 2 else None)
    z_p, mask, std = OP(z, ALPHA, strategy, noise, order, given)
    assert torch.equal(mask, given) and mask.data_ptr() != given.data_ptr()
    torch.testing.assert_close(std, z.std(dim=1), rtol=1e-5, atol=0)  # still computed
    if strategy == -1:
        return
    m = given.unsqueeze(1)
    replacement = {0: torch.zeros((), device=device), 1: noise.unsqueeze(1) if noise is not None
                   else None, 2: z.gather(1, order) if order is not None else None}[strategy]
    assert torch.equal(z_p, torch.where(m, replacement, z))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_noise_order_and_mask(device):
    shape = (3, 10, 21)
    z = _latents(shape, torch.float64, device, layout="strided")
    g = _gen("nc-args")
    noise = torch.randn(21, 3, generator=g, dtype=torch.float64).to(device).t()          # (3, 21)
    order = torch.rand(3, 21, 10, generator=g).argsort(dim=2).to(device).transpose(1, 2)
    given = (torch.rand(21, 3, generator=g) < 0.5).to(device).t()
    assert not (noise.is_contiguous() or order.is_contiguous() or given.is_contiguous())
    z_p, _, _ = OP(z, ALPHA, 1, noise, None, given)
    assert torch.equal(z_p, torch.where(given.unsqueeze(1), noise.unsqueeze(1), z))
    z_p, _, _ = OP(z, ALPHA, 2, None, order, given)
    assert torch.equal(z_p, torch.where(given.unsqueeze(1), z.gather(1, order), z))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_nan_gives_nan_std_and_no_mask(device):
    z = torch.zeros(2, 5, 9, device=device)  # STD 0 < alpha: masked, except where NaN
    z[1, 3, 4] = float("nan")
    z_p, mask, std = OP(z, ALPHA, 0, None, None, None)
    assert torch.isnan(std[1, 4]) and not mask[1, 4] and torch.isnan(z_p[1, 3, 4])
    assert mask.sum() == 2 * 9 - 1
    with pytest.raises(ValueError, match="NaN"):
        temporal_std_mask(z, ALPHA, backend="ext")


# --------------------------------------------------------------------------- public function


def _run_both(z, strategy, seed):
    device = z.device
    kw = {"keep_fraction": 0.3} if strategy == "topk" else {}
    out = {}
    for backend in ("ext", "eager"):
        g = torch.Generator(device=device).manual_seed(seed)
        out[backend] = temporal_std_mask(z, ALPHA, strategy, generator=g, backend=backend, **kw)
    return out["ext"], out["eager"]


def _check_strategy(z, strategy, seed):
    (z_p, mask), (ref_z_p, ref_mask) = _run_both(z, strategy, seed)
    assert z_p.shape == z.shape and z_p.dtype == z.dtype and mask.shape == ref_mask.shape
    std = z.std(dim=1)
    if strategy == "topk":
        # the mask ranks the STDs: a flip can only swap latents at the keep boundary
        threshold = std.masked_fill(ref_mask, float("inf")).min(dim=1, keepdim=True).values
    else:
        threshold = ALPHA
    flips = _assert_masks_close(mask, ref_mask, std, threshold, z.dtype)
    if strategy == "shuffle_frame":
        # the permutation of clip i is drawn for its mask: compare the clips whose masks agree
        same = ~flips.any(dim=1)
        assert torch.equal(z_p[same], ref_z_p[same])
    else:
        agree = (~flips).unsqueeze(1).expand_as(z)
        assert torch.equal(z_p[agree], ref_z_p[agree])


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_public_ext_matches_eager(device, dtype, shape, strategy):
    z = _latents(shape, dtype, device, key=(strategy,))
    _check_strategy(z, strategy, seed=zlib.crc32(repr((shape, strategy)).encode()))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("shape", [(3, 16, 97), (2, 33, 300)], ids=["3x16x97", "2x33x300"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_public_ext_matches_eager_non_contiguous(device, layout, shape, strategy):
    z = _latents(shape, torch.float32, device, layout=layout, key=(strategy,))
    _check_strategy(z, strategy, seed=7)


@needs_ext
def test_auto_backend_takes_the_op_for_float32_and_float64():
    for dtype in (torch.float32, torch.float64):
        assert resolve_backend("auto", torch.zeros(1, 2, 3, dtype=dtype)) == "ext"
    assert resolve_backend("auto", torch.zeros(1, 2, 3, dtype=torch.float16)) == "eager"
    with pytest.raises(RuntimeError, match=r"no cpu kernel for torch.float16"):
        temporal_std_mask(torch.zeros(1, 2, 3, dtype=torch.float16), backend="ext")


@needs_ext
def test_both_ops_built_for_the_same_devices():
    # ext_has_cuda() asks the coupling op; the build puts every op's CUDA kernel in or none
    assert ext.ext_has_kernel("temporal_std_mask", "cpu")
    assert ext.ext_has_kernel("temporal_std_mask", "cuda") == ext.ext_has_cuda()


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
def test_cuda_runs_on_current_stream():
    from conftest import assert_runs_on_current_stream
    z = _latents((2, 16, 3072), torch.float32, "cuda")
    result = {}
    assert_runs_on_current_stream(lambda: result.update(zip(("z_p", "mask", "std"), OP(z, ALPHA, 0, None, None, None))),
                                  "temporal_std_mask_kernel")
    torch.testing.assert_close(result["std"], z.std(dim=1), rtol=1e-5, atol=0)
    assert torch.equal(result["z_p"], torch.where(result["mask"].unsqueeze(1), 0, z))


# --------------------------------------------------------------------------- input checks


def _error_cases(device):
    z = torch.randn(2, 4, 6, device=device)
    noise = torch.randn(2, 6, device=device)
    order = torch.rand(2, 4, 6, device=device).argsort(dim=1)
    mask = torch.zeros(2, 6, dtype=torch.bool, device=device)
    return {
        "T=1": ((torch.randn(2, 1, 6, device=device), ALPHA, 0, None, None, None),
                r"needs T >= 2 frames.*T = 1"),
        "2d": ((torch.randn(4, 6, device=device), ALPHA, 0, None, None, None),
               r"expected z of shape \(B, T, D\)"),
        "int-z": ((z.long(), ALPHA, 0, None, None, None), r"float32, float64, float16 or bfloat16, got Long"),
        "strategy-3": ((z, ALPHA, 3, None, None, None),
                       r"unknown strategy code 3; valid codes: -1 \(std and mask only\), "
                       r"0 \(zero\), 1 \(noise\), 2 \(shuffle_clip\)"),
        "strategy--2": ((z, ALPHA, -2, None, None, None), r"unknown strategy code -2"),
        "noise-missing": ((z, ALPHA, 1, None, None, None),
                          r"strategy 1 \(noise\) needs noise of shape \(B, D\) = \(2, 6\).*none"),
        "noise-shape": ((z, ALPHA, 1, noise[:, :5], None, None),
                        r"expected noise of shape \(B, D\) = \(2, 6\).*got noise of shape "
                        r"\[2, 5\]"),
        "noise-dtype": ((z, ALPHA, 1, noise.double(), None, None),
                        r"expected noise of z's dtype Float, got Double"),
        "noise-unused": ((z, ALPHA, 0, noise, None, None),
                         r"noise is only used by strategy 1"),
        "order-missing": ((z, ALPHA, 2, None, None, None),
                          r"strategy 2 \(shuffle_clip\) needs order of shape \(B, T, D\) = "
                          r"\(2, 4, 6\) and dtype int64, got none"),
        "order-dtype": ((z, ALPHA, 2, None, order.int(), None),
                        r"expected order of dtype int64 \(Long\), got Int"),
        "order-shape": ((z, ALPHA, 2, None, order[:, :3], None),
                        r"expected order of shape \(B, T, D\) = \(2, 4, 6\).*got order of shape "
                        r"\[2, 3, 6\]"),
        "order-unused": ((z, ALPHA, 1, noise, order, None), r"order is only used by strategy 2"),
        "mask-shape": ((z, ALPHA, 0, None, None, mask[:, :5]),
                       r"expected mask of shape \(B, D\) = \(2, 6\).*got mask of shape \[2, 5\]"),
        "mask-dtype": ((z, ALPHA, 0, None, None, mask.float()),
                       r"expected mask of dtype bool, got Float"),
    }


ERROR_IDS = list(_error_cases("cpu"))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ERROR_IDS)
def test_op_rejects_bad_inputs(device, case):
    args, match = _error_cases(device)[case]
    with pytest.raises(RuntimeError, match=match):
        OP(*args)


@needs_ext
def test_cpu_kernel_checks_order_range():
    z = _latents((2, 4, 6), torch.float32, "cpu")
    order = torch.arange(4).view(1, 4, 1).expand(2, 4, 6).clone()
    everything = torch.ones(2, 6, dtype=torch.bool)
    order[1, 2, 5] = 4
    with pytest.raises(RuntimeError, match=r"order holds index 4, out of range for T = 4 frames"):
        OP(z, ALPHA, 2, None, order, everything)
    order[1, 2, 5] = -1
    with pytest.raises(RuntimeError, match=r"order holds index -1"):
        OP(z, ALPHA, 2, None, order, everything)
    # indices of latents that are not masked are never read
    z_p, _, _ = OP(z, ALPHA, 2, None, order, everything.index_fill(1, torch.tensor([5]), False))
    assert torch.equal(z_p[:, :, 5], z[:, :, 5])


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
def test_op_rejects_mixed_devices():
    z = torch.randn(2, 4, 6, device="cuda")
    with pytest.raises(RuntimeError, match=r"expected noise on z's device cuda:0, got cpu"):
        OP(z, ALPHA, 1, torch.randn(2, 6), None, None)


# --------------------------------------------------------------------------- tracing


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    shape = (2, 5, 7)
    z = _latents(shape, torch.float32, device)
    g = _gen("opcheck")
    noise = torch.randn(2, 7, generator=g).to(device)
    order = torch.rand(shape, generator=g).argsort(dim=1).to(device)
    given = (torch.rand(2, 7, generator=g) < 0.5).to(device)
    op = OP.default
    for args in [(z, ALPHA, -1, None, None, None), (z, ALPHA, 0, None, None, None),
                 (z, ALPHA, 1, noise, None, None), (z.double(), ALPHA, 2, None, order, None),
                 (z.transpose(0, 2).contiguous().transpose(0, 2), ALPHA, 0, None, None, given)]:
        torch.library.opcheck(op, args)


@needs_ext
def test_torch_compile_fullgraph():
    # The op directly: the public temporal_std_mask checks `torch.isfinite(std).all()` in Python,
    # a data-dependent branch that fullgraph=True refuses (it compiles with a graph break).
    def suppress(z):
        z_p, mask, std = torch.ops.s2vc.temporal_std_mask(z * 2, ALPHA, 0, None, None, None)
        _, mask_only, _ = torch.ops.s2vc.temporal_std_mask(z, ALPHA, -1, None, None, None)
        return z_p + 1, mask & mask_only, std

    compiled = torch.compile(suppress, fullgraph=True, dynamic=False)
    z = _latents((2, 6, 40), torch.float32, "cpu")
    for got, want in zip(compiled(z), suppress(z)):
        assert torch.equal(got, want)
