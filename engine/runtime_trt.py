"""Run a TensorRT engine of the generator with torch CUDA tensors as its buffers.

    gen = TensorRTGenerator("gen.engine", flow, alpha=flow.meta["alpha"], strategy="zero")
    out, mask = gen(video)        # video float CUDA (B, 3, T, H, W) in [0, 1]; mask bool (B, D)

The engine comes from ``python export/build_trt.py`` and its metadata (``gen.engine.json``) is
checked before anything runs: flow weight hash, alpha, strategy, frame size, TensorRT version and
GPU; the batch and frame counts of each call against the engine's optimisation profile.

TensorRT 10+ named-tensor API: ``set_input_shape`` / ``set_tensor_address`` for every IO tensor,
``execute_async_v3`` on a CUDA stream. The stream is the caller's current torch stream when it is
not the default one (TensorRT syncs extra on the legacy default stream), else a stream of our own
that first waits for the caller's stream and that the caller's stream then waits for, so work
queued after the call sees the results. No pycuda. This module never imports ``s2vc.export``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .exported_meta import (
    TORCH_DTYPES,
    MetadataMismatchError,
    check_generator_inputs,
    check_metadata,
    draw_strategy_inputs,
    read_engine_metadata,
)

log = logging.getLogger("s2vc")


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError("the tensorrt backend needs TensorRT, which is not installed: pip install tensorrt "
                           "(on a machine with an NVIDIA GPU and driver), then build an engine with "
                           "python export/build_trt.py") from exc
    return trt


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT64": torch.int64,
             "INT32": torch.int32, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    for name, torch_dtype in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return torch_dtype
    raise TypeError(f"TensorRT tensor type {dtype} has no torch equivalent here")


def check_tensorrt_build(meta: dict, tensorrt_version: str, compute_capability: str | None,
                         *, source: str = "the engine") -> None:
    """An engine runs only on the TensorRT version and GPU architecture it was built for."""
    if meta.get("tensorrt_version") != tensorrt_version:
        raise MetadataMismatchError(f"{source} was built with TensorRT {meta.get('tensorrt_version')} but TensorRT "
                                    f"{tensorrt_version} is installed: rebuild it with python export/build_trt.py")
    built = meta.get("compute_capability")
    if compute_capability is not None and built is not None and built != compute_capability:
        raise MetadataMismatchError(f"{source} was built for a GPU of compute capability {built} "
                                    f"({meta.get('gpu')}) but this GPU has {compute_capability}: rebuild it here")


def check_profile(meta: dict, batch: int, frames: int, *, source: str = "the engine") -> None:
    """Batch and frame counts inside the engine's optimisation profile (TensorRT would only log)."""
    shape = meta.get("profile", {}).get("video")
    if not shape:
        return
    (b_lo, t_lo), (b_hi, t_hi) = (shape["min"][0], shape["min"][2]), (shape["max"][0], shape["max"][2])
    if not (b_lo <= batch <= b_hi and t_lo <= frames <= t_hi):
        raise ValueError(f"{source} takes batches of {b_lo}..{b_hi} clips of {t_lo}..{t_hi} frames, got {batch} "
                         f"clips of {frames} frames: split the batch, or rebuild with wider --batch / --frames")


