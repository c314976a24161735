"""Run an exported generator with ONNX Runtime, torch tensors in and out.

    gen = OnnxRuntimeGenerator("gen.onnx", flow, alpha=flow.meta["alpha"], strategy="zero")
    out, mask = gen(video)        # video float (B, 3, T, H, W) in [0, 1]; out same shape, mask bool (B, D)

Inputs and outputs stay torch tensors: IO binding hands ONNX Runtime the tensors' memory
(``data_ptr``) and the outputs are torch tensors allocated here, so nothing goes through numpy.
CPU tensors run on CPUExecutionProvider; CUDA tensors on CUDAExecutionProvider (onnxruntime-gpu),
which must then be what the session really got: ONNX Runtime falls back to the CPU quietly when
the CUDA provider's libraries do not load, and the error here names the missing library.
On CUDA the session runs on the caller's current stream (``user_compute_stream``; one session per
stream) and returns without synchronising: the outputs are ready for what the caller enqueues next
on that stream, as with a torch op, and nothing waits on the host.
An fp16 model takes and returns half tensors: a float32 video is cast to half first (one copy).

This is runtime code: it reads the model's metadata with ``exported_meta`` and never imports the
exporter (``s2vc.export``).
"""
from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .exported_meta import (
    TORCH_DTYPES,
    check_generator_inputs,
    check_metadata,
    draw_strategy_inputs,
    read_onnx_metadata,
)
from .extras import require

log = logging.getLogger("s2vc")

_NP_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.bool: np.bool_}
_CUDA_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# ONNX Runtime's run option that skips the providers' synchronisation with the host after a run
_NO_SYNC = "disable_synchronize_execution_providers"


def _import_onnxruntime():
    # [export] brings onnxruntime (CPU), [gpu] onnxruntime-gpu (CUDA)
    return require("onnxruntime", "the onnxruntime backend")


def cuda_provider_load_error(ort) -> str:
    """Why ONNX Runtime's CUDA provider library does not load here (the dynamic loader's message
    names the missing dependency, e.g. ``libcudnn.so.9``), or what to install when it is absent."""
    capi = os.path.join(os.path.dirname(ort.__file__), "capi")
    lib = os.path.join(capi, "libonnxruntime_providers_cuda.so")
    if not os.path.isfile(lib):
        return f"this onnxruntime ({ort.__version__}) has no CUDA provider: pip install onnxruntime-gpu"
    try:
        ctypes.CDLL(lib)
    except OSError as exc:
        return f"its library does not load: {exc}"
    return "its library loads (a session that still falls back to the CPU: see ONNX Runtime's log)"


def _with_stream(provider, device: torch.device):
    """A CUDA provider entry with the device and the caller's current stream filled in (options
    the caller gave win); other providers as they are."""
    name, options = (provider, {}) if isinstance(provider, str) else (provider[0], dict(provider[1]))
    if name not in _CUDA_PROVIDERS:
        return provider
    options.setdefault("device_id", device.index or 0)
    options.setdefault("user_compute_stream", str(torch.cuda.current_stream(device).cuda_stream))
    return name, options


