"""The compiled ops s2vc::affine_coupling_inverse and its _out variant against the reference.

Fresh random inputs (seeded per case), over device, dtype, shape and contiguity; input checks;
opcheck; tracing through the fake kernel (torch.compile, torch.export); the backend switch.
Tests that need the compiled extension skip where it was not built; tests/test_build.py fails
instead when S2VC_REQUIRE_EXT=1 (CI), so a broken build cannot hide behind these skips.
"""
from __future__ import annotations

import zlib

import pytest
import torch

from s2vc.engine import extension as ext
from s2vc.engine import ops

CLAMP = 1.5

needs_ext = pytest.mark.skipif(not ext.EXT_AVAILABLE,
                               reason=f"compiled extension not built: {ext.EXT_ERROR}")


def _cuda_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    if ext.EXT_AVAILABLE and not ext.ext_has_cuda():
        return "s2vc._C was built without CUDA kernels (S2VC_CUDA=0 or no toolkit at build time)"
    return None


_CUDA_SKIP = _cuda_skip_reason()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(_CUDA_SKIP is not None,
                                                  reason=_CUDA_SKIP or "")),
]

# (v shape, raw shape): fully connected (N, n), and convolutional (N, n, H, W)
SHAPES = [
    ((1, 1536), (1, 3072)),       # the AdvFlow FC blocks: half of 3072 dims
    ((3, 7), (3, 14)),            # odd sizes
    ((2, 1, 5, 7), (2, 2, 5, 7)),  # n = 1
    ((2, 6, 33, 31), (2, 12, 33, 31)),
    ((1, 6, 32, 32), (1, 12, 32, 32)),  # N = 1, the 12x32x32 level of the flow
]
SHAPE_IDS = ["fc1536", "fc-odd", "conv-n1", "conv-odd", "conv-N1"]

# (rtol, atol) against a reference of the same dtype: a few ulp (atan / exp differ by an ulp or
# two between libm, Sleef and CUDA)
TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-12, 1e-13)}
# half types against a float32 reference on the same (rounded) inputs: one rounding of u
TOL_HALF = {torch.float16: (2e-3, 2e-3), torch.bfloat16: (1e-2, 1e-2)}


def _gen(*key) -> torch.Generator:
    # fresh random inputs per case, reproducible from the test's own parameters
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _inputs(v_shape, raw_shape, dtype=torch.float32, device="cpu", key=()):
    g = _gen(v_shape, raw_shape, *key)
    v = torch.randn(v_shape, generator=g, dtype=torch.float64)
    # scale 3 so that atan(s / clamp) reaches its saturating range
    raw = 3 * torch.randn(raw_shape, generator=g, dtype=torch.float64)
    return v.to(device=device, dtype=dtype), raw.to(device=device, dtype=dtype)


def _run_ext(v, raw, clamp=CLAMP):
    return torch.ops.s2vc.affine_coupling_inverse(v, raw, clamp)


