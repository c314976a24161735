"""MotionPreservingGenerator: static clips, a moving object, chunking, options, bad input."""
from __future__ import annotations

import pytest
import torch

from s2vc.engine import AdvFlow, FlowConfig, load_flow
from s2vc.engine.generator import MotionPreservingGenerator

from conftest import randomize_

SMALL = FlowConfig(resolution=16, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8, fc_hidden=16)


@pytest.fixture(scope="module")
def small_flow():
    return randomize_(AdvFlow(SMALL), std=0.05).eval()


@pytest.fixture(scope="module")
def default_flow():
    return load_flow()


def _textured(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w),
                                          mode="bilinear", align_corners=False)[0]
    return 0.15 + 0.7 * tex


def moving_square_clip(t=16, h=64, w=64, side=14, speed=3, seed=0):
    """A bright square moving right over a static textured background; returns (clip, path mask)."""
    bg = _textured(h, w, seed)
    clip = bg.unsqueeze(1).repeat(1, t, 1, 1).clone()
    path = torch.zeros(h, w, dtype=torch.bool)
    y0 = h // 2 - side // 2
    for i in range(t):
        x0 = 4 + speed * i
        clip[:, i, y0:y0 + side, x0:x0 + side] = torch.tensor([0.95, 0.9, 0.1])[:, None, None]
        path[y0:y0 + side, x0:x0 + side] = True
    return clip.unsqueeze(0), path


def test_static_clip_is_fully_suppressed(default_flow):
    frame = _textured(64, 64, 1)
    video = frame[None, :, None].repeat(2, 1, 8, 1, 1)            # (2, 3, 8, 64, 64), no motion
    gen = MotionPreservingGenerator(default_flow, alpha=default_flow.meta["alpha"])
    out, stats = gen(video)
    assert out.shape == video.shape
    assert torch.all(stats.mask) and torch.all(stats.preserved == 0)
    assert torch.all(out == out[:, :, :1])                          # every output frame identical
    assert (out - video).abs().max() > 0.01                         # and not just the input


def test_moving_object_keeps_latents_and_variation_on_its_path(default_flow):
    clip, path = moving_square_clip()
    gen = MotionPreservingGenerator(default_flow, alpha=default_flow.meta["alpha"])
    out, stats = gen(clip)
    _, static_stats = gen(clip[:, :, :1].repeat(1, 1, 16, 1, 1))
    assert stats.preserved.item() > static_stats.preserved.item() + 0.02
    # Measure: per-pixel temporal STD of the output (mean over channels), averaged on the square's
    # path and off it. The input varies only on the path; the flow's FC stage mixes latents over
    # the whole frame, so decoding spreads some variation onto the background, but the path stays
    # clearly ahead. Observed with the bundled flow at its calibrated alpha: path 0.098, background
    # 0.055 (ratio 1.79), preserved 12.3% vs 0% for the static clip.
    var = out[0].std(dim=1).mean(dim=0)                               # (H, W)
    ratio = var[path].mean() / var[~path].mean()
    assert ratio > 1.4, ratio.item()
    share = var[path].sum() / var.sum()
    assert share > 1.3 * path.float().mean(), share.item()


def test_chunking_does_not_change_the_result(small_flow):
    video = torch.rand(2, 3, 5, 20, 24)
    a, sa = MotionPreservingGenerator(small_flow, alpha=0.3, chunk_frames=256)(video)
    b, sb = MotionPreservingGenerator(small_flow, alpha=0.3, chunk_frames=3)(video)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(sa.mask, sb.mask)


@pytest.mark.parametrize("backend", ["eager", "auto"])
def test_the_cpus_default_chunk_gives_the_whole_batchs_result(default_flow, backend):
    """On the CPU the default chunk is 64 frames (the caches hold its activations: about twice
    as fast on a 256-frame key batch, BENCHMARKS.md); per-frame convolutions do not depend on the
    batch, so the keys are the ones 256-frame chunks make (on this build: bitwise), topk included."""
    from s2vc.engine.generator import CHUNK_FRAMES, CPU_CHUNK_FRAMES
    video = torch.rand(10, 3, 16, 40, 36, generator=torch.Generator().manual_seed(5))      # 160 frames
    gen = MotionPreservingGenerator(default_flow, strategy="topk", seed=2, backend=backend, validate=False)
    assert gen.chunk_for("cpu") == CPU_CHUNK_FRAMES == 64 and gen.chunk_for("cuda") == CHUNK_FRAMES == 256
    whole = MotionPreservingGenerator(default_flow, strategy="topk", seed=2, backend=backend, validate=False,
                                      chunk_frames=256)
    (a, sa), (b, sb) = gen(video), whole(video)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert torch.equal(sa.mask, sb.mask)
    with pytest.raises(ValueError, match="chunk_frames must be >= 1"):
        MotionPreservingGenerator(default_flow, chunk_frames=0)