class TensorRTGenerator:
    """``out, mask = gen(video, noise=None, order=None)`` with a TensorRT engine of the generator.

    engine_path: from ``python export/build_trt.py``. flow, alpha, strategy: what the caller
    expects; each given one is checked against the engine's metadata (``MetadataMismatchError``
    naming both values). The engine's device is the current CUDA device when it is loaded.
    """

    def __init__(self, engine_path: str | Path, flow=None, *, alpha: float | None = None,
                 strategy: str | None = None):
        self.engine_path = Path(engine_path)
        self.meta = read_engine_metadata(self.engine_path)
        source = str(self.engine_path)
        check_metadata(self.meta, flow, alpha, strategy, source=source)
        trt = self.trt = _import_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs a CUDA GPU, and torch sees none")
        self.device = torch.device("cuda", torch.cuda.current_device())
        check_tensorrt_build(self.meta, trt.__version__, "%d.%d" % torch.cuda.get_device_capability(self.device),
                             source=source)
        self.strategy = self.meta["strategy"]
        self.dtype = TORCH_DTYPES[self.meta["precision"]]
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.engine_path} (built for another TensorRT "
                               "or GPU?): rebuild it with python export/build_trt.py")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        if sorted(self.inputs) != sorted(self.meta["inputs"]) or sorted(self.outputs) != sorted(self.meta["outputs"]):
            raise MetadataMismatchError(f"{source} has inputs {self.inputs} and outputs {self.outputs}, its metadata "
                                        f"says {self.meta['inputs']} and {self.meta['outputs']}")
        self.tensor_dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in self.names}
        self._stream: torch.cuda.Stream | None = None
        self._noted = False                 # said once that the batch served is not the profile's OPT

    def _note_batch(self, batch: int, source: str) -> None:
        """Say once when the batch served is not the one TensorRT chose its kernels for (the
        profile's OPT): the engine runs, possibly slower."""
        opt = (self.meta.get("profile", {}).get("video") or {}).get("opt", [None])[0]
        if opt is not None and batch != opt and not self._noted:
            self._noted = True
            log.info("%s was optimised for batches of %d clips, serving %d: rebuild with build_trt.py "
                     "--batch-size %d for kernels chosen for this batch", source, opt, batch, batch)

    def __call__(self, video: torch.Tensor, noise: torch.Tensor | None = None, order: torch.Tensor | None = None,
                 *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """video: float CUDA (B, C, T, H, W) in [0, 1] with the engine's (H, W); noise / order as
        for ``OnnxRuntimeGenerator`` (drawn from ``generator`` when not given). Returns out
        (B, C, T, H, W) in the engine's precision (a float32 video is cast to half for an fp16
        engine) and mask bool (B, D), on the engine's device."""
        if isinstance(video, torch.Tensor) and video.dim() == 5 and noise is None and order is None:
            b, _, t = video.shape[:3]
            noise, order = draw_strategy_inputs(self.strategy, b, t, self.meta["flow_dims"],
                                                device=video.device, generator=generator)
        source = str(self.engine_path)
        check_generator_inputs(self.meta, video, noise, order, source=source)
        if video.device != self.device:
            raise ValueError(f"{source} runs on {self.device}; got a video on {video.device} (move it with "
                             f".to('{self.device}'))")
        check_profile(self.meta, video.shape[0], video.shape[2], source=source)
        self._note_batch(video.shape[0], source)
        given = {"video": video, "noise": noise, "order": order}
        tensors = {}
        for name in self.inputs:
            t = given[name].to(device=self.device, dtype=self.tensor_dtypes[name]).contiguous()
            # a contiguous slice (video[1:]) can start anywhere; TensorRT wants 256-byte aligned buffers
            tensors[name] = t.clone() if t.data_ptr() % 256 else t

        caller = torch.cuda.current_stream(self.device)
        own = caller == torch.cuda.default_stream(self.device)
        if own and self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        stream = self._stream if own else caller
        if own:
            stream.wait_stream(caller)                      # the inputs were written on the caller's stream
        with torch.cuda.stream(stream):
            for name, t in tensors.items():
                if not self.context.set_input_shape(name, tuple(t.shape)):
                    raise ValueError(f"{source} refused the shape {tuple(t.shape)} for input {name!r}")
                self.context.set_tensor_address(name, t.data_ptr())
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                tensors[name] = torch.empty(shape, dtype=self.tensor_dtypes[name], device=self.device)
                self.context.set_tensor_address(name, tensors[name].data_ptr())
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run {source}")
        if own:
            caller.wait_stream(stream)
            for t in tensors.values():
                # memory made or read on our stream and handed to the caller's: the allocator must not
                # reuse it before both streams are done with it
                t.record_stream(caller)
                t.record_stream(stream)
        return tensors["out"], tensors["mask"]
