"""The motion-preserved video generator (the paper's Fig. 2, right), reference implementation.

    video  float (B, C, T, H, W) in [0, 1]
      -> frames (B*T, C, H, W) -> low = avgpool to r x r          r = the flow's resolution
      -> z = flow.encode(low), (B, T, D)
      -> z_p, mask = temporal_std_mask(z, alpha, strategy)       static cues suppressed
      -> low_p = flow.decode(z_p)
      -> out = frames + upsample(low_p - low, H x W)             the residual keeps the detail

The official code's defaults: nearest upsampling, no clamp of the output.

``detail``: what happens to the detail finer than the flow's resolution, which the flow never
sees. "keep" (the paper's residual, the default): it passes into the output as it is, static
textures included. "dynamic" (an option of this project, not the paper's): its temporal mean
over the clip is removed, so the fine detail that does not move (a textured background) is
suppressed too and the fine detail that moves stays:
      -> out = frames + upsample(low_p - low) - mean_t(frames - upsample(low))
"""
from __future__ import annotations

import copy
import dataclasses
import logging

import torch
import torch.nn.functional as F

from . import extension
from .defaults import check_alpha, check_keep_fraction, resolve_alpha, resolve_keep_fraction
from .strategies import EXPORTABLE_STRATEGIES, strategy as _strategy
from .suppression import draw_random_inputs, temporal_std_mask
from .video_checks import check_video

BACKENDS = ("auto", "eager", "ext", "compile", "torchscript", "onnxruntime", "tensorrt")
GRAPH_BACKENDS = ("torchscript", "onnxruntime", "tensorrt")
DETAILS = ("keep", "dynamic")       # the fine detail: kept as is (the paper) / its static part removed
MODEL_BACKENDS = ("onnxruntime", "tensorrt")     # they run an exported file: model=PATH
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}   # the flow's autocast dtype
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune")
CONV_LAYOUTS = ("auto", "contiguous", "channels_last")    # the memory layout of the flow's convolutions
CHUNK_FRAMES = 256          # frames per encode/decode call by default (CUDA; the graph backends)
CPU_CHUNK_FRAMES = 64       # on the CPU: the caches hold a chunk's activations (BENCHMARKS.md)
# the torch.compile modes that capture CUDA graphs, whose outputs are overwritten by the next replay
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
log = logging.getLogger("s2vc")


@dataclasses.dataclass
class GenerationStats:
    """Per clip: ``preserved`` float (B,), the fraction of latents kept; ``mask`` bool (B, D),
    True where a latent was suppressed; ``z_std`` float (B, D), each latent's STD over time
    (None for the static-graph backends, which return only the mask)."""

    preserved: torch.Tensor
    mask: torch.Tensor
    z_std: torch.Tensor | None