def test_pipeline_matches_hand_written_reference(small_flow):
    """The generator computes DESIGN.md's data flow, written out here step by step."""
    video = torch.rand(1, 3, 4, 32, 32, dtype=torch.float64)
    flow = small_flow.double()
    try:
        out, stats = MotionPreservingGenerator(flow, alpha=0.3)(video)
        frames = video[0].transpose(0, 1)                               # (T, 3, H, W)
        low = torch.nn.functional.avg_pool2d(frames, 2)                 # 32 -> 16
        with torch.no_grad():
            z = flow.encode(low)
            mask = z.std(dim=0) < 0.3
            low_p = flow.decode(torch.where(mask, torch.zeros_like(z), z))
        expected = frames + (low_p - low).repeat_interleave(2, 2).repeat_interleave(2, 3)
        torch.testing.assert_close(out[0].transpose(0, 1), expected, rtol=1e-10, atol=1e-10)
        assert stats.preserved.item() == pytest.approx(1 - mask.double().mean().item(), abs=1e-6)
    finally:
        flow.float()


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_detail_dynamic_matches_hand_written_reference(small_flow, upsample):
    """detail='dynamic' = the paper's output minus the clip mean of the fine detail
    (frames - upsample(pool(frames))), in float64 on odd sizes (T = 2, frames 33 x 18 pooled to 16)."""
    video = torch.rand(2, 3, 2, 33, 18, dtype=torch.float64)
    flow = small_flow.double()
    try:
        keep, stats_keep = MotionPreservingGenerator(flow, alpha=0.3, upsample=upsample)(video)
        dyn, stats_dyn = MotionPreservingGenerator(flow, alpha=0.3, upsample=upsample, detail="dynamic")(video)
        frames = video.transpose(1, 2).flatten(0, 1)                      # (B T, 3, H, W)
        kw = {} if upsample == "nearest" else {"align_corners": False}
        fine = frames - torch.nn.functional.interpolate(torch.nn.functional.adaptive_avg_pool2d(frames, 16),
                                                        size=(33, 18), mode=upsample, **kw)
        static = fine.reshape(2, 2, 3, 33, 18).mean(dim=1).unsqueeze(2)  # (B, 3, 1, H, W)
        torch.testing.assert_close(dyn, keep - static, rtol=1e-10, atol=1e-10)
        assert torch.equal(stats_keep.mask, stats_dyn.mask)              # the latents are untouched
        # non-contiguous input: the same result
        wide = video.transpose(3, 4).contiguous().transpose(3, 4)
        again, _ = MotionPreservingGenerator(flow, alpha=0.3, upsample=upsample, detail="dynamic")(wide)
        torch.testing.assert_close(again, dyn, rtol=1e-12, atol=1e-12)
    finally:
        flow.float()


def test_detail_dynamic_removes_still_fine_texture_and_keeps_moving_detail(default_flow):
    """A still texture finer than the flow's resolution passes the paper's residual untouched;
    'dynamic' removes it, while the moving square's fine edges still change over time."""
    clip, path = moving_square_clip(t=8, h=64, w=64)
    g = torch.Generator().manual_seed(5)
    clip = (clip + 0.1 * (torch.rand(1, 3, 1, 64, 64, generator=g) - 0.5)).clamp(0, 1)   # still pixel noise
    alpha = default_flow.meta["alpha"]
    keep, _ = MotionPreservingGenerator(default_flow, alpha=alpha)(clip)
    dyn, _ = MotionPreservingGenerator(default_flow, alpha=alpha, detail="dynamic")(clip)

    def still_fine(x):       # the fine band's clip mean, off the square's path
        f = x[0].transpose(0, 1)
        f = f - torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(f, 2), scale_factor=2)
        return f.mean(dim=0).abs().mean(dim=0)[~path].mean()

    assert still_fine(keep) > 5 * still_fine(dyn)
    moving = (dyn[0, :, 1:] - dyn[0, :, :-1]).abs().mean(dim=(0, 1))
    assert moving[path].mean() > 3 * moving[~path].mean()


def test_options_bilinear_and_clamp(small_flow):
    video = torch.rand(1, 3, 4, 32, 32)
    near, _ = MotionPreservingGenerator(small_flow, alpha=0.3)(video)
    bil, _ = MotionPreservingGenerator(small_flow, alpha=0.3, upsample="bilinear")(video)
    cl, _ = MotionPreservingGenerator(small_flow, alpha=0.3, clamp=True)(video)
    assert not torch.allclose(near, bil)
    assert cl.min() >= 0 and cl.max() <= 1
    assert near.min() < 0 or near.max() > 1                           # the official default does not clamp


