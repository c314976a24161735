"""``OnnxRuntimeGenerator`` on the CPU, the CUDA provider it must really get, and (on a GPU) the
caller's stream with no host synchronisation. GPU tests skip with a reason elsewhere."""
from __future__ import annotations

import types

import pytest
import torch

from conftest import randomize_
from s2vc.engine import AdvFlow, FlowConfig
from s2vc.engine import runtime_onnx
from s2vc.engine.generator import MotionPreservingGenerator
from s2vc.engine.runtime_onnx import OnnxRuntimeGenerator

ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed")
pytest.importorskip("onnx", reason="onnx is not installed (the [export] extra: pip install -e \".[export]\")")     # the tests export their models first
H, W = 16, 8
HAS_CUDA_EP = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
NEEDS_CUDA_EP = pytest.mark.skipif(not HAS_CUDA_EP, reason="needs a GPU and onnxruntime-gpu's CUDAExecutionProvider")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    from s2vc.export.onnx_export import export_generator_onnx
    tiny = randomize_(AdvFlow(FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8,
                                         fc_hidden=8)), std=0.05, seed=2).eval()
    path = export_generator_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx", alpha=0.3, strategy="zero",
                                 height=H, width=W, exporter="torchscript")
    return tiny, path


def test_cpu_run_matches_eager(tiny_export):
    tiny, path = tiny_export
    gen = OnnxRuntimeGenerator(path, tiny, alpha=0.3, strategy="zero")
    video = torch.rand(2, 3, 5, H, W, generator=torch.Generator().manual_seed(0))
    out, mask = gen(video)
    ref, stats = MotionPreservingGenerator(tiny, alpha=0.3, strategy="zero", backend="eager")(video)
    assert torch.equal(mask, stats.mask)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert list(gen._sessions) == [("cpu", None)]
    assert gen.session("cpu").get_providers() == ["CPUExecutionProvider"]


def test_cpu_only_onnxruntime_names_what_is_missing():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    assert "pip install onnxruntime-gpu" in runtime_onnx.cuda_provider_load_error(ort)


def test_a_quiet_fallback_to_the_cpu_is_an_error(tiny_export, monkeypatch):
    """ONNX Runtime drops the CUDA provider when its libraries do not load and runs on the CPU:
    the session is refused with one line naming why, and it was asked for the caller's stream."""
    tiny, path = tiny_export
    asked = {}

    class FallbackSession:
        def __init__(self, model, sess_options=None, providers=None):
            asked["providers"] = providers

        def get_providers(self):
            return ["CPUExecutionProvider"]

    fake_ort = types.SimpleNamespace(
        InferenceSession=FallbackSession, SessionOptions=ort.SessionOptions, __version__=ort.__version__,
        __file__=ort.__file__, get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=4242))
    gen = OnnxRuntimeGenerator(path, tiny, alpha=0.3, strategy="zero")
    gen.ort = fake_ort
    with pytest.raises(RuntimeError, match=r"ONNX Runtime fell back to \['CPUExecutionProvider'\]: the CUDA "
                                           r"provider did not start \(.+\)"):
        gen.session(torch.device("cuda", 0))
    assert asked["providers"] == [("CUDAExecutionProvider", {"device_id": 0, "user_compute_stream": "4242"}),
                                  "CPUExecutionProvider"]


@NEEDS_CUDA_EP
def test_cuda_runs_on_the_callers_stream(tiny_export):
    tiny, path = tiny_export
    gen = OnnxRuntimeGenerator(path, tiny, alpha=0.3, strategy="zero")
    eager = MotionPreservingGenerator(tiny.cuda(), alpha=0.3, strategy="zero", backend="eager")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # written on the stream just before the call: ORT must queue behind it, not race it
        video = torch.rand(4, 3, 9, H, W, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        out, mask = gen(video)
        ref, stats = eager(video)
        session = gen.session(video.device)
        assert gen._on_caller_stream(session, video.device)
    stream.synchronize()
    assert torch.equal(mask, stats.mask)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert "CUDAExecutionProvider" in session.get_providers()