class OnnxRuntimeGenerator:
    """``out, mask = gen(video, noise=None, order=None)`` with an ONNX generator export.

    model_path: an ONNX file from ``s2vc.export.onnx_export.export_generator_onnx``. flow, alpha,
    strategy: what the caller expects; each given one is checked against the model's metadata
    (flow by weight hash) and a mismatch raises ``MetadataMismatchError`` naming both values.
    providers: ONNX Runtime execution providers (names or (name, options) pairs); None picks per
    input device: CUDAExecutionProvider for CUDA tensors when ONNX Runtime has it, else
    CPUExecutionProvider. (TensorrtExecutionProvider is not picked by default: onnxruntime-gpu
    lists it even where TensorRT's libraries are missing, and it builds an engine on first use;
    pass it in ``providers`` to use it, or use the ``tensorrt`` backend.)
    session_options: an ``onnxruntime.SessionOptions``.
    """

    def __init__(self, model_path: str | Path, flow=None, *, alpha: float | None = None,
                 strategy: str | None = None, providers: Sequence | None = None, session_options=None):
        self.ort = _import_onnxruntime()
        self.model_path = Path(model_path)
        self.meta = read_onnx_metadata(self.model_path)
        check_metadata(self.meta, flow, alpha, strategy, source=str(self.model_path))
        self.strategy = self.meta["strategy"]
        self.alpha = self.meta["alpha"]
        self.dtype = TORCH_DTYPES[self.meta["precision"]]
        self.providers = list(providers) if providers is not None else None
        self.session_options = session_options
        self._sessions: dict[tuple[str, int | None], object] = {}   # (device, CUDA stream) -> session

    # -- sessions ---------------------------------------------------------------------------------
    def _providers_for(self, device: torch.device) -> list:
        available = self.ort.get_available_providers()
        if self.providers is not None:
            names = [p if isinstance(p, str) else p[0] for p in self.providers]
            if device.type == "cuda" and not any(n in _CUDA_PROVIDERS for n in names):
                raise RuntimeError(f"the video is on {device} but the providers given ({names}) have no CUDA "
                                   "one: add CUDAExecutionProvider or move the video to the CPU")
            return [_with_stream(p, device) for p in self.providers] if device.type == "cuda" else self.providers
        if device.type == "cpu":
            return ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(f"the video is on {device} but this ONNX Runtime has no CUDAExecutionProvider "
                                   f"(available: {available}): pip install onnxruntime-gpu, or move the video "
                                   "to the CPU")
            return [_with_stream("CUDAExecutionProvider", device), "CPUExecutionProvider"]
        raise RuntimeError(f"the onnxruntime backend runs CPU and CUDA tensors, got one on {device}")

    def session(self, device: torch.device | str = "cpu"):
        """The ``onnxruntime.InferenceSession`` used for inputs on ``device`` (made on first use;
        on CUDA one per device and current stream, which its kernels run on)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = (str(device), torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else None)
        if key not in self._sessions:
            providers = self._providers_for(device)
            options = self.session_options
            if options is None:
                options = self.ort.SessionOptions()
                options.log_severity_level = 3          # errors only: fp16 CPU casts are logged as warnings
            session = self.ort.InferenceSession(str(self.model_path), sess_options=options, providers=providers)
            got = session.get_providers()
            if device.type == "cuda" and not any(n in got for n in _CUDA_PROVIDERS):
                raise RuntimeError(f"the video is on {device} but ONNX Runtime fell back to {got}: the CUDA "
                                   f"provider did not start ({cuda_provider_load_error(self.ort)})")
            self._sessions[key] = session
            log.info("OnnxRuntimeGenerator: %s runs on %s", self.model_path.name, got)
        return self._sessions[key]

    def _on_caller_stream(self, session, device: torch.device) -> bool:
        """Whether the session's CUDA provider runs on the caller's current stream (then ordering
        needs no synchronisation)."""
        stream = str(torch.cuda.current_stream(device).cuda_stream)
        options = session.get_provider_options()
        return any(options.get(n, {}).get("user_compute_stream") == stream for n in _CUDA_PROVIDERS)

    # -- running ----------------------------------------------------------------------------------
    @staticmethod
    def _where(t: torch.Tensor) -> tuple[str, int]:
        return ("cuda", t.device.index or 0) if t.device.type == "cuda" else ("cpu", 0)

    def _bind_input(self, binding, name: str, t: torch.Tensor) -> None:
        kind, index = self._where(t)
        binding.bind_input(name, kind, index, _NP_DTYPES[t.dtype], tuple(t.shape), t.data_ptr())

    def _bind_output(self, binding, name: str, t: torch.Tensor) -> None:
        kind, index = self._where(t)
        binding.bind_output(name, kind, index, _NP_DTYPES[t.dtype], tuple(t.shape), t.data_ptr())

    def __call__(self, video: torch.Tensor, noise: torch.Tensor | None = None, order: torch.Tensor | None = None,
                 *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """video: float (B, C, T, H, W) in [0, 1] with the model's (H, W); noise float (B, D) for
        "noise", order int64 (B, T, D) for "shuffle_clip": drawn from ``generator`` as the eager
        reference draws them when not given. Returns out (B, C, T, H, W) in the model's precision
        (half for fp16 models) and mask bool (B, D), on the video's device."""
        if isinstance(video, torch.Tensor) and video.dim() == 5 and noise is None and order is None:
            b, _, t = video.shape[:3]
            noise, order = draw_strategy_inputs(self.strategy, b, t, self.meta["flow_dims"],
                                                device=video.device, generator=generator)
        check_generator_inputs(self.meta, video, noise, order, source=str(self.model_path))
        session = self.session(video.device)
        # ORT reads the buffers as they are: contiguous, in the graph's dtype, on one device
        video = video.to(self.dtype).contiguous()
        inputs = {"video": video}
        if noise is not None:
            inputs["noise"] = noise.to(device=video.device, dtype=self.dtype).contiguous()
        if order is not None:
            inputs["order"] = order.to(device=video.device).contiguous()
        b = video.shape[0]
        out = torch.empty_like(video)
        mask = torch.empty(b, self.meta["flow_dims"], dtype=torch.bool, device=video.device)
        binding = session.io_binding()
        for name, t in inputs.items():
            self._bind_input(binding, name, t)
        self._bind_output(binding, "out", out)
        self._bind_output(binding, "mask", mask)
        run_options = None
        if video.is_cuda:
            if self._on_caller_stream(session, video.device):
                # ORT's kernels queue behind the caller's work on the same stream: no wait at either end
                run_options = self.ort.RunOptions()
                run_options.add_run_config_entry(_NO_SYNC, "1")
            else:
                # a provider on a stream of its own: the inputs must be written before it reads them
                torch.cuda.current_stream(video.device).synchronize()
        session.run_with_iobinding(binding, run_options)
        return out, mask