# --------------------------------------------------------------------------- parity


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shapes", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("clamp", [CLAMP, 0.5])
def test_matches_reference(device, dtype, shapes, clamp):
    v, raw = _inputs(*shapes, dtype=dtype, device=device, key=(str(dtype), clamp))
    out = _run_ext(v, raw, clamp)
    ref = ops.affine_coupling_inverse_reference(v, raw, clamp)
    assert out.shape == v.shape and out.dtype == dtype and out.device == v.device
    assert out.is_contiguous()
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("shapes", SHAPES, ids=SHAPE_IDS)
def test_half_types_cuda(dtype, shapes):
    v, raw = _inputs(*shapes, dtype=dtype, device="cuda", key=(str(dtype),))
    out = _run_ext(v, raw)
    assert out.dtype == dtype and out.shape == v.shape
    ref = ops.affine_coupling_inverse_reference(v.float(), raw.float(), CLAMP)
    rtol, atol = TOL_HALF[dtype]
    torch.testing.assert_close(out.float(), ref, rtol=rtol, atol=atol)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    g = _gen("non-contiguous", device)
    # conv: v is a transposed view, raw a channel slice of a wider tensor
    v = torch.randn(4, 2, 9, 11, generator=g).to(device).transpose(0, 1)  # (2, 4, 9, 11)
    raw = torch.randn(2, 10, 9, 11, generator=g).to(device)[:, 1:9]       # (2, 8, 9, 11)
    # and a channels-last raw for good measure
    raw_cl = raw.contiguous(memory_format=torch.channels_last)
    # fc: strided views
    v_fc = torch.randn(7, 3, generator=g).to(device).t()                  # (3, 7)
    raw_fc = torch.randn(3, 28, generator=g).to(device)[:, ::2]           # (3, 14)
    for v_, raw_ in [(v, raw), (v, raw_cl), (v_fc, raw_fc)]:
        assert not v_.is_contiguous() or not raw_.is_contiguous()
        out = _run_ext(v_, raw_)
        assert out.is_contiguous()
        torch.testing.assert_close(out, ops.affine_coupling_inverse_reference(v_, raw_, CLAMP),
                                   rtol=1e-5, atol=1e-6)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    v, raw = torch.zeros(0, 3, device=device), torch.zeros(0, 6, device=device)
    assert _run_ext(v, raw).shape == (0, 3)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_no_grad_and_inference_mode(device):
    v, raw = _inputs((2, 3, 4, 5), (2, 6, 4, 5), device=device, key=("modes",))
    ref = ops.affine_coupling_inverse_reference(v, raw, CLAMP)
    with torch.no_grad():
        torch.testing.assert_close(_run_ext(v, raw), ref)
    with torch.inference_mode():
        vi, rawi = v.clone(), raw.clone()  # inference tensors
        out = ops.affine_coupling_inverse(vi, rawi, CLAMP, backend="ext")
        assert out.is_inference()
        torch.testing.assert_close(out, ref)


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
def test_cuda_runs_on_current_stream_and_device():
    from conftest import assert_runs_on_current_stream
    v, raw = _inputs((2, 6, 33, 31), (2, 12, 33, 31), device="cuda", key=("stream",))
    result = {}
    assert_runs_on_current_stream(lambda: result.update(out=_run_ext(v, raw)), "affine_coupling_inverse_kernel")
    torch.testing.assert_close(result["out"], ops.affine_coupling_inverse_reference(v, raw, CLAMP))


# --------------------------------------------------------------------------- input checks


def _error_cases(device):
    v = torch.randn(2, 4, 3, 3, device=device)
    return [
        (v, torch.randn(2, 6, 3, 3, device=device), CLAMP, r"2n = 8 channels"),
        (v, torch.randn(3, 8, 3, 3, device=device), CLAMP, r"match v .* in N and S"),
        (v, torch.randn(2, 8, 3, 4, device=device), CLAMP, r"match v .* in N and S"),
        (v, torch.randn(2, 8, 3, 3, device=device, dtype=torch.float64), CLAMP,
         r"v and raw of one"),
        (v.long(), torch.randn(2, 8, 3, 3, device=device).long(), CLAMP, r"floating"),
        (v, torch.randn(2, 8, 3, 3, device=device), 0.0, r"clamp > 0"),
        (v, torch.randn(2, 8, 3, 3, device=device), -1.0, r"clamp > 0"),
        (v, torch.randn(2, 8, 3, 3, device=device), float("nan"), r"clamp > 0"),
        (torch.randn(8, device=device), torch.randn(16, device=device), CLAMP, r"at least 2 dims"),
    ]


ERROR_IDS = ["raw-channels", "raw-N", "raw-S", "dtype-mismatch", "int-dtype", "clamp-0",
             "clamp-neg", "clamp-nan", "1d"]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(len(ERROR_IDS)), ids=ERROR_IDS)
def test_op_rejects_bad_inputs(device, case):
    v, raw, clamp, match = _error_cases(device)[case]
    with pytest.raises(RuntimeError, match=match):
        _run_ext(v, raw, clamp)


