"""``s2vc info``: one screen that answers on any machine, and says why CUDA kernels are missing."""
from __future__ import annotations

import types

import pytest
import torch

from s2vc.cli import main
from s2vc.engine import environment_report as report
from s2vc.engine import extension


def test_info_answers_here(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"torch: {torch.__version__}" in out
    assert any(line.startswith("s2vc._C: ") for line in lines)
    for dtype in ("float32", "float16", "bfloat16"):
        assert any(line.startswith(f"auto on cpu {dtype}: ") for line in lines), dtype
    assert any(line.startswith("onnxruntime: ") for line in lines)
    assert any(line.startswith("tensorrt: ") for line in lines)
    if not torch.cuda.is_available():
        assert any(line.startswith("gpu: none: ") for line in lines)
    assert len(lines) <= 40, "one screen"


def test_info_says_why_no_cuda_kernels_were_built(monkeypatch):
    record = {"built": True, "torch": torch.__version__, "torch_cuda": "13.0", "cuda_kernels": False,
              "cuda_reason": "no CUDA toolkit found (a folder with bin/nvcc and include/cuda_runtime.h)"}
    monkeypatch.setattr(extension, "BUILD_INFO", record)
    monkeypatch.setattr(extension, "_KERNELS", {(op, "cpu"): True for op in extension.OP_NAMES})
    monkeypatch.setattr(extension, "EXT_AVAILABLE", True)
    lines = report.extension_lines()
    assert "  built without CUDA kernels: no CUDA toolkit found" in "\n".join(lines)
    assert "  temporal_std_mask: cpu [float32, float64]" in lines
    # what a CUDA tensor gets (a stand-in: no GPU needed): the reason from the build record
    cuda_tensor = types.SimpleNamespace(device=torch.device("cuda"), dtype=torch.float32, requires_grad=False)
    why = extension.ext_unusable_reason("temporal_std_mask", cuda_tensor)
    assert "built without CUDA kernels: no CUDA toolkit found" in why and "docs/INSTALL.md" in why
    monkeypatch.setattr(extension, "_KERNELS", {})
    assert report.auto_choice(torch.device("cpu"), torch.float32).startswith("eager (s2vc._C has no cpu kernel")


def test_auto_choice_names_a_missing_extension(monkeypatch):
    monkeypatch.setattr(extension, "EXT_AVAILABLE", False)
    monkeypatch.setattr(extension, "EXT_ERROR", "s2vc._C is not built; rebuild it")
    assert report.auto_choice(torch.device("cpu"), torch.float32) == (
        "eager (affine_coupling_inverse needs the compiled extension s2vc._C, which is not loaded: "
        "s2vc._C is not built; rebuild it)")
    assert "s2vc._C: not loaded: s2vc._C is not built" in report.extension_lines()[0]


def test_info_says_whether_onnxruntimes_cuda_provider_loads(monkeypatch):
    """On a GPU machine the report tries the CUDA provider's library: listed is not loadable."""
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    lines = report.runtime_lines()
    assert lines[0].startswith(f"onnxruntime: {ort.__version__}, providers [")
    provider = [line for line in lines if line.startswith("  CUDA provider: ")]
    assert len(provider) == 1
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "pip install onnxruntime-gpu" in provider[0]