@pytest.mark.parametrize("video,exc,match", [
    (torch.rand(3, 4, 32, 32), ValueError, r"\(B, 3, T, H, W\)"),
    (torch.rand(1, 1, 4, 32, 32), ValueError, r"\(B, 3, T, H, W\)"),
    (torch.rand(1, 3, 1, 32, 32), ValueError, "T >= 2"),
    (torch.full((1, 3, 4, 32, 32), float("nan")), ValueError, "NaN"),
    (torch.rand(1, 3, 4, 32, 32) * 255, ValueError, r"\[0, 1\].*/255"),
    (torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8), TypeError, "floating point"),
    (torch.rand(1, 3, 4, 8, 8), ValueError, "smaller than the flow's 16x16"),
])
def test_bad_video(small_flow, video, exc, match):
    with pytest.raises(exc, match=match):
        MotionPreservingGenerator(small_flow, alpha=0.3)(video)


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=0.0), "alpha"), (dict(alpha=float("nan")), "alpha"), (dict(alpha=-1), "alpha"),
    (dict(strategy="mean"), "unknown suppression strategy"), (dict(backend="cuda"), "not available"),
    (dict(upsample="cubic"), "upsample"), (dict(detail="blur"), "detail must be one of"),
    (dict(detail="dynamic", backend="torchscript"), "exported graph of the paper's residual"),
])
def test_bad_settings(small_flow, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MotionPreservingGenerator(small_flow, **{"alpha": 0.5, **kwargs})


def test_tfd_keeps_the_most_varying_fifth_of_pixels():
    from s2vc.engine.tfd import tfd_generator
    clip, path = moving_square_clip(h=64, w=64)
    out, stats = tfd_generator(resolution=32)(clip)
    assert stats.preserved.item() == pytest.approx(0.2, abs=1 / 3072)
    # the static background is zeroed (black) at pooled resolution, the square's path survives
    low_out = torch.nn.functional.avg_pool2d(out[0].transpose(0, 1), 2)
    path_low = torch.nn.functional.avg_pool2d(path[None, None].float(), 2)[0, 0] == 1
    assert low_out[:, :, ~path_low].abs().mean() < 0.5 * low_out[:, :, path_low].abs().mean()


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device"))]


def _ext_loaded(device):
    from s2vc.engine import extension as _extension
    return all(_extension.ext_has_kernel(op, device) for op in ("temporal_std_mask", "affine_coupling_inverse"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["ext", "compile", "torchscript"])
@pytest.mark.parametrize("strategy", ["zero", "noise", "shuffle_clip"])
def test_backends_match_the_eager_reference(small_flow, backend, strategy, device):
    if backend == "ext" and not _ext_loaded(device):
        pytest.skip(f"s2vc._C has no {device} kernels")
    if backend == "compile" and strategy != "zero":
        pytest.skip("compile wraps the same flow; one strategy is enough (and keeps CI short)")
    flow = small_flow.to(device)
    try:
        # odd sizes: T = 3, 2 clips, frames 21 x 19 (pooled 16 x 16); alpha splits the latents
        video = torch.rand(2, 3, 3, 21, 19, device=device)
        ref_gen = MotionPreservingGenerator(flow, alpha=0.05, strategy=strategy, seed=3, backend="eager")
        gen = MotionPreservingGenerator(flow, alpha=0.05, strategy=strategy, seed=3, backend=backend)
        ref, ref_stats = ref_gen(video)
        out, stats = gen(video)
        assert gen.last_backend == backend
        assert 0.05 < ref_stats.preserved.mean() < 0.95
        flips = stats.mask != ref_stats.mask
        assert torch.all((ref_stats.z_std[flips] - 0.05).abs() < 1e-5)
        assert (stats.preserved - ref_stats.preserved).abs().max() < 0.01
        same = ~flips.any(dim=1)                       # clips whose masks agree exactly
        assert same.any(), "every clip has a flipped latent: nothing was compared"
        torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)
    finally:
        small_flow.cpu()


@pytest.mark.parametrize("device", DEVICES)
def test_ext_backend_with_dynamic_detail_matches_eager(small_flow, device):
    if not _ext_loaded(device):
        pytest.skip(f"s2vc._C has no {device} kernels")
    flow = small_flow.to(device)
    try:
        video = torch.rand(1, 3, 2, 17, 23, device=device)                 # T = 2, one clip, odd frame
        ref, rs = MotionPreservingGenerator(flow, alpha=0.05, backend="eager", detail="dynamic")(video)
        out, st = MotionPreservingGenerator(flow, alpha=0.05, backend="ext", detail="dynamic")(video)
        if torch.equal(rs.mask, st.mask):
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        else:                               # a latent on the threshold flipped: only its STD may differ
            assert torch.all((rs.z_std[rs.mask != st.mask] - 0.05).abs() < 1e-5)
    finally:
        small_flow.cpu()


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("strategy", ["zero", "noise", "shuffle_clip"])
def test_static_graph_matches_the_generator(default_flow, upsample, strategy):
    """GeneratorGraph (the form TorchScript/ONNX/TensorRT run) against the eager generator, with the
    same random inputs, at an odd frame size where pooling windows overlap (45 x 77 -> 32 x 32)."""
    from s2vc.engine.graph import GeneratorGraph
    alpha = default_flow.meta["alpha"]
    video = torch.rand(2, 3, 5, 45, 77)
    ref, st = MotionPreservingGenerator(default_flow, alpha=alpha, strategy=strategy, upsample=upsample, seed=4)(video)
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(2, 3072, generator=g) if strategy == "noise" else None
    order = torch.rand(2, 5, 3072, generator=g).argsort(dim=1) if strategy == "shuffle_clip" else None
    graph = GeneratorGraph(default_flow.prepare(), alpha, strategy, 45, 77, upsample=upsample)
    with torch.no_grad():
        out, mask = graph(video, noise, order)
        scripted_out, _ = torch.jit.script(graph)(video, noise, order)
    flips = mask != st.mask
    assert torch.all((st.z_std[flips] - alpha).abs() < 1e-5)
    same = ~flips.any(dim=1)
    assert same.any(), "every clip has a flipped latent: nothing was compared"
    torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scripted_out, out, rtol=1e-6, atol=1e-6)


