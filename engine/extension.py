"""Loads the compiled ops ``s2vc._C`` (built by setup.py from cpp_ext/) when they are present.

Importing this module never fails: when the extension is missing or broken, ``EXT_AVAILABLE``
is False and ``EXT_ERROR`` says why; callers that named the ``ext`` backend turn that into an
error (see ``require_ext``), ``auto`` callers use the PyTorch reference instead.

The library is loaded only when its build record ``s2vc/_build_info.json`` (written by setup.py)
says it was built against this very torch (version and CUDA version): an extension built for
another torch is never loaded. On a GPU the record's arch list also decides whether the kernels
can run there (``ext_unusable_reason``), so "auto" falls back instead of failing at launch.

Once loaded, the ops are ``torch.ops.s2vc.*``. Each gets a fake kernel here, so that
``torch.compile`` and ``torch.export`` can trace through it without running it.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
from typing import Sequence

import torch

from .strategies import STD_ONLY_CODE, STRATEGY_CODES

OP_NAMES = ("affine_coupling_inverse", "affine_coupling_inverse_out", "temporal_std_mask")

# dtypes each compiled kernel takes, per device type (the AT_DISPATCH lists of cpp_ext/cpu, cpp_ext/cuda)
_FLOATS = (torch.float32, torch.float64)
KERNEL_DTYPES: dict[tuple[str, str], tuple[torch.dtype, ...]] = {
    ("affine_coupling_inverse", "cpu"): _FLOATS,
    ("affine_coupling_inverse", "cuda"): _FLOATS + (torch.float16, torch.bfloat16),
    ("affine_coupling_inverse_out", "cpu"): _FLOATS,
    ("affine_coupling_inverse_out", "cuda"): _FLOATS + (torch.float16, torch.bfloat16),
    ("temporal_std_mask", "cpu"): _FLOATS,
    ("temporal_std_mask", "cuda"): _FLOATS + (torch.float16, torch.bfloat16),   # accumulates in float
}

EXT_AVAILABLE: bool
EXT_ERROR: str | None
BUILD_INFO: dict | None
"""What the build recorded in ``s2vc/_build_info.json`` (setup.py writes it): ``built``, and when
built ``torch``, ``torch_cuda``, ``cuda_kernels``, ``cuda_sass`` / ``cuda_ptx`` (the GPU arches,
"X.Y"); when not built, ``reason``. None when there is no record."""

BUILD_INFO_NAME = "_build_info.json"
_BUILD_HINT = ("rebuild it against this torch: `pip install -e . --no-build-isolation` in the repository root, "
               "in this environment")


def build_mismatch_reason(info: dict, torch_version: str, torch_cuda: str | None) -> str | None:
    """Why an extension whose build record is ``info`` must not be loaded by this torch (None: it
    may). A C++ extension is tied to the exact torch it was compiled against: loading it into
    another can fail with undefined symbols or, worse, load and corrupt memory."""
    built, built_cuda = info.get("torch"), info.get("torch_cuda")
    if built == torch_version and built_cuda == torch_cuda:
        return None
    return (f"s2vc._C was built against torch {built} (CUDA {built_cuda}) but this environment has torch "
            f"{torch_version} (CUDA {torch_cuda}), so it is not loaded (the PyTorch reference runs instead); "
            f"{_BUILD_HINT}")


def _parse_arch(arch: str) -> tuple[int, int, str]:
    """"9.0" -> (9, 0, ""); "9.0a" -> (9, 0, "a")."""
    major, rest = arch.split(".", 1)
    return int(major), int(rest[0]), rest[1:]


def cuda_arch_unsupported_reason(capability: tuple[int, int], sass: Sequence[str],
                                 ptx: Sequence[str]) -> str | None:
    """Why no kernel of a build with machine code for ``sass`` and PTX for ``ptx`` ("X.Y",
    "X.Ya") can run on a GPU of compute ``capability`` (major, minor); None when one can.

    Machine code for X.Y runs on X.Z with Z >= Y (same major); PTX for X.Y is compiled by the
    driver for any capability >= X.Y; the arch-specific "X.Ya" targets run on X.Y only.
    """
    cap = tuple(int(c) for c in capability)
    for arch in sass:
        major, minor, suffix = _parse_arch(arch)
        if major == cap[0] and (minor == cap[1] if suffix == "a" else minor <= cap[1]):
            return None
    for arch in ptx:
        major, minor, suffix = _parse_arch(arch)
        if ((major, minor) == cap) if suffix == "a" else ((major, minor) <= cap):
            return None
    return (f"s2vc._C has no kernel for this GPU (compute capability {cap[0]}.{cap[1]}): it holds machine code "
            f"for {list(sass)} and PTX for {list(ptx)}; rebuild for it: "
            f"TORCH_CUDA_ARCH_LIST=\"{cap[0]}.{cap[1]}\" pip install -e . --no-build-isolation")


def _read_build_info() -> tuple[dict | None, bool]:
    """(the build record or None, whether a compiled s2vc._C file exists)."""
    lib = importlib.util.find_spec("s2vc._C")
    folders = [os.path.dirname(lib.origin)] if lib is not None and lib.origin else []
    folders += list(importlib.util.find_spec("s2vc").submodule_search_locations or [])
    for folder in folders:
        path = os.path.join(folder, BUILD_INFO_NAME)
        try:
            with open(path) as fh:
                return json.load(fh), lib is not None
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            return {"built": False, "reason": f"its build record {path} is unreadable ({exc})"}, lib is not None
    return None, lib is not None


def _load() -> tuple[bool, str | None, dict | None]:
    """(EXT_AVAILABLE, EXT_ERROR, BUILD_INFO): the build record is checked BEFORE the library is
    loaded, since loading a library built for another torch may already crash."""
    info, lib_exists = _read_build_info()
    if info is None:
        if not lib_exists:
            return False, f"s2vc._C is not built; {_BUILD_HINT}", None
        return False, (f"s2vc._C has no build record ({BUILD_INFO_NAME}) saying which torch it was built "
                       f"against, so it is not loaded; {_BUILD_HINT}"), None
    if not info.get("built"):
        return False, f"s2vc._C was not built at install: {info.get('reason')}; {_BUILD_HINT}", info
    why = build_mismatch_reason(info, torch.__version__, torch.version.cuda)
    if why is not None:
        return False, why, info
    try:
        # loading the library registers the ops (import_module: `from s2vc import _C` would report
        # a missing file as a circular import while s2vc/__init__.py is running)
        importlib.import_module("s2vc._C")
    except ModuleNotFoundError as exc:
        return False, f"s2vc._C is not built ({exc}); {_BUILD_HINT}", info
    except (ImportError, OSError) as exc:
        return False, (f"s2vc._C is there but could not be loaded ({type(exc).__name__}: {exc}); "
                       f"{_BUILD_HINT}"), info
    return True, None, info


EXT_AVAILABLE, EXT_ERROR, BUILD_INFO = _load()


# The ops the loaded library declares: one that a stale build lacks has no kernels (asking the
# dispatcher about it would raise) and gets no fake kernel.
_REGISTERED: frozenset[str] = frozenset(
    op for op in OP_NAMES if EXT_AVAILABLE and hasattr(torch.ops.s2vc, op))

# Which (op, device type) pairs have a compiled kernel. Fixed once the library is loaded, so it
# is read here once: a plain dict lookup is also what torch.compile can trace without a break.
_KERNELS: dict[tuple[str, str], bool] = {
    (op, device_type): op in _REGISTERED
    and torch._C._dispatch_has_kernel_for_dispatch_key(f"s2vc::{op}", key)
    for op in OP_NAMES
    for device_type, key in (("cpu", "CPU"), ("cuda", "CUDA"))
}


def ext_has_kernel(op: str, device_type: str) -> bool:
    """Whether ``s2vc::<op>`` has a compiled kernel for ``device_type`` ("cpu", "cuda")."""
    return EXT_AVAILABLE and _KERNELS.get((op, device_type), False)


def ext_has_cuda() -> bool:
    """Whether the loaded extension was built with its CUDA kernels (a GPU need not be present)."""
    return ext_has_kernel("affine_coupling_inverse", "cuda")


def ext_unusable_reason(op: str, *tensors: torch.Tensor) -> str | None:
    """Why the compiled ``s2vc::<op>`` cannot run on ``tensors`` here, or None when it can.

    The one place that decides it, for every caller (ops, suppression, the generator, bench):
    the extension is loaded, it has a kernel for the tensors' device type and dtype, and no
    gradient is needed (the kernels are inference-only: they have no backward).
    """
    if not EXT_AVAILABLE:
        return f"{op} needs the compiled extension s2vc._C, which is not loaded: {EXT_ERROR}"
    device = tensors[0].device.type
    dtype = tensors[0].dtype
    if not ext_has_kernel(op, device):
        why = (BUILD_INFO or {}).get("cuda_reason") or "reason not recorded"
        hint = (f" (it was built without CUDA kernels: {why}; docs/INSTALL.md says how to build them)"
                if device == "cuda" else "")
        return f"s2vc._C has no {device} kernel for {op}{hint}"
    if dtype not in KERNEL_DTYPES.get((op, device), ()):
        allowed = [str(d).removeprefix("torch.") for d in KERNEL_DTYPES.get((op, device), ())]
        return f"s2vc._C has no {device} kernel for {dtype} in {op}: the {device} kernel takes {allowed}"
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return (f"{op}'s compiled kernel is inference-only (no backward) and these inputs require "
                "grad; call it under torch.no_grad() or use the eager reference")
    if device == "cuda":
        return _cuda_device_reason(tensors[0].device.index)
    return None


# per GPU index: why the built arches cannot run on it (None: they can); read once per GPU
_CUDA_DEVICE_REASONS: dict[int, str | None] = {}


def _cuda_device_reason(index: int | None) -> str | None:
    index = torch.cuda.current_device() if index is None else index
    if index not in _CUDA_DEVICE_REASONS:
        info = BUILD_INFO or {}
        if info.get("cuda_sass") is None and info.get("cuda_ptx") is None:
            _CUDA_DEVICE_REASONS[index] = None          # arches not recorded: cannot tell
        else:
            _CUDA_DEVICE_REASONS[index] = cuda_arch_unsupported_reason(
                torch.cuda.get_device_capability(index), info.get("cuda_sass") or (),
                info.get("cuda_ptx") or ())
    return _CUDA_DEVICE_REASONS[index]


def ext_usable(op: str, *tensors: torch.Tensor) -> bool:
    """Whether the compiled ``s2vc::<op>`` can run on ``tensors`` (see ``ext_unusable_reason``)."""
    return ext_unusable_reason(op, *tensors) is None


EXT_BACKENDS = ("auto", "eager", "ext")


def resolve_backend(requested: str, ops: Sequence[str], *tensors: torch.Tensor, caller: str,
                    choices: Sequence[str] = EXT_BACKENDS, unusable: str | None = None) -> str:
    """The backend that runs when ``caller`` is asked for ``requested``: the one resolver of the
    generator, the suppression op and the coupling op.

    "auto" -> "ext" when every compiled op of ``ops`` can run on ``tensors`` here
    (``ext_unusable_reason``) and ``unusable`` (the caller's own reason, e.g. a flow with no
    compiled-op form) is None, else "eager"; "ext" -> "ext", or a RuntimeError naming what is
    missing (never a silent fallback); any other name of ``choices`` is returned as is. A name not
    in ``choices`` is a ValueError. Reads no tensor data: no device synchronisation.
    """
    if requested not in choices:
        raise ValueError(f"{caller}: backend {requested!r} is not available; the backend must be one of "
                         f"{tuple(choices)}")
    if requested not in ("auto", "ext"):
        return requested
    why_not = next((r for r in (ext_unusable_reason(op, *tensors) for op in ops) if r is not None), unusable)
    if why_not is None:
        return "ext"
    if requested == "auto":
        return "eager"
    raise RuntimeError(f"{caller}(backend='ext'): {why_not}")


def require_ext(what: str) -> None:
    """Raise a RuntimeError naming ``what`` needed the extension and why it is not loaded."""
    if not EXT_AVAILABLE:
        raise RuntimeError(f"{what} needs the compiled extension s2vc._C, which is not loaded: "
                           f"{EXT_ERROR}")


if "affine_coupling_inverse" in _REGISTERED:

    @torch.library.register_fake("s2vc::affine_coupling_inverse")
    def _affine_coupling_inverse_fake(v: torch.Tensor, raw: torch.Tensor, clamp: float):
        # the same checks as the kernels where they concern shapes; output is contiguous
        torch._check(v.dim() >= 2, lambda: f"expected v (N, n, *S), got shape {tuple(v.shape)}")
        torch._check(raw.dim() == v.dim() and raw.shape[1] == 2 * v.shape[1],
                     lambda: f"expected raw (N, 2n, *S) for v of shape {tuple(v.shape)}, "
                             f"got raw of shape {tuple(raw.shape)}")
        torch._check(raw.dtype == v.dtype,
                     lambda: f"expected v and raw of one dtype, got {v.dtype} and {raw.dtype}")
        return v.new_empty(v.shape)


if "affine_coupling_inverse_out" in _REGISTERED:

    @torch.library.register_fake("s2vc::affine_coupling_inverse_out")
    def _affine_coupling_inverse_out_fake(v: torch.Tensor, raw: torch.Tensor, clamp: float,
                                          out: torch.Tensor) -> None:
        # a mutating op returns nothing: the fake only checks what it can see from the shapes
        torch._check(tuple(out.shape) == tuple(v.shape) and out.dtype == v.dtype,
                     lambda: f"expected out of v's shape {tuple(v.shape)} and dtype {v.dtype}, "
                             f"got {tuple(out.shape)} {out.dtype}")
        torch._check(v.dim() >= 2 and raw.dim() == v.dim() and raw.shape[1] == 2 * v.shape[1],
                     lambda: f"expected v (N, n, *S) and raw (N, 2n, *S), got {tuple(v.shape)} "
                             f"and {tuple(raw.shape)}")
        return None


if "temporal_std_mask" in _REGISTERED:

    @torch.library.register_fake("s2vc::temporal_std_mask")
    def _temporal_std_mask_fake(z: torch.Tensor, alpha: float, strategy: int,
                                noise: torch.Tensor | None, order: torch.Tensor | None,
                                mask: torch.Tensor | None):
        # strategy is a Python int while tracing, so the shape of z_p is known; outputs contiguous
        torch._check(z.dim() == 3, lambda: f"expected z (B, T, D), got shape {tuple(z.shape)}")
        torch._check(z.shape[1] >= 2, lambda: f"the temporal STD needs T >= 2, got {z.shape[1]}")
        codes = (STD_ONLY_CODE, *STRATEGY_CODES.values())
        torch._check(strategy in codes, lambda: f"unknown strategy code {strategy}; valid codes: {codes}")
        b, _, d = z.shape
        z_p = z.new_empty((0,)) if strategy == -1 else z.new_empty(z.shape)
        return z_p, z.new_empty((b, d), dtype=torch.bool), z.new_empty((b, d))