@pytest.mark.parametrize("case", range(len(ERROR_IDS)), ids=ERROR_IDS)
def test_eager_backend_rejects_bad_inputs_alike(case):
    v, raw, clamp, match = _error_cases("cpu")[case]
    with pytest.raises(RuntimeError, match=match):
        ops.affine_coupling_inverse(v, raw, clamp, backend="eager")


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
def test_op_rejects_mixed_devices():
    v, raw = torch.randn(2, 4, device="cuda"), torch.randn(2, 8)
    with pytest.raises(RuntimeError, match=r"one device, got v on cuda:0 and raw on cpu"):
        _run_ext(v, raw)


@needs_ext
def test_cpu_kernel_names_unsupported_dtype():
    v, raw = torch.randn(2, 4).half(), torch.randn(2, 8).half()
    with pytest.raises(RuntimeError, match=r"CPU kernel supports float32 and float64, got Half"):
        _run_ext(v, raw)
    with pytest.raises(RuntimeError, match=r"cpu kernel takes"):
        ops.affine_coupling_inverse(v, raw, CLAMP, backend="ext")
    # auto takes the reference instead
    assert ops.affine_coupling_inverse_backend(v, raw, "auto") == "eager"
    assert ops.affine_coupling_inverse(v, raw, CLAMP).dtype == torch.float16


# --------------------------------------------------------------------------- tracing


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    op = torch.ops.s2vc.affine_coupling_inverse.default
    for shapes in [((3, 7), (3, 14)), ((2, 3, 5, 4), (2, 6, 5, 4))]:
        v, raw = _inputs(*shapes, device=device, key=("opcheck",))
        torch.library.opcheck(op, (v, raw, CLAMP))
    # non-contiguous inputs: the fake kernel must report the real (contiguous) output strides
    v = torch.randn(3, 2, 5, 4, device=device).transpose(0, 1)
    torch.library.opcheck(op, (v, torch.randn(2, 6, 5, 4, device=device), CLAMP))


@needs_ext
def test_torch_compile_fullgraph():
    def step(v, raw):
        # the op itself, and the typed wrapper (its backend choice must trace without a break)
        u = torch.ops.s2vc.affine_coupling_inverse(v * 2, raw, CLAMP)
        return ops.affine_coupling_inverse(u, raw, CLAMP, backend="auto") + 1

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    v, raw = _inputs((2, 3, 4, 4), (2, 6, 4, 4), key=("compile",))
    torch.testing.assert_close(compiled(v, raw), step(v, raw))


@needs_ext
def test_torch_export():
    class Inverse(torch.nn.Module):
        def forward(self, v, raw):
            return ops.affine_coupling_inverse(v, raw, CLAMP, backend="ext")

    v, raw = _inputs((2, 3, 4, 4), (2, 6, 4, 4), key=("export",))
    exported = torch.export.export(Inverse(), (v, raw))
    targets = [n.target for n in exported.graph.nodes if n.op == "call_function"]
    assert torch.ops.s2vc.affine_coupling_inverse.default in targets
    torch.testing.assert_close(exported.module()(v, raw), _run_ext(v, raw))


# --------------------------------------------------------------------------- backend switch


@needs_ext
def test_auto_takes_ext_on_cpu_and_eager_when_grad_needed():
    v, raw = _inputs((2, 3), (2, 6), key=("auto",))
    assert ops.affine_coupling_inverse_backend(v, raw, "auto") == "ext"
    v.requires_grad_(True)
    assert ops.affine_coupling_inverse_backend(v, raw, "auto") == "eager"
    ops.affine_coupling_inverse(v, raw, CLAMP).sum().backward()  # via the reference
    assert v.grad is not None
    with pytest.raises(RuntimeError, match=r"inference-only"):
        ops.affine_coupling_inverse(v, raw, CLAMP, backend="ext")
    with torch.no_grad():
        assert ops.affine_coupling_inverse_backend(v, raw, "auto") == "ext"


def test_ext_backend_raises_when_extension_missing(monkeypatch):
    monkeypatch.setattr(ext, "EXT_AVAILABLE", False)
    monkeypatch.setattr(ext, "EXT_ERROR", "s2vc._C could not be loaded (ImportError: test)")
    v, raw = _inputs((2, 3), (2, 6), key=("missing",))
    with pytest.raises(RuntimeError, match=r"needs the compiled extension s2vc\._C.*ImportError: "
                                           r"test"):
        ops.affine_coupling_inverse(v, raw, CLAMP, backend="ext")
    # auto falls back to the reference, bit for bit
    assert ops.affine_coupling_inverse_backend(v, raw, "auto") == "eager"
    assert torch.equal(ops.affine_coupling_inverse(v, raw, CLAMP),
                       ops.affine_coupling_inverse_reference(v, raw, CLAMP))