def test_static_graph_refuses_unexportable_strategies(default_flow):
    from s2vc.engine.graph import GeneratorGraph
    for strategy in ("topk", "shuffle_frame"):
        with pytest.raises(ValueError, match="not exportable"):
            GeneratorGraph(default_flow.prepare(), 0.5, strategy, 64, 64)


@pytest.mark.parametrize("strategy", ["zero", "shuffle_clip"])
def test_onnxruntime_backend_matches_eager(small_flow, tmp_path, strategy):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (the [export] extra: pip install -e \".[export]\")")
    export_generator_onnx = pytest.importorskip("s2vc.export.onnx_export", reason="onnx is not installed (the [export] extra: pip install -e \".[export]\")").export_generator_onnx
    small_flow.cpu()
    path = export_generator_onnx(small_flow, tmp_path / "g.onnx", alpha=0.05, strategy=strategy, height=21,
                                 width=19, exporter="torchscript")
    video = torch.rand(2, 3, 3, 21, 19)
    ref, ref_stats = MotionPreservingGenerator(small_flow, alpha=0.05, strategy=strategy, seed=3)(video)
    gen = MotionPreservingGenerator(small_flow, alpha=0.05, strategy=strategy, seed=3, backend="onnxruntime",
                                    model=str(path))
    out, stats = gen(video)
    assert gen.last_backend == "onnxruntime"
    flips = stats.mask != ref_stats.mask
    assert torch.all((ref_stats.z_std[flips] - 0.05).abs() < 1e-5)
    same = ~flips.any(dim=1)
    assert same.any(), "every clip has a flipped latent: nothing was compared"
    torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="alpha"):
        MotionPreservingGenerator(small_flow, alpha=0.07, strategy=strategy, backend="onnxruntime", model=str(path))
    with pytest.raises(ValueError, match="model=PATH"):
        MotionPreservingGenerator(small_flow, alpha=0.05, backend="tensorrt")


def test_public_names_of_the_design():
    from s2vc.engine import MotionPreservingGenerator as G, load_flow as lf, temporal_std_mask as t  # noqa: F401
    import subprocess
    import sys
    # the engine runs where PyAV is absent (GPU images): import and run it with `av` blocked
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'av': raise ImportError('no PyAV here')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from s2vc.engine import load_flow, MotionPreservingGenerator, temporal_std_mask\n"
            "import torch\n"
            "out, st = MotionPreservingGenerator(load_flow(), alpha=0.7)(torch.rand(1, 3, 2, 32, 32))\n"
            "print('ok', tuple(out.shape))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok (1, 3, 2, 32, 32)" in res.stdout, res.stderr[-2000:]


# --------------------------------------------------------------------------- backend "auto": correct in every case


