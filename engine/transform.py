"""``MotionPreserve``: S²VC's motion-preserved video as a video transform for any trainer.

A tensor goes in and a tensor of the same shape, dtype, layout and device comes out, so the
transform drops into a dataset pipeline (one clip, ``CTHW`` / ``TCHW``, inside
``torchvision.transforms.v2.Compose``, in DataLoader workers) or onto a batch after it reached
the GPU (``BCTHW``, or ``BTCHW`` as VideoMAE / HuggingFace hold clips):

    key = MotionPreserve()(clips)             # float (B, C, T, H, W) in [0, 1] -> the same

It wraps ``MotionPreservingGenerator`` (the reference of what is computed) and adds only the
conversions around it:

- dtype: uint8 in [0, 255] is divided by 255, transformed, then multiplied by 255, rounded to
  the nearest integer (ties to even, ``torch.round``) and clamped to [0, 255]: the residual of
  the paper's generator may leave [0, 1]. A floating-point video in [0, 1] comes back in its
  dtype, unclamped unless ``clamp=True`` (the generator's own rule).
- normalisation: with ``mean`` / ``std`` (per channel, or one number) the input is taken as
  ``(x - mean) / std``: it is un-normalised, transformed and normalised again.
- layout: ``BCTHW``, ``BTCHW``, ``CTHW``, ``TCHW``; a channels-last-3d ``BCTHW`` batch comes back
  channels-last-3d, anything else contiguous.

Device state is lazy: the generator is built on the first call on each device (a copy of the
flow moved there), never pickled, so the transform pickles into DataLoader workers with only
the CPU flow. Inside a worker the CPU threads are bounded so workers x threads stay within the
cores. ``.stats`` holds the last call's ``GenerationStats`` (per clip; B = 1 for one clip).
"""
from __future__ import annotations

import copy
import math
import os
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_flow
from .defaults import DEFAULT_PRESERVE, check_preserved_fraction, resolve_alpha, resolve_keep_fraction
from .generator import DETAILS, GenerationStats, MotionPreservingGenerator
from .strategies import STRATEGIES
from .suppression import alpha_for_preserved_fraction
from .video_checks import check_video

# layout -> where the batch, channel and time dims are (None: one clip, no batch dim)
LAYOUTS = {"BCTHW": (0, 1, 2), "BTCHW": (0, 2, 1), "CTHW": (None, 0, 1), "TCHW": (None, 1, 0)}
# dtypes a video may arrive in: uint8 frames, or floating point in [0, 1] (normalised with mean/std)
DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