class MotionPreservingGenerator(torch.nn.Module):
    """``out, stats = gen(video)``; video and out float (B, C, T, H, W), same shape.

    flow: an AdvFlow (or anything with ``config``, ``prepare()``); alpha: the STD threshold of
    eq. (4), None = the flow's calibrated one (``resolve_alpha``); strategy: one of
    ``strategies.STRATEGIES``; keep_fraction: for ``topk``, the fraction of latents kept, None =
    the fraction the flow's alpha was calibrated for (``resolve_keep_fraction``);
    upsample: "nearest" (official) or "bilinear";
    clamp: clip the output to [0, 1]; detail: "keep" (the paper) or "dynamic" (the fine detail's
    static part removed, see the module docstring; eager/ext/compile backends);
    chunk_frames: frames encoded/decoded at once (bounds memory); None: ``CPU_CHUNK_FRAMES`` (64)
    for videos on the CPU, where the 32² flow's activations of 256 frames overflow the caches and
    64-frame chunks run the study's key batch of 256 frames 1.96x as fast with bitwise the same
    output (BENCHMARKS.md "The generator on the CPU"), else ``CHUNK_FRAMES`` (256);
    seed: seeds the random strategies (None = nondeterministic).
    precision: "fp32" (the reference), "bf16" or "fp16" (CUDA only): the flow's decode runs
    under ``torch.autocast`` in that dtype (convolutions and linears in it, the couplings'
    elementwise steps in float), with the conv subnets' weights in ``channels_last`` on CUDA;
    the output has the video's dtype (eager/ext/compile backends).
    encode_precision: the same for the encode, "fp32" unless asked: the mask is decided on the
    encoder's latents, and on the bundled 32² flow bf16 convolutions in the encoder flip 0.7-3%
    of the mask's entries (PSNR 26-39 dB against fp32, by clip) where a bf16 decode flips none
    (52 dB; BENCHMARKS.md). The latents go back to the flow's dtype before the STD and threshold.
    compile_mode: ``torch.compile``'s ``mode`` for backend "compile" (None: torch's default;
    "reduce-overhead" / "max-autotune" capture CUDA graphs on CUDA for the fixed shapes).
    conv_layout: the memory layout of the flow's convolution weights, and so of their outputs
    (eager/ext/compile backends): "channels_last" (NHWC: on the CPU oneDNN's NHWC kernels run the
    study's key batch 1.1x as fast as NCHW at 64-frame chunks, 1.4x at 256, BENCHMARKS.md "The
    generator on the CPU"; on CUDA cuDNN's NHWC kernels for bf16/fp16), "contiguous" (NCHW, the
    layout the flow is fitted in) or "auto": channels_last on CUDA with a reduced precision,
    contiguous otherwise. NHWC changes no value, only the rounding of the sums (outputs within
    about 1e-5 of NCHW's, the same masks on the tests' clips), so "auto" keeps NCHW on the CPU
    until the pre-registered study (docs/RESULTS.md), whose keys made each step keep one
    generator's numerics, has finished (the CPU chunk size changes nothing: bitwise the same).
    The conversion runs on a copy of the flow's weights: the caller's flow is never changed, and
    a later change of its weights does not reach this generator (build a new one, as after
    ``prepare``).
    backend: "eager" (plain PyTorch, the reference), "ext" (the compiled ops of cpp_ext: fused
    temporal STD + suppression, fused coupling inverse), "compile" (torch.compile of the
    reference flow), "torchscript" (the scripted ``GeneratorGraph``, one per frame size),
    "onnxruntime" / "tensorrt" (the ONNX export / TensorRT engine at ``model``, made by
    ``s2vc export onnx`` / ``python export/build_trt.py``; its metadata must match this flow,
    alpha and strategy; ``providers`` for ONNX Runtime) or "auto" (ext where the extension has
    kernels for the video's device, else eager; ``last_backend`` says which ran). A named
    backend that cannot run raises an error (``extension.resolve_backend`` decides).
    validate: check each video's values (finite, in [0, 1]) and the latents' STDs (finite):
    reads from the device that wait for it, so a training loop passes False and the call then
    reads nothing back (no host synchronisation); ``stats`` stay tensors on the video's device.
    """

    def __init__(self, flow, alpha: float | None = None, strategy: str = "zero", *, backend: str = "auto",
                 keep_fraction: float | None = None, upsample: str = "nearest", clamp: bool = False,
                 chunk_frames: int | None = None, seed: int | None = None, model: str | None = None,
                 providers: list | None = None, detail: str = "keep", validate: bool = True,
                 precision: str = "fp32", encode_precision: str = "fp32", compile_mode: str | None = None,
                 conv_layout: str = "auto"):
        super().__init__()
        self.alpha = resolve_alpha(flow, alpha)
        # topk keeps, unless told, the fraction the flow's alpha was calibrated for (as much as alpha keeps)
        self.keep_fraction = (resolve_keep_fraction(flow, keep_fraction) if _strategy(strategy).needs_keep_fraction
                              else keep_fraction)
        _check_settings(self.alpha, strategy, self.keep_fraction, backend, upsample, chunk_frames, detail)
        _check_precision(precision, backend)
        _check_precision(encode_precision, backend)
        _check_compile_mode(compile_mode, backend)
        if conv_layout not in CONV_LAYOUTS:
            raise ValueError(f"conv_layout must be one of {CONV_LAYOUTS}, got {conv_layout!r}")
        if backend == "ext":
            extension.require_ext("MotionPreservingGenerator(backend='ext')")
        self.config = flow.config
        self.flow = flow.prepare()
        # the compiled-op form shares the subnets; it exists whenever the extension is loaded
        self.flow_ext = flow.prepare(ext=True) if extension.EXT_AVAILABLE and isinstance(
            flow, torch.nn.Module) and hasattr(flow, "_fc_nodes") else None
        self._compiled: dict[str, object] = {}
        self._graphs: dict[tuple, object] = {}
        self._runtime = _exported_runtime(backend, model, flow, self.alpha, strategy, providers)
        self.strategy = strategy
        self.backend = backend
        self.last_backend: str | None = None
        self.upsample = upsample
        self.clamp = clamp
        self.detail = detail
        self.chunk_frames = chunk_frames
        self.seed = seed
        self.validate = validate
        self.precision = precision
        self.encode_precision = encode_precision
        self.compile_mode = compile_mode
        self.conv_layout = conv_layout
        self._channels_last = False

    def _compute_dtype(self, video: torch.Tensor) -> torch.dtype:
        """The dtype the flow runs in: its own (float32 unless converted), whatever the video's;
        a float16/bfloat16 video is converted to it and the output converted back."""
        param = next(self.flow.parameters(), None)
        return param.dtype if param is not None else video.dtype

    def _ext_ops(self, video: torch.Tensor) -> tuple[tuple[str, ...], torch.Tensor, str | None]:
        """(the compiled ops the ext path runs, a probe of the dtype they run in, this generator's
        own reason it cannot run them) for ``extension.resolve_backend``."""
        probe = video.new_empty(0, dtype=self._compute_dtype(video))
        own = None if self.flow_ext is not None else "this flow has no compiled-op form (only AdvFlow has one)"
        return ("affine_coupling_inverse", "temporal_std_mask"), probe, own

    def ext_unusable_reason(self, video: torch.Tensor) -> str | None:
        """Why the ``ext`` path cannot run on ``video`` here, or None when it can (the one
        decision, ``extension.ext_unusable_reason``, for each compiled op the path runs)."""
        ops, probe, own = self._ext_ops(video)
        return next((r for r in (extension.ext_unusable_reason(op, probe) for op in ops) if r is not None), own)

    def _resolve(self, video: torch.Tensor) -> str:
        ops, probe, own = self._ext_ops(video)
        choice = extension.resolve_backend(self.backend, ops, probe, caller="MotionPreservingGenerator",
                                           choices=BACKENDS, unusable=own)
        if self.backend == "auto" and choice != self.last_backend:
            log.info("MotionPreservingGenerator: backend 'auto' runs %r on %s", choice, video.device.type)
        return choice

    def _coders(self, backend: str):
        """(encode, decode) for a resolved backend."""
        if backend == "ext":
            return self.flow_ext.encode, self.flow_ext.decode
        if backend == "compile":
            if not self._compiled:
                # dynamic=None: compiled for the first shape as static (a training run's shapes are
                # fixed: kernels specialised to them); a second shape recompiles once with dynamic sizes
                encode = torch.compile(self.flow.encoder, dynamic=None, mode=self.compile_mode)
                decode = torch.compile(self.flow.decoder, dynamic=None, mode=self.compile_mode)
                if self.compile_mode in _CUDA_GRAPH_MODES:
                    # a CUDA graph writes its outputs into the same static memory on every replay:
                    # the next chunk's (or call's) replay would overwrite what we still hold
                    encode, decode = _cloned(encode), _cloned(decode)
                self._compiled["encode"], self._compiled["decode"] = encode, decode
            return self._compiled["encode"], self._compiled["decode"]
        return self.flow.encode, self.flow.decode

    def _graph(self, video: torch.Tensor):
        """The scripted GeneratorGraph for this frame size and device (built once, then cached)."""
        from .graph import GeneratorGraph
        key = (video.shape[3], video.shape[4], video.device, video.dtype)
        if key not in self._graphs:
            graph = GeneratorGraph(self.flow, self.alpha, self.strategy, video.shape[3], video.shape[4],
                                   upsample=self.upsample, clamp=self.clamp).to(video.device, video.dtype)
            self._graphs[key] = torch.jit.script(graph.eval())
        return self._graphs[key]

    def _run_graph(self, video: torch.Tensor) -> tuple[torch.Tensor, GenerationStats]:
        b, _, t = video.shape[:3]
        d = self.config.dims
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=video.device).manual_seed(self.seed)
        noise, order = draw_random_inputs(self.strategy, b, t, d, device=video.device, dtype=video.dtype,
                                          generator=generator)
        run = self._runtime if self._runtime is not None else self._graph(video)
        out, mask = run(video, noise, order)
        return out, GenerationStats(preserved=1.0 - mask.float().mean(dim=1), mask=mask, z_std=None)

    def _upsample(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return F.interpolate(x, size=(h, w), mode=self.upsample,
                             **({} if self.upsample == "nearest" else {"align_corners": False}))

    def chunk_for(self, device: torch.device | str) -> int:
        """Frames per encode/decode call for videos on ``device`` (``chunk_frames``)."""
        if self.chunk_frames is not None:
            return self.chunk_frames
        return CPU_CHUNK_FRAMES if torch.device(device).type == "cpu" else CHUNK_FRAMES

    def _chunked(self, fn, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """fn over chunks of ``chunk_for(x.device)`` rows of x, under autocast when precision is
        reduced; the result in x's dtype."""
        dtype = PRECISIONS[precision]
        n = self.chunk_for(x.device)
        if dtype is None:
            return torch.cat([fn(x[i:i + n]) for i in range(0, x.shape[0], n)])
        with torch.autocast(x.device.type, dtype=dtype):
            parts = [fn(x[i:i + n]) for i in range(0, x.shape[0], n)]
        # the couplings' elementwise steps promote to float, a final 1x1 conv may not: one dtype back
        return torch.cat([p.to(x.dtype) for p in parts])

    def _check_device_precision(self, video: torch.Tensor) -> None:
        """fp16 only on CUDA (CPU autocast in float16 is slow and partial)."""
        if "fp16" in (self.precision, self.encode_precision) and video.device.type != "cuda":
            raise ValueError(f"precision 'fp16' runs on CUDA only (this video is on {video.device.type}); "
                             "use precision 'bf16' or 'fp32'")

    def wants_channels_last(self, device: torch.device | str) -> bool:
        """Whether the flow's convolutions run channels_last for videos on ``device`` (``conv_layout``)."""
        if self.conv_layout != "auto":
            return self.conv_layout == "channels_last"
        return torch.device(device).type == "cuda" and (self.precision, self.encode_precision) != ("fp32", "fp32")

    def _prepare_layout(self, video: torch.Tensor) -> None:
        """The first call that wants channels_last puts a copy of the prepared flow's conv weights in
        it (the flow's conv inputs are channel slices of NCHW tensors, which the conv converts), once."""
        if self._channels_last or not self.wants_channels_last(video.device):
            return
        self.flow = _channels_last_copy(self.flow)
        if self.flow_ext is not None:
            self.flow_ext = _channels_last_copy(self.flow_ext)
        self._compiled.clear()
        self._channels_last = True

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, GenerationStats]:
        check_video(video, self.config.channels, min_size=self.config.resolution, values=self.validate)
        backend = self._resolve(video)
        self.last_backend = backend
        if backend in GRAPH_BACKENDS:
            return self._run_graph(video)
        self._check_device_precision(video)
        self._prepare_layout(video)
        compute = self._compute_dtype(video)
        if video.dtype != compute:
            out, stats = self._run_flow(video.to(compute), backend)
            return out.to(video.dtype), stats
        return self._run_flow(video, backend)

    def _run_flow(self, video: torch.Tensor, backend: str) -> tuple[torch.Tensor, GenerationStats]:
        b, c, t, h, w = video.shape
        r = self.config.resolution
        encode, decode = self._coders(backend)
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        low = F.adaptive_avg_pool2d(frames, r)
        z = self._chunked(encode, low, self.encode_precision).reshape(b, t, -1)
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=z.device).manual_seed(self.seed)
        z_p, mask = temporal_std_mask(z, self.alpha, self.strategy, keep_fraction=self.keep_fraction,
                                      generator=generator, backend="ext" if backend == "ext" else "eager",
                                      validate=self.validate)
        low_p = self._chunked(decode, z_p.reshape(b * t, -1), self.precision)
        diff = low_p - low
        out = frames + self._upsample(diff, h, w)
        if self.detail == "dynamic":        # the fine detail's temporal mean: its static part
            fine = frames - self._upsample(low, h, w)
            out = (out.reshape(b, t, c, h, w) - fine.reshape(b, t, c, h, w).mean(dim=1, keepdim=True)).flatten(0, 1)
        if self.clamp:
            out = out.clamp(0, 1)
        out = out.reshape(b, t, c, h, w).transpose(1, 2).contiguous()
        preserved = 1.0 - mask.float().mean(dim=1)
        return out, GenerationStats(preserved=preserved, mask=mask, z_std=z.std(dim=1))