def test_auto_keeps_gradients_through_temporal_std_mask():
    """"auto" must not pick the inference-only compiled op for latents that require grad."""
    from s2vc.engine import temporal_std_mask
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(2, 5, 33, generator=g) * torch.linspace(0.1, 1.5, 33)).requires_grad_()
    z_p, mask = temporal_std_mask(z, 0.5, backend="auto")
    assert z_p.requires_grad and mask.any() and (~mask).any()
    (z_p ** 2).sum().backward()
    assert z.grad is not None
    expected = torch.where(mask.unsqueeze(1), 0.0, 2 * z.detach())   # d/dz of sum(z_p^2)
    torch.testing.assert_close(z.grad, expected)
    with torch.no_grad():                                           # without grad, auto may take the op
        ref, ref_mask = temporal_std_mask(z, 0.5, backend="eager")
        got, got_mask = temporal_std_mask(z, 0.5, backend="auto")
    assert torch.equal(got_mask, ref_mask) and torch.equal(got, ref)


def test_auto_keeps_gradients_through_the_coupling_inverse():
    from s2vc.engine import ops
    g = torch.Generator().manual_seed(1)
    v = torch.randn(2, 3, 5, 5, generator=g, requires_grad=True)
    raw = torch.randn(2, 6, 5, 5, generator=g, requires_grad=True)
    assert ops.affine_coupling_inverse_backend(v, raw, "auto") == "eager"
    ops.affine_coupling_inverse(v, raw, 1.5, backend="auto").sum().backward()
    assert v.grad is not None and raw.grad is not None


def test_ext_unusable_reason_names_what_is_missing():
    from s2vc.engine import extension
    if not extension.EXT_AVAILABLE:
        assert "not loaded" in extension.ext_unusable_reason("temporal_std_mask", torch.zeros(1))
        return
    assert extension.ext_unusable_reason("temporal_std_mask", torch.zeros(2, 3, 4)) is None
    assert "float16" in extension.ext_unusable_reason("temporal_std_mask", torch.zeros(2, 3, 4).half())
    assert "inference-only" in extension.ext_unusable_reason("temporal_std_mask",
                                                             torch.zeros(2, 3, 4, requires_grad=True))
    with torch.no_grad():
        assert extension.ext_usable("temporal_std_mask", torch.zeros(2, 3, 4, requires_grad=True))
    with pytest.raises(RuntimeError, match="float16"):
        from s2vc.engine import temporal_std_mask
        temporal_std_mask(torch.rand(1, 3, 4).half(), 0.5, backend="ext")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_auto_generator_runs_in_half_precision(small_flow, dtype):
    video = torch.rand(2, 3, 4, 20, 18, generator=torch.Generator().manual_seed(7))
    ref, ref_stats = MotionPreservingGenerator(small_flow, alpha=0.05, backend="eager")(video.to(dtype).float())
    gen = MotionPreservingGenerator(small_flow, alpha=0.05, backend="auto")
    out, stats = gen(video.to(dtype))
    assert out.dtype == dtype and out.shape == video.shape
    assert torch.isfinite(out.float()).all()
    # the flow runs in its own float32 on the (rounded) input: the outputs differ by at most one
    # rounding step of the half type (auto may run the compiled ops, equal to the reference ~1e-5)
    assert torch.equal(stats.mask, ref_stats.mask)
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=0, atol=torch.finfo(dtype).eps)


# -- no host synchronisation in a training-mode call (issue 25) -----------------------------------
_HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__")


def _count_host_reads(monkeypatch) -> list[str]:
    """Replace every way a tensor's value reaches Python with a counting stand-in: on CPU these
    are the calls that, on a GPU, would wait for the device."""
    seen: list[str] = []
    for name in _HOST_READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            seen.append(_name)
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return seen


@pytest.mark.parametrize("backend", ["eager", "auto"])
@pytest.mark.parametrize("strategy", ["zero", "noise", "shuffle_clip", "topk"])
def test_a_training_mode_call_reads_nothing_back(small_flow, monkeypatch, strategy, backend):
    """validate=False (what the key maker and the mirror pass): no .item()/.tolist()/bool() of a
    tensor in the whole call, and the stats stay tensors; validate=True does read (the checks)."""
    video = torch.rand(2, 3, 4, 20, 18, generator=torch.Generator().manual_seed(3))
    quiet = MotionPreservingGenerator(small_flow, alpha=0.05, strategy=strategy, backend=backend, seed=1,
                                      validate=False)
    checked = MotionPreservingGenerator(small_flow, alpha=0.05, strategy=strategy, backend=backend, seed=1)
    seen = _count_host_reads(monkeypatch)
    out, stats = quiet(video)
    assert seen == [], f"host reads in a training-mode call: {seen}"
    assert isinstance(stats.preserved, torch.Tensor) and stats.preserved.shape == (2,)
    ref, _ = checked(video)
    assert seen, "the counting stand-in sees the input checks' reads (else this test could not fail)"
    monkeypatch.undo()
    assert torch.equal(out, ref)