def test_unknown_backend():
    v, raw = torch.randn(2, 3), torch.randn(2, 6)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        ops.affine_coupling_inverse(v, raw, CLAMP, backend="fast")


def test_reference_inverts_the_forward_coupling():
    # the reference really is the inverse of v = u * exp(g(s)) + t
    v_shape, raw_shape = (2, 3, 4, 5), (2, 6, 4, 5)
    u, raw = _inputs(v_shape, raw_shape, dtype=torch.float64, key=("roundtrip",))
    s, t = raw[:, :3], raw[:, 3:]
    v = u * torch.exp(ops.soft_clamp(s, CLAMP)) + t
    torch.testing.assert_close(ops.affine_coupling_inverse_reference(v, raw, CLAMP), u)


# --------------------------------------------------------------------------- the _out variant
# affine_coupling_inverse_out(v, raw, clamp, out): u written into out, where v, raw and out may
# each be a channel slice of a larger (N, C, *S) tensor (every sample contiguous, any batch
# stride): how the flow decoder assembles its output without a torch.cat.


def _run_out(v, raw, out, clamp=CLAMP):
    return torch.ops.s2vc.affine_coupling_inverse_out(v, raw, clamp, out)


def _sliced(v_shape, dtype, device, key):
    """v, raw as channel slices of one (N, 3n + 1, *S) tensor, and a (N, 2n + 1, *S) buffer
    whose channels 1..n+1 are out: none of the three is contiguous when N > 1."""
    g = _gen(v_shape, str(dtype), device, *key)
    N, n, *S = v_shape
    src = torch.randn(N, 3 * n + 1, *S, generator=g, dtype=torch.float64)
    src[:, 1 + n:] *= 3  # raw in atan's saturating range, as _inputs does
    src = src.to(device=device, dtype=dtype)
    buf = torch.randn(N, 2 * n + 1, *S, generator=g).to(device=device, dtype=dtype)
    return src[:, 1:1 + n], src[:, 1 + n:], buf, buf[:, 1:1 + n]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shapes", SHAPES, ids=SHAPE_IDS)
def test_out_writes_channel_slices(device, dtype, shapes):
    v, raw, buf, out = _sliced(shapes[0], dtype, device, key=("out",))
    if shapes[0][0] > 1:
        assert not (v.is_contiguous() or raw.is_contiguous() or out.is_contiguous())
    before = buf.clone()
    assert _run_out(v, raw, out) is None
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out, ops.affine_coupling_inverse_reference(v, raw, CLAMP),
                               rtol=rtol, atol=atol)
    # the channels around the slice are untouched, and the functional op agrees bit for bit
    n = v.shape[1]
    assert torch.equal(buf[:, :1], before[:, :1]) and torch.equal(buf[:, 1 + n:], before[:, 1 + n:])
    assert torch.equal(out, _run_ext(v, raw))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_out_next_to_v_in_one_buffer(device):
    # the decoder's layout: u written into the channels beside v of one (N, 2n, H, W) tensor
    g = _gen("beside", device)
    buf = torch.randn(3, 8, 5, 6, generator=g).to(device)
    raw = (3 * torch.randn(3, 8, 5, 6, generator=g)).to(device)
    v = buf[:, 4:]
    expected = ops.affine_coupling_inverse_reference(v, raw, CLAMP)
    _run_out(v, raw, buf[:, :4])
    assert torch.equal(buf[:, :4], _run_ext(v, raw))
    torch.testing.assert_close(buf[:, :4], expected, rtol=1e-5, atol=1e-6)


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_out_half_types_cuda(dtype):
    v, raw, _, out = _sliced((2, 6, 33, 31), dtype, "cuda", key=("out-half",))
    _run_out(v, raw, out)
    assert torch.equal(out, _run_ext(v, raw))