def _check_settings(alpha: float, strategy: str, keep_fraction: float | None, backend: str, upsample: str,
                    chunk_frames: int | None, detail: str) -> None:
    """ValueError naming the first bad setting of a generator."""
    if backend not in BACKENDS:
        raise ValueError(f"generator backend {backend!r} is not available; available: {BACKENDS}")
    if _strategy(strategy).needs_keep_fraction:
        check_keep_fraction(keep_fraction)
    else:
        check_alpha(alpha)
    if upsample not in ("nearest", "bilinear"):
        raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
    if chunk_frames is not None and chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {DETAILS}, got {detail!r}")
    if detail != "keep" and backend in GRAPH_BACKENDS:
        raise ValueError(f"backend {backend!r} runs the exported graph of the paper's residual (detail 'keep'); "
                         f"detail {detail!r} runs on backends 'auto', 'eager', 'ext' and 'compile'")
    if backend in GRAPH_BACKENDS and strategy not in EXPORTABLE_STRATEGIES:
        raise ValueError(f"backend {backend!r} runs the static graph, which cannot do strategy "
                         f"{strategy!r}; use one of {EXPORTABLE_STRATEGIES} or backend 'eager'/'ext'")


def _check_precision(precision: str, backend: str) -> None:
    """ValueError naming a bad precision for this backend."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if precision != "fp32" and backend in GRAPH_BACKENDS:
        raise ValueError(f"precision {precision!r} runs on backends 'auto', 'eager', 'ext' and 'compile'; "
                         f"backend {backend!r} runs the graph in the dtype it was exported/built in")


def _check_compile_mode(compile_mode: str | None, backend: str) -> None:
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
    if compile_mode is not None and backend != "compile":
        raise ValueError(f"compile_mode {compile_mode!r} is for backend 'compile', not {backend!r}")


def _channels_last_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` with every Conv2d's weights in channels_last (values unchanged)."""
    module = copy.deepcopy(module)
    for conv in module.modules():
        if isinstance(conv, torch.nn.Conv2d):
            conv.to(memory_format=torch.channels_last)
    return module


def _cloned(fn):
    """fn whose output is copied out of the CUDA graph's static output memory."""
    def call(x: torch.Tensor) -> torch.Tensor:
        return fn(x).clone()
    return call


def _exported_runtime(backend: str, model: str | None, flow, alpha: float, strategy: str, providers):
    """The runtime of an exported file for backends onnxruntime / tensorrt (None for the others)."""
    if backend not in MODEL_BACKENDS:
        return None
    if model is None:
        raise ValueError(f"backend {backend!r} runs an exported model: pass model=PATH "
                         "(s2vc export onnx / python export/build_trt.py make one)")
    if backend == "onnxruntime":
        from .runtime_onnx import OnnxRuntimeGenerator
        return OnnxRuntimeGenerator(model, flow, alpha=alpha, strategy=strategy, providers=providers)
    from .runtime_trt import TensorRTGenerator
    return TensorRTGenerator(model, flow, alpha=alpha, strategy=strategy)