def test_the_key_maker_reads_nothing_back(small_flow, monkeypatch):
    """The s2vc arm's key maker returns the preserved fraction as a tensor, read by the loop."""
    from s2vc.training.pretrain.keys import KeyMaker
    maker = KeyMaker("s2vc", flow=small_flow, alpha=0.05, strategy="topk", seed=0)
    assert maker.gen.validate is False and maker.keep_fraction == pytest.approx(0.227)
    clip = torch.rand(2, 3, 4, 20, 18, generator=torch.Generator().manual_seed(4))
    seen = _count_host_reads(monkeypatch)
    key, preserved = maker(clip, {}, 3)
    assert seen == [] and isinstance(preserved, torch.Tensor) and preserved.dim() == 0
    monkeypatch.undo()
    assert 0.0 < float(preserved) < 1.0 and key.shape == clip.shape


@pytest.mark.parametrize("strategy", ["noise", "shuffle_clip"])
def test_a_random_key_depends_on_the_run_seed_and_the_step_only(small_flow, strategy):
    """A random strategy's key: the same for the same run seed and step (a resumed run redraws
    it), another for another step or another run seed, and the global streams do not move."""
    from s2vc.training.pretrain.keys import KeyMaker
    clip = torch.rand(2, 3, 4, 20, 18, generator=torch.Generator().manual_seed(4))

    def key(seed, step):
        return KeyMaker("s2vc", flow=small_flow, alpha=0.05, strategy=strategy, seed=seed)(clip, {}, step)[0]

    state = torch.get_rng_state()
    a = key(0, 5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, key(0, 5))
    assert not torch.equal(a, key(0, 6)) and not torch.equal(a, key(1, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.set_sync_debug_mode)")
@pytest.mark.parametrize("strategy", ["zero", "noise", "shuffle_clip", "topk"])
def test_a_training_mode_call_does_not_synchronise_on_cuda(small_flow, strategy):
    """On a GPU, the device itself says so: sync debug mode "error" raises on any synchronisation."""
    flow = AdvFlow(SMALL).cuda().eval()
    flow.load_state_dict(small_flow.state_dict())
    gen = MotionPreservingGenerator(flow, alpha=0.05, strategy=strategy, seed=1, validate=False)
    video = torch.rand(2, 3, 4, 20, 18, device="cuda")
    gen(video)                                     # the first call builds and caches what it needs
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, stats = gen(video)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.is_cuda and stats.preserved.is_cuda


def test_topk_without_keep_fraction_keeps_what_the_flows_alpha_was_calibrated_for(small_flow):
    """The generator resolves topk's fraction itself (every caller gets the same default)."""
    from types import SimpleNamespace

    from s2vc.engine.defaults import DEFAULT_PRESERVE
    assert MotionPreservingGenerator(small_flow, strategy="topk").keep_fraction == DEFAULT_PRESERVE
    calibrated = SimpleNamespace(config=small_flow.config, prepare=small_flow.prepare,
                                 meta={"alpha": 0.2, "alpha_calibration": {"preserve": 0.31}})
    gen = MotionPreservingGenerator(calibrated, strategy="topk", backend="eager")
    assert gen.keep_fraction == 0.31 and gen.alpha == 0.2
    assert MotionPreservingGenerator(calibrated, strategy="topk", keep_fraction=0.5).keep_fraction == 0.5
    assert MotionPreservingGenerator(small_flow, strategy="zero").keep_fraction is None
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"keep_fraction in \(0, 1\]"):
            MotionPreservingGenerator(small_flow, strategy="topk", keep_fraction=bad)


# -- reduced precision and compile modes (issue 25) -----------------------------------------------
def _psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    mse = (out.float() - ref.float()).pow(2).mean()
    return float(10 * torch.log10(1.0 / mse.clamp_min(1e-20)))


@pytest.mark.parametrize("backend", ["eager", "auto"])
def test_precision_fp32_is_the_reference_bit_for_bit(small_flow, backend):
    video = torch.rand(2, 3, 4, 21, 19, generator=torch.Generator().manual_seed(5))
    ref, ref_stats = MotionPreservingGenerator(small_flow, alpha=0.05, backend=backend, seed=1)(video)
    out, stats = MotionPreservingGenerator(small_flow, alpha=0.05, backend=backend, seed=1, precision="fp32")(video)
    assert torch.equal(out, ref) and torch.equal(stats.mask, ref_stats.mask)
    assert torch.equal(stats.z_std, ref_stats.z_std)