class MotionPreserve(nn.Module):
    """A video transform: ``out = MotionPreserve(...)(video)``, out of video's shape, dtype,
    layout and device (see the module docstring for the conversions).

    flow: a path to a flow checkpoint, a loaded flow (``load_flow``), or None for the bundled
    one. alpha: the STD threshold of eq. (4); None = the flow's calibrated one. preserve: a
    fraction in (0, 1): α is calibrated on the first batch to keep it (``calibrate``); for
    ``strategy='topk'`` it is the fraction kept. strategy / detail / backend / seed / clamp: the
    generator's (``MotionPreservingGenerator``). layout: one of ``LAYOUTS``. mean / std: the
    normalisation the input carries (per channel or one number), None = the input is in [0, 1]
    (float) or [0, 255] (uint8). validate: the generator checks every video for NaN/Inf and a
    range outside [0, 1] after un-normalising (reads that wait for the device); None = on the CPU
    only, so a CUDA batch costs no host synchronisation beyond what the backend needs.
    """

    def __init__(self, flow=None, alpha: float | None = None, preserve: float | None = None,
                 strategy: str = "zero", detail: str = "keep", layout: str = "BCTHW",
                 mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
                 backend: str = "auto", seed: int | None = None, *, clamp: bool = False,
                 validate: bool | None = None):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {tuple(LAYOUTS)}, got {layout!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown suppression strategy {strategy!r}; expected one of {STRATEGIES}")
        if detail not in DETAILS:
            raise ValueError(f"detail must be one of {DETAILS}, got {detail!r}")
        if preserve is not None:
            check_preserved_fraction(preserve)
        if preserve is not None and alpha is not None and strategy != "topk":
            raise ValueError("give alpha or preserve, not both: preserve calibrates alpha on the first batch")
        if (mean is None) != (std is None):
            raise ValueError("mean and std go together: the input's normalisation is (x - mean) / std")
        if isinstance(flow, (str, os.PathLike)) or flow is None:
            flow = load_flow(flow)
        elif not (hasattr(flow, "config") and hasattr(flow, "prepare")):
            raise TypeError(f"flow must be a checkpoint path, a loaded flow (load_flow) or None, "
                            f"got {type(flow).__name__}")
        param = next(flow.parameters(), None) if isinstance(flow, nn.Module) else None
        if getattr(flow, "training", False) or (param is not None and param.device.type != "cpu"):
            flow = copy.deepcopy(flow).to("cpu").eval()      # a copy: the caller's flow stays as it is
        # Not a registered submodule: the flow is no parameter of a model that holds this transform
        # (an optimiser over model.parameters() must not see it) and .to() leaves it be; each
        # device gets its own copy when the first video arrives there.
        object.__setattr__(self, "_flow", flow)
        channels = flow.config.channels
        self.mean = _per_channel(mean, channels, "mean")
        self.std = _per_channel(std, channels, "std")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError(f"std must be non-zero, got {self.std}")
        self.layout, self.strategy, self.detail, self.backend = layout, strategy, detail, backend
        self.seed, self.clamp, self.validate, self.preserve = seed, clamp, validate, preserve
        self.keep_fraction = (resolve_keep_fraction(flow, preserve) if strategy == "topk" else None)
        self.alpha = None if preserve is not None and strategy != "topk" else resolve_alpha(flow, alpha)
        self.stats: GenerationStats | None = None
        self._generators: dict[str, MotionPreservingGenerator] = {}
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._threads_bounded = False
        self._probe_settings()

    # -- pickling: the flow and the settings travel, the per-device state is rebuilt -----------
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_generators={}, _constants={}, stats=None, _threads_bounded=False)
        return state

    @property
    def flow(self):
        """The flow, on the CPU (the generators hold their own copy per device)."""
        return self._flow

    def extra_repr(self) -> str:
        alpha = f"{self.alpha:.4g}" if self.alpha is not None else f"calibrated for {self.preserve}"
        norm = f", mean={self.mean}, std={self.std}" if self.mean is not None else ""
        return (f"layout={self.layout!r}, alpha={alpha}, strategy={self.strategy!r}, detail={self.detail!r}, "
                f"backend={self.backend!r}{norm}")

    # -- the transform -------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: uint8 [0, 255] or float [0, 1] (or normalised with mean/std) in ``layout``.
        Returns the motion-preserved video, same shape, dtype, layout and device."""
        unit = self._to_unit_bcthw(video)
        self._bound_threads(video)
        if self.alpha is None:                       # preserve=: calibrate on this first batch
            self._set_alpha(self._calibrated_alpha([unit]))
        out, self.stats = self._generator_for(unit.device)(unit)
        return self._from_unit_bcthw(out, video)

    @torch.no_grad()
    def calibrate(self, videos: torch.Tensor | Iterable[torch.Tensor], preserve: float | None = None) -> float:
        """Set α to keep ``preserve`` (default: the one given at construction, else the flow's
        calibrated fraction) of the latents of ``videos``: one tensor or an iterable of tensors in
        this transform's layout, dtype and normalisation. Returns α. Not for ``topk``."""
        if self.strategy == "topk":
            raise ValueError("strategy 'topk' keeps a fixed fraction (preserve=); it has no alpha to calibrate")
        fraction = preserve if preserve is not None else self.preserve
        if fraction is None:
            fraction = (getattr(self._flow, "meta", {}).get("alpha_calibration") or {}).get("preserve",
                                                                                            DEFAULT_PRESERVE)
        self.preserve = check_preserved_fraction(fraction)
        batches = [videos] if isinstance(videos, torch.Tensor) else list(videos)
        if not batches:
            raise ValueError("calibrate needs at least one video tensor")
        self._set_alpha(self._calibrated_alpha([self._to_unit_bcthw(v) for v in batches]))
        return self.alpha

    def _calibrated_alpha(self, units: list[torch.Tensor]) -> float:
        """The α that keeps ``self.preserve`` of the latents of float (B, C, T, H, W) [0, 1] clips."""
        from .calibrate import preserved_fraction   # here: engine.calibrate imports the video readers
        prepared = self._flow.prepare()
        stds = []
        for unit in units:
            # the generator has not checked these yet: a NaN would pass as a quantile
            check_video(unit, self._flow.config.channels, source="MotionPreserve", min_size=self._flow.config.resolution)
            b, c, t, h, w = unit.shape
            frames = unit.transpose(1, 2).reshape(b * t, c, h, w)
            # pooled where the clips are, so only the flow-sized frames travel to the CPU flow
            low = F.adaptive_avg_pool2d(frames, self._flow.config.resolution).to("cpu", torch.float32)
            z = prepared.encode(low)
            stds.append(z.reshape(b, t, -1).std(dim=1))
        stds = torch.cat(stds)
        alpha = alpha_for_preserved_fraction(stds, self.preserve)
        if not alpha > 0:
            raise ValueError(f"cannot calibrate: {1 - preserved_fraction(stds, 1e-12):.0%} of the latents do not vary "
                             f"over time in these clips (static clips?), so no alpha > 0 keeps {self.preserve}")
        return alpha

    def _set_alpha(self, alpha: float) -> None:
        self.alpha = float(alpha)
        self._generators.clear()

    def _build_generator(self, flow, alpha: float) -> MotionPreservingGenerator:
        kwargs = {"keep_fraction": self.keep_fraction} if self.strategy == "topk" else {}
        return MotionPreservingGenerator(flow, alpha, self.strategy, backend=self.backend, clamp=self.clamp,
                                         seed=self.seed, detail=self.detail, validate=self._validating(flow),
                                         **kwargs)

    def _probe_settings(self) -> None:
        """Raise now, not on the first video, for settings the generator refuses (a backend, a
        detail the backend cannot do); the CPU generator is kept when α is known."""
        generator = self._build_generator(self._flow, self.alpha if self.alpha is not None else 1.0)
        if self.alpha is not None:
            self._generators["cpu"] = generator

    def _generator_for(self, device: torch.device) -> MotionPreservingGenerator:
        """The generator on ``device``, built on the first video there (a copy of the flow moved)."""
        key = str(device)
        if key not in self._generators:
            flow = self._flow if device.type == "cpu" else copy.deepcopy(self._flow).to(device)
            self._generators[key] = self._build_generator(flow, self.alpha)
        return self._generators[key]

    def _bound_threads(self, video: torch.Tensor) -> None:
        """In a DataLoader worker on the CPU: at most cores / workers intra-op threads (PyTorch
        starts a worker with one; a worker_init_fn that raised it past that oversubscribes)."""
        if self._threads_bounded or video.device.type != "cpu":
            return
        self._threads_bounded = True
        info = torch.utils.data.get_worker_info()
        if info is not None:
            cap = max(1, (os.cpu_count() or 1) // max(1, info.num_workers))
            if torch.get_num_threads() > cap:
                torch.set_num_threads(cap)

    # -- conversions -----------------------------------------------------------------------------
    def _check(self, video) -> None:
        layout, c = self.layout, self._flow.config.channels
        if not isinstance(video, torch.Tensor):
            raise TypeError(f"MotionPreserve expects a video tensor ({layout}), got {type(video).__name__}")
        if video.dim() != len(layout):
            raise ValueError(f"MotionPreserve(layout={layout!r}) expects a {len(layout)}-D tensor ({', '.join(layout)}), "
                             f"got shape {tuple(video.shape)}")
        cdim = LAYOUTS[layout][1]
        if video.shape[cdim] != c:
            raise ValueError(f"MotionPreserve(layout={layout!r}) expects C = {c} channels at dim {cdim}, got shape "
                             f"{tuple(video.shape)} (is the video in another layout?)")
        if video.dtype not in DTYPES:
            raise TypeError(f"MotionPreserve takes uint8 [0, 255] or floating-point [0, 1] video, got {video.dtype}")

    def _normalisation(self, device: torch.device, dtype: torch.dtype):
        """(mean, std) float (1, C, 1, 1, 1) on ``device``, made once per device and dtype."""
        key = (str(device), dtype)
        if key not in self._constants:
            shape = (1, len(self.mean), 1, 1, 1)
            self._constants[key] = (torch.tensor(self.mean, dtype=dtype).view(shape).to(device),
                                    torch.tensor(self.std, dtype=dtype).view(shape).to(device))
        return self._constants[key]

    def _to_unit_bcthw(self, video: torch.Tensor) -> torch.Tensor:
        """video in this layout -> float (B, C, T, H, W) in [0, 1] (uint8 / 255; un-normalised)."""
        self._check(video)
        b, c, t = LAYOUTS[self.layout]
        x = video if b is not None else video.unsqueeze(0)
        if self.layout in ("BTCHW", "TCHW"):
            x = x.transpose(1, 2)
        if x.dtype == torch.uint8:
            if self.mean is not None:
                raise TypeError("MotionPreserve: uint8 video with mean/std; normalised video is floating point "
                                "(give mean/std only for normalised float input)")
            x = x.float().div_(255)
        if self.mean is not None:
            if x.dtype in (torch.float16, torch.bfloat16):     # un-normalise without half's rounding
                x = x.float()
            mean, std = self._normalisation(x.device, x.dtype)
            x = x * std + mean
        return x

    def _validating(self, flow) -> bool:
        """Whether the generator of ``flow`` (on its device) checks each video's values."""
        if self.validate is not None:
            return self.validate
        param = next(flow.parameters(), None)
        return param is None or param.device.type == "cpu"

    def _from_unit_bcthw(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """float (B, C, T, H, W) -> ``like``'s dtype (uint8: x 255, rounded, clamped; normalised
        again with mean/std), layout and memory format."""
        if self.mean is not None:
            mean, std = self._normalisation(out.device, out.dtype)
            out = (out - mean) / std
        if like.dtype == torch.uint8:
            out = out.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        elif out.dtype != like.dtype:
            out = out.to(like.dtype)
        if self.layout in ("BTCHW", "TCHW"):
            out = out.transpose(1, 2)
        if LAYOUTS[self.layout][0] is None:
            out = out.squeeze(0)
        if self.layout == "BCTHW" and not like.is_contiguous() and like.is_contiguous(
                memory_format=torch.channels_last_3d):
            return out.contiguous(memory_format=torch.channels_last_3d)
        return out.contiguous()


def _per_channel(value, channels: int, name: str) -> tuple[float, ...] | None:
    """``value`` (None, one number, or ``channels`` numbers) as a tuple of ``channels`` floats."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    values = [value] * channels if isinstance(value, (int, float)) else list(value)
    if len(values) != channels or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be one number or {channels} finite numbers (one per channel), got {value!r}")
    return tuple(float(v) for v in values)
