"""What this machine can run, on one screen, for bug reports (``s2vc info``).

    lines = environment_lines()          # list of "name: value" strings, no GPU work beyond probes

Torch and CUDA versions, the GPUs and their compute capability, the compiled extension (loaded
or why not, the build record: which toolkit and arches, why no CUDA kernels were built), which
compiled kernels exist per op, device and dtype, ONNX Runtime's providers, TensorRT's version,
and the backend "auto" picks per device and dtype with the reason when it is the eager one.
Reading it never fails: a part that cannot be read says why.
"""
from __future__ import annotations

import importlib
import platform
import sys

import torch

from . import extension

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# the compiled ops the generator's ext path runs (MotionPreservingGenerator._ext_ops)
GENERATOR_OPS = ("affine_coupling_inverse", "temporal_std_mask")


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _module_version(name: str) -> tuple[object | None, str]:
    """(the module or None, its version or why it is not importable)."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding, not a crash
        return None, f"not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    return module, str(getattr(module, "__version__", "unknown version"))


def torch_lines() -> list[str]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    lines = [f"python: {sys.version.split()[0]} ({platform.platform()})",
             f"torch: {torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU build'}, cuDNN {cudnn})"]
    if not torch.cuda.is_available():
        why = "torch is a CPU build" if torch.version.cuda is None else "no GPU visible to torch (driver, CUDA_VISIBLE_DEVICES)"
        return lines + [f"gpu: none: {why}"]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        lines.append(f"gpu {i}: {props.name}, compute capability {props.major}.{props.minor}, "
                     f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs")
    lines.append(f"tf32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}")
    return lines


def extension_lines() -> list[str]:
    info = extension.BUILD_INFO or {}
    lines = [f"s2vc._C: {'loaded' if extension.EXT_AVAILABLE else 'not loaded: ' + str(extension.EXT_ERROR)}"]
    if info.get("built"):
        if info.get("cuda_kernels"):
            lines.append(f"  built with CUDA {info.get('toolkit_cuda')} kernels: machine code "
                         f"{info.get('cuda_sass')}, PTX {info.get('cuda_ptx')}")
        else:
            lines.append(f"  built without CUDA kernels: {info.get('cuda_reason', 'reason not recorded')}")
        lines.append(f"  built against torch {info.get('torch')} (CUDA {info.get('torch_cuda')})")
    for op in extension.OP_NAMES:
        kernels = []
        for device in ("cpu", "cuda"):
            if extension.ext_has_kernel(op, device):
                dtypes = ", ".join(_short(d) for d in extension.KERNEL_DTYPES.get((op, device), ()))
                kernels.append(f"{device} [{dtypes}]")
        lines.append(f"  {op}: {'; '.join(kernels) or 'no compiled kernel'}")
    return lines


def auto_choice(device: torch.device, dtype: torch.dtype) -> str:
    """"ext" or "eager (why)": what the generator's backend "auto" runs for an AdvFlow in
    ``dtype`` on ``device`` (the ``extension.ext_unusable_reason`` of each op it needs)."""
    probe = torch.empty(0, dtype=dtype, device=device)
    with torch.no_grad():
        why = next((r for r in (extension.ext_unusable_reason(op, probe) for op in GENERATOR_OPS)
                    if r is not None), None)
    return "ext" if why is None else f"eager ({why})"


def auto_lines(devices: list[torch.device]) -> list[str]:
    return [f"auto on {device.type} {_short(dtype)}: {auto_choice(device, dtype)}"
            for device in devices for dtype in DTYPES]


def runtime_lines() -> list[str]:
    ort, version = _module_version("onnxruntime")
    lines = [f"onnxruntime: {version}"]
    if ort is not None:
        providers = ort.get_available_providers()
        lines[0] += f", providers {providers}"
        if torch.cuda.is_available():
            # listed is not loadable: onnxruntime-gpu lists the provider even when cuDNN / cuBLAS of
            # its CUDA major are missing, then runs on the CPU
            from .runtime_onnx import cuda_provider_load_error
            lines.append(f"  CUDA provider: {cuda_provider_load_error(ort)}")
    _, trt = _module_version("tensorrt")
    lines.append(f"tensorrt: {trt}")
    return lines


def environment_lines(device: str | torch.device | None = None) -> list[str]:
    """The whole report. device: where to say what "auto" runs (default: cpu, and cuda when a
    GPU is visible)."""
    devices = ([torch.device(device)] if device is not None
               else [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else []))
    return torch_lines() + extension_lines() + auto_lines(devices) + runtime_lines()