@pytest.mark.parametrize("backend", ["eager", "auto"])
def test_precision_bf16_on_cpu_agrees_with_fp32_on_the_bundled_flow(default_flow, backend):
    video = torch.cat([moving_square_clip(t=8, h=48, w=40, seed=s)[0] for s in (0, 1)])
    video[1] = video[1].flip(-1)                       # a second clip, moving the other way
    ref, ref_stats = MotionPreservingGenerator(default_flow, backend="eager")(video)
    gen = MotionPreservingGenerator(default_flow, backend=backend, precision="bf16")
    out, stats = gen(video)
    assert out.dtype == video.dtype == torch.float32 and out.shape == video.shape
    assert stats.z_std.dtype == torch.float32          # the STD and threshold ran in float
    agreement = (stats.mask == ref_stats.mask).float().mean().item()
    assert agreement >= 0.99, f"mask agreement {agreement:.4f}"
    assert _psnr(out, ref) >= 30.0
    assert not torch.equal(out, ref), "bf16 changed nothing: autocast did not run"


def test_encode_precision_bf16_runs_the_encoder_in_bf16(default_flow):
    """Asked for, the encoder runs in bf16 too: its latents move (the mask is decided on them,
    hence fp32 by default; BENCHMARKS.md has the agreement), the STD still in float."""
    video = moving_square_clip(t=8, h=48, w=40)[0]
    ref, ref_stats = MotionPreservingGenerator(default_flow, backend="eager")(video)
    out, stats = MotionPreservingGenerator(default_flow, backend="eager", precision="bf16",
                                           encode_precision="bf16")(video)
    assert stats.z_std.dtype == torch.float32 and out.dtype == torch.float32
    assert not torch.equal(stats.z_std, ref_stats.z_std)
    assert (stats.mask == ref_stats.mask).float().mean() >= 0.9
    assert _psnr(out, ref) >= 20.0


def test_precision_keeps_the_videos_dtype(small_flow):
    video = torch.rand(1, 3, 3, 17, 16, dtype=torch.float64)
    out, _ = MotionPreservingGenerator(small_flow.double(), alpha=0.05, backend="eager", precision="bf16")(video)
    small_flow.float()
    assert out.dtype == torch.float64