def _out_error_cases(device):
    g = _gen("out-errors", device)
    buf = torch.randn(2, 9, 3, 4, generator=g).to(device)
    v, raw = buf[:, :3], torch.randn(2, 6, 3, 4, generator=g).to(device)
    out = torch.empty(2, 3, 3, 4, device=device)
    wide = torch.empty(2, 6, 3, 4, device=device)
    return {
        "out-shape": ((v, raw, torch.empty(2, 3, 3, 5, device=device)), r"out of v's shape"),
        "out-dtype": ((v, raw, out.double()), r"out of v's dtype Float, got Double"),
        "out-strided": ((v, raw, wide[:, ::2]), r"expected out with each sample contiguous"),
        "out-transposed": ((v, raw, torch.empty(2, 3, 4, 3, device=device).transpose(2, 3)),
                           r"expected out with each sample contiguous"),
        "out-channels-last": ((v, raw, out.contiguous(memory_format=torch.channels_last)),
                              r"expected out with each sample contiguous"),
        "v-strided": ((buf[:, ::3], raw, out), r"expected v with each sample contiguous"),
        "raw-transposed": ((v, raw.transpose(2, 3).contiguous().transpose(2, 3), out),
                           r"expected raw with each sample contiguous.*strides"),
        "out-expanded": ((v, raw, torch.empty(1, 3, 3, 4, device=device).expand(2, 3, 3, 4)),
                         r"out's samples not to overlap"),
        "out-is-v": ((v, raw, v), r"out shares memory with v"),
        "out-overlaps-v": ((v, raw, buf[:, 2:5]), r"out shares memory with v"),
        "out-in-raw": ((v, raw, raw[:, 3:]), r"out shares memory with raw"),
        "raw-channels": ((v, raw[:, :4], out), r"2n = 6 channels"),
    }


OUT_ERROR_IDS = list(_out_error_cases("cpu"))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", OUT_ERROR_IDS)
def test_out_rejects_bad_layouts(device, case):
    args, match = _out_error_cases(device)[case]
    with pytest.raises(RuntimeError, match=match):
        _run_out(*args)


@needs_ext
def test_out_disjoint_slices_of_one_tensor_are_accepted():
    # channel slices of one tensor interleave in memory without sharing an element
    buf = torch.randn(4, 12, 2, 3)
    v, raw, out = buf[:, 0:2], buf[:, 2:6], buf[:, 6:8]
    expected = ops.affine_coupling_inverse_reference(v, raw, CLAMP)
    _run_out(v, raw, out)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@needs_ext
@pytest.mark.skipif(_CUDA_SKIP is not None, reason=_CUDA_SKIP or "")
def test_out_rejects_mixed_devices():
    v, raw = torch.randn(2, 4, device="cuda"), torch.randn(2, 8, device="cuda")
    with pytest.raises(RuntimeError, match=r"out on v's device cuda:0, got cpu"):
        _run_out(v, raw, torch.empty(2, 4))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_out_opcheck(device):
    op = torch.ops.s2vc.affine_coupling_inverse_out.default
    v, raw, _, out = _sliced((2, 3, 5, 4), torch.float32, device, key=("opcheck-out",))
    torch.library.opcheck(op, (v, raw, CLAMP, out))
    v, raw = _inputs((3, 7), (3, 14), device=device, key=("opcheck-out-fc",))
    torch.library.opcheck(op, (v, raw, CLAMP, torch.empty(3, 7, device=device)))


@needs_ext
def test_out_torch_compile_fullgraph():
    def decode(v, raw):
        # u into the first half of a fresh buffer, v copied into the second
        n = v.shape[1]
        x = v.new_empty(v.shape[0], 2 * n, *v.shape[2:])
        torch.ops.s2vc.affine_coupling_inverse_out(v, raw, CLAMP, x[:, :n])
        x[:, n:] = v
        return x

    compiled = torch.compile(decode, fullgraph=True, dynamic=False)
    v, raw = _inputs((2, 3, 4, 4), (2, 6, 4, 4), key=("compile-out",))
    got, want = compiled(v, raw), decode(v, raw)
    assert torch.equal(got, want)
    assert torch.equal(want[:, :3], _run_ext(v, raw))