@pytest.mark.parametrize("kwargs", [{"precision": "fp16"}, {"encode_precision": "fp16"}])
def test_precision_fp16_on_cpu_is_refused_in_one_line(small_flow, kwargs):
    gen = MotionPreservingGenerator(small_flow, alpha=0.05, **kwargs)
    with pytest.raises(ValueError, match="precision 'fp16' runs on CUDA only") as info:
        gen(torch.rand(1, 3, 3, 16, 16))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int8"}, "precision must be one of"),
    ({"precision": "bf16", "backend": "torchscript"}, "runs the graph in the dtype"),
    ({"encode_precision": "half"}, "precision must be one of"),
    ({"compile_mode": "fast", "backend": "compile"}, "compile_mode must be one of"),
    ({"compile_mode": "default", "backend": "eager"}, "compile_mode 'default' is for backend 'compile'"),
])
def test_precision_and_compile_mode_bad_settings(small_flow, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MotionPreservingGenerator(small_flow, alpha=0.05, **kwargs)


@pytest.mark.parametrize("mode", [None, "default", "reduce-overhead", "max-autotune"])
def test_compile_mode_reaches_torch_compile(small_flow, monkeypatch, mode):
    seen = []

    def fake_compile(module, **kwargs):
        seen.append(kwargs)
        return module
    monkeypatch.setattr(torch, "compile", fake_compile)
    video = torch.rand(1, 3, 3, 16, 16)
    gen = MotionPreservingGenerator(small_flow, alpha=0.05, backend="compile", compile_mode=mode)
    out, _ = gen(video)
    assert [k["mode"] for k in seen] == [mode, mode]
    ref, _ = MotionPreservingGenerator(small_flow, alpha=0.05, backend="eager")(video)
    assert torch.equal(out, ref)          # the cloning wrapper (CUDA-graph modes) changes no value


@pytest.mark.parametrize("backend", ["eager", "ext", "compile"])
@pytest.mark.parametrize("strategy", ["zero", "noise", "topk"])
def test_channels_last_convolutions_match_the_contiguous_reference(small_flow, backend, strategy):
    """conv_layout "channels_last" changes the layout, not a value: the outputs agree with the
    NCHW reference to float rounding wherever the masks agree (a latent whose STD lies within
    rounding of the threshold may flip), on odd sizes and a non-contiguous video; the caller's
    flow keeps its layout, and "auto" keeps NCHW on the CPU (the study's numerics)."""
    if backend == "ext" and not _ext_loaded("cpu"):
        pytest.skip("s2vc._C has no cpu kernels")
    if backend == "compile" and strategy != "zero":
        pytest.skip("compile wraps the same flow; one strategy is enough (and keeps CI short)")
    video = torch.rand(2, 3, 5, 19, 23, generator=torch.Generator().manual_seed(4)).transpose(3, 4)
    assert not video.is_contiguous()
    kwargs = dict(alpha=0.05, strategy=strategy, seed=3, keep_fraction=0.3 if strategy == "topk" else None)
    ref_gen = MotionPreservingGenerator(small_flow, backend="eager", conv_layout="contiguous", **kwargs)
    auto = MotionPreservingGenerator(small_flow, backend=backend, **kwargs)
    gen = MotionPreservingGenerator(small_flow, backend=backend, conv_layout="channels_last", **kwargs)
    ref, ref_stats = ref_gen(video)
    out, stats = gen(video)
    auto(video)
    convs = [m for m in gen.flow.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    for module in (small_flow, auto.flow, ref_gen.flow):         # the caller's flow and NCHW generators
        assert all(m.weight.is_contiguous() for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert not auto.wants_channels_last("cpu") and gen.wants_channels_last("cpu")
    flips = stats.mask != ref_stats.mask
    assert flips.float().mean() <= 0.01
    same = ~flips.any(dim=1)
    assert same.any(), "every clip has a flipped latent: nothing was compared"
    torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)
    assert out.is_contiguous() and out.shape == video.shape
    with pytest.raises(ValueError, match="conv_layout must be one of"):
        MotionPreservingGenerator(small_flow, alpha=0.05, conv_layout="nhwc")


def test_compile_mode_default_matches_eager(small_flow):
    video = torch.rand(2, 3, 3, 21, 19, generator=torch.Generator().manual_seed(2))
    ref, ref_stats = MotionPreservingGenerator(small_flow, alpha=0.05, backend="eager")(video)
    out, stats = MotionPreservingGenerator(small_flow, alpha=0.05, backend="compile", compile_mode="default")(video)
    same = (stats.mask == ref_stats.mask).all(dim=1)
    assert same.any()
    torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)


def _cuda_copy(small_flow):
    flow = AdvFlow(SMALL).cuda().eval()                # a copy on the GPU
    flow.load_state_dict(small_flow.state_dict())
    return flow


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (fp16 autocast, channels_last)")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_on_cuda_with_channels_last(small_flow, precision):
    flow = _cuda_copy(small_flow)
    video = torch.rand(2, 3, 4, 21, 19, device="cuda", generator=torch.Generator("cuda").manual_seed(3))
    ref, ref_stats = MotionPreservingGenerator(flow, alpha=0.05, backend="eager")(video)
    gen = MotionPreservingGenerator(flow, alpha=0.05, backend="auto", precision=precision,
                                    encode_precision=precision)
    out, stats = gen(video)
    convs = [m for m in gen.flow.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (stats.mask == ref_stats.mask).float().mean() >= 0.9
    assert _psnr(out, ref) >= 20.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")
def test_compile_mode_reduce_overhead_on_cuda_keeps_each_calls_output(small_flow):
    flow = _cuda_copy(small_flow)
    gen = MotionPreservingGenerator(flow, alpha=0.05, backend="compile", compile_mode="reduce-overhead",
                                    chunk_frames=4, validate=False)
    eager = MotionPreservingGenerator(flow, alpha=0.05, backend="eager")
    videos = [torch.rand(2, 3, 4, 16, 16, device="cuda") for _ in range(4)]
    outs = [gen(v)[0] for v in videos]             # chunk_frames 4 < 8 frames: two replays per call
    for video, out in zip(videos, outs):           # earlier outputs must survive later replays
        ref, _ = eager(video)
        torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_float_video_on_cuda_equals_the_cpu():
    """The mirror converts its uint8 windows to float on the GPU: every level must come out as
    the CPU's k / 255 (CUDA's division by a Python scalar is x * (1/255), an ulp off on about
    half the levels), in both layouts."""
    video_io = pytest.importorskip("s2vc.engine.video_io")       # PyAV: carried as a wheel to a GPU machine
    levels = torch.arange(256, dtype=torch.uint8).repeat(3).view(1, 16, 16, 3)
    for frames in (levels, levels[None].expand(2, -1, -1, -1, -1)):
        on_gpu = video_io.to_float_video(frames.cuda())
        assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), video_io.to_float_video(frames))
