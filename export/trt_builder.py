"""Build a TensorRT engine from an s2vc ONNX export (``python export/build_trt.py``).

    python export/build_trt.py --onnx gen.onnx --out gen.engine --batch 1,8,16 --frames 2,16,32
        [--fp16-check] [--tf32] [--workspace-gb 4] [--timing-cache trt.cache] [--verbose]
        -> gen.engine       the serialized engine (one optimisation profile over batch and frames)
           gen.engine.json  the ONNX export's metadata + TensorRT version, precision, profile, GPU

The structure follows NVIDIA's TensorRT samples (an ``EngineBuilder``: network from ONNX, config,
profile, timing cache, serialise), written against TensorRT 10/11's API only: explicit batch is
the default (``create_network(0)`` plus ``STRONGLY_TYPED`` where TensorRT has it, so fp16 comes
from the ONNX graph's types: build fp16 engines from an fp16 export), named tensors, memory-pool
limits. The runtime (``s2vc.engine.runtime_trt``) never imports this module.

``python export/build_trt.py`` parses and checks the flags before TensorRT is imported; without
TensorRT or a CUDA GPU it prints one line saying what is missing and returns 1; argument errors
return 2. Before the build the
timing cache (a cache TensorRT refuses, e.g. from another GPU, is an error), the precision and the
metadata are checked; the engine and its metadata are then written atomically (temporary names,
then renames). The checks and writes are plain functions, tested without TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from s2vc.engine.exported_meta import read_onnx_metadata

DEFAULT_BATCH = (1, 8, 16)
DEFAULT_FRAMES = (2, 16, 32)
MIN_TENSORRT_MAJOR = 10


class TensorRTUnavailable(RuntimeError):
    """TensorRT, a CUDA GPU, or a recent enough TensorRT is missing."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX model or build the engine; holds its error messages."""


def serving_profile(batch: Sequence[int], serve: int | None) -> tuple[int, int, int]:
    """The (MIN, OPT, MAX) batch range of the profile for an engine that will serve batches of
    ``serve`` clips: TensorRT picks its kernels for OPT, so OPT = ``serve`` (MIN / MAX widened to
    take it); ``serve`` None keeps ``batch`` as it is."""
    lo, opt, hi = (int(x) for x in batch)
    if serve is None:
        return lo, opt, hi
    if serve < 1:
        raise ValueError(f"the batch to serve must be >= 1, got {serve}")
    return min(lo, serve), serve, max(hi, serve)


def profile_shapes(meta: Mapping, batch: Sequence[int],
                   frames: Sequence[int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shapes for every dynamic input of an export, from its metadata."""
    c, d, r = meta["flow_channels"], meta["flow_dims"], meta["flow_resolution"]
    if meta["kind"] == "generator":
        h, w = meta["height"], meta["width"]
        make = {"video": lambda b, t: (b, c, t, h, w), "noise": lambda b, t: (b, d),
                "order": lambda b, t: (b, t, d)}
    else:
        make = {"frames": lambda b, t: (b, c, r, r), "z": lambda b, t: (b, d)}
    return {name: tuple(make[name](b, t) for b, t in zip(batch, frames, strict=True)) for name in meta["inputs"]}


# -- TensorRT ----------------------------------------------------------------------------------

def require_tensorrt():
    """The ``tensorrt`` module, or ``TensorRTUnavailable`` saying what is missing and how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not installed ({exc}). Building an engine needs TensorRT {MIN_TENSORRT_MAJOR}+ on a "
            "machine with an NVIDIA GPU and driver: pip install tensorrt") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is too old: this builder uses the TensorRT "
                                  f"{MIN_TENSORRT_MAJOR}+ API (pip install -U tensorrt)")
    import torch
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False). Building an engine "
                                  "needs an NVIDIA GPU with its driver and a CUDA build of torch")
    return trt


def _make_logger(trt, verbose: bool):
    class CollectingLogger(trt.ILogger):
        """Prints warnings (and info when verbose) and keeps the errors for the exception."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.shown = trt.ILogger.Severity.INFO if verbose else trt.ILogger.Severity.WARNING

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if int(severity) <= int(self.shown):
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return CollectingLogger()


class EngineBuilder:
    """Parse an ONNX model into a TensorRT network and build a serialized engine from it.

        builder = EngineBuilder(workspace_gb=4)
        builder.create_network("gen.onnx")
        builder.add_profile({"video": ((1, 3, 2, 64, 64), (8, 3, 16, 64, 64), (16, 3, 32, 64, 64))})
        builder.use_timing_cache("trt.cache")          # optional; refused caches raise here
        Path("gen.engine").write_bytes(builder.create_engine())
    """

    def __init__(self, *, workspace_gb: float = 4.0, tf32: bool = False, verbose: bool = False):
        self.trt = trt = require_tensorrt()
        self.logger = _make_logger(trt, verbose)
        trt.init_libnvinfer_plugins(self.logger, namespace="")
        self.builder = trt.Builder(self.logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        # TensorRT lets fp32 convolutions and matmuls run in TF32 unless told not to; an fp32 export
        # should give fp32 results (the tests hold it to 1e-4), so TF32 is opt-in
        self.tf32 = bool(tf32)
        if hasattr(trt.BuilderFlag, "TF32"):
            (self.config.set_flag if self.tf32 else self.config.clear_flag)(trt.BuilderFlag.TF32)
        self.network = None
        self.parser = None
        self.profile_shapes: dict[str, tuple] = {}
        self.strongly_typed = False

    def create_network(self, onnx_path: str | Path) -> None:
        """Parse the model; raises ``EngineBuildError`` with the parser's messages on failure."""
        trt = self.trt
        flags = 0
        # explicit batch is the only mode in TensorRT 10+; strong typing keeps the graph's fp16/fp32
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strongly_typed is not None:
            flags |= 1 << int(strongly_typed)
        # TensorRT 11 dropped weak typing (and may drop the flag with it)
        self.strongly_typed = strongly_typed is not None or int(str(trt.__version__).split(".")[0]) >= 11
        self.network = self.builder.create_network(flags)
        self.parser = trt.OnnxParser(self.network, self.logger)
        if not self.parser.parse_from_file(str(onnx_path)):
            errors = [str(self.parser.get_error(i)) for i in range(self.parser.num_errors)]
            raise EngineBuildError(f"TensorRT's ONNX parser failed on {onnx_path}:\n  "
                                   + "\n  ".join(errors or self.logger.errors))

    def input_dtypes(self) -> dict[str, str]:
        return {self.network.get_input(i).name: str(self.network.get_input(i).dtype)
                for i in range(self.network.num_inputs)}

    def add_profile(self, shapes: Mapping[str, Sequence[Sequence[int]]]) -> None:
        """One optimisation profile: ``{input name: (min shape, opt shape, max shape)}``, every
        dynamic network input included."""
        profile = self.builder.create_optimization_profile()
        for i in range(self.network.num_inputs):
            tensor = self.network.get_input(i)
            dynamic = any(d < 0 for d in tensor.shape)
            if tensor.name not in shapes:
                if dynamic:
                    raise EngineBuildError(f"input {tensor.name!r} has dynamic shape {tuple(tensor.shape)} but "
                                           "no profile shapes were given for it")
                continue
            lo, opt, hi = (tuple(int(x) for x in s) for s in shapes[tensor.name])
            for shape in (lo, opt, hi):
                if len(shape) != len(tensor.shape) or any(d >= 0 and d != s
                                                          for d, s in zip(tensor.shape, shape, strict=True)):
                    raise EngineBuildError(f"profile shape {shape} does not fit input {tensor.name!r} of shape "
                                           f"{tuple(tensor.shape)}")
            profile.set_shape(tensor.name, lo, opt, hi)
            self.profile_shapes[tensor.name] = (lo, opt, hi)
        if self.config.add_optimization_profile(profile) < 0:
            raise EngineBuildError("TensorRT refused the optimisation profile: " + "; ".join(self.logger.errors))

    def use_timing_cache(self, timing_cache: str | Path) -> None:
        """Load ``timing_cache`` (when the file exists) into the config, BEFORE building: a cache
        TensorRT refuses (made on another GPU or TensorRT version, or not a cache) raises
        ``EngineBuildError`` here instead of surfacing after an engine was written."""
        path = Path(timing_cache)
        data = path.read_bytes() if path.is_file() else b""
        cache = self.config.create_timing_cache(data)
        accepted = None if cache is None else self.config.set_timing_cache(cache, ignore_mismatch=False)
        check_timing_cache_accepted(cache is not None, accepted, path, self.logger.errors)

    def create_engine(self) -> bytes:
        """Build and return the serialized engine (nothing is written)."""
        serialized = self.builder.build_serialized_network(self.network, self.config)
        if serialized is None:
            raise EngineBuildError("TensorRT could not build the engine:\n  " + "\n  ".join(
                self.logger.errors or ["(no error message; rerun with --verbose)"]))
        return bytes(serialized)

    def timing_cache_bytes(self) -> bytes:
        return bytes(self.config.get_timing_cache().serialize())


# -- checks and writes that need no TensorRT (unit-tested without it) ----------------------------

def check_timing_cache_accepted(created: bool, accepted: bool | None, path: Path,
                                errors: Sequence[str] = ()) -> None:
    """Raise ``EngineBuildError`` when TensorRT could not read the timing cache file ``path``
    (``created`` False) or refused it (``config.set_timing_cache(cache, ignore_mismatch=False)``
    returned False: it was made on another GPU or with another TensorRT)."""
    detail = f" (TensorRT: {errors[-1]})" if errors else ""
    if not created:
        raise EngineBuildError(f"the timing cache {path} is not a TensorRT timing cache{detail}; delete it "
                               "(it is rewritten after the build) or pass another file")
    if accepted is False:
        raise EngineBuildError(f"the timing cache {path} was refused: it was made on another GPU or with another "
                               f"TensorRT version{detail}. Nothing was built; delete it (it is rewritten "
                               "after the build) or pass a cache made on this GPU")


def network_precision(dtype: str) -> str:
    """"fp16" / "fp32" from a TensorRT input dtype name ("DataType.HALF", "DataType.FLOAT")."""
    name = str(dtype).upper().rsplit(".", 1)[-1]
    precisions = {"HALF": "fp16", "FLOAT": "fp32"}
    if name not in precisions:
        raise EngineBuildError(f"expected a network input of TensorRT type HALF or FLOAT, got {dtype}")
    return precisions[name]


def validate_engine_metadata(engine_meta: Mapping, onnx_meta: Mapping) -> None:
    """Raise ``EngineBuildError`` when the metadata to write beside an engine is wrong: the
    precision of the network differs from the export's, the profile misses an input or has
    min <= opt <= max broken, a field is missing, or it is not JSON."""
    missing = [k for k in ("tensorrt_version", "precision", "profile", "gpu", "compute_capability", "inputs")
               if not engine_meta.get(k)]
    if missing:
        raise EngineBuildError(f"engine metadata lacks {missing}")
    if engine_meta["precision"] != onnx_meta.get("precision"):
        raise EngineBuildError(f"the network's inputs are {engine_meta['precision']} but the ONNX metadata says "
                               f"{onnx_meta.get('precision')}: export again, or check the export's metadata")
    profile = engine_meta["profile"]
    absent = [name for name in onnx_meta.get("inputs", ()) if name not in profile]
    if absent:
        raise EngineBuildError(f"the optimisation profile has no shapes for the inputs {absent}; it has "
                               f"{sorted(profile)}")
    for name, shapes in profile.items():
        lo, opt, hi = shapes["min"], shapes["opt"], shapes["max"]
        if not len(lo) == len(opt) == len(hi) or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise EngineBuildError(f"profile of {name!r}: expected min <= opt <= max per dimension, got "
                                   f"{lo}, {opt}, {hi}")
    try:
        json.dumps(dict(engine_meta))
    except (TypeError, ValueError) as exc:
        raise EngineBuildError(f"engine metadata is not JSON-serialisable: {exc}") from None


def write_atomically(files: Mapping[Path, bytes]) -> None:
    """Write every file under a temporary name in its folder, then rename each over its target,
    so that a reader never sees half a file. Targets that exist are removed first (the last one
    given, e.g. the metadata, first), so that a crash between renames leaves a missing file (which
    the runtime refuses), never a new engine paired with old metadata."""
    from s2vc.engine.checkpoint import replace_together

    temps = {}
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            temps[path] = tmp
        replace_together(temps)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, batch: Sequence[int] = DEFAULT_BATCH,
                 frames: Sequence[int] = DEFAULT_FRAMES, workspace_gb: float = 4.0, tf32: bool = False,
                 timing_cache: str | Path | None = None, verbose: bool = False) -> Path:
    """Build ``engine_path`` and ``engine_path + '.json'`` from an s2vc ONNX export.

    Everything that can be checked is checked before the (minutes-long) build and before anything
    is written: the timing cache, the precision and the metadata; the engine and its metadata are
    then written atomically, and the timing cache after them.
    """
    import torch
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_onnx_metadata(onnx_path)
    builder = EngineBuilder(workspace_gb=workspace_gb, tf32=tf32, verbose=verbose)
    builder.create_network(onnx_path)
    builder.add_profile(profile_shapes(meta, batch, frames))
    if timing_cache is not None:
        builder.use_timing_cache(timing_cache)
    engine_meta = dict(meta)
    engine_meta.update({
        "tensorrt_version": builder.trt.__version__,
        "precision": network_precision(builder.input_dtypes()[meta["inputs"][0]]),
        "strongly_typed": builder.strongly_typed,
        "profile": {name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
                    for name, s in builder.profile_shapes.items()},
        "onnx_file": onnx_path.name, "onnx_sha256": _sha256(onnx_path),
        "gpu": torch.cuda.get_device_name(), "compute_capability": "%d.%d" % torch.cuda.get_device_capability(),
        "workspace_gb": workspace_gb, "tf32": builder.tf32,
    })
    validate_engine_metadata(engine_meta, meta)
    engine = builder.create_engine()
    meta_path = engine_path.with_name(engine_path.name + ".json")
    write_atomically({engine_path: engine, meta_path: (json.dumps(engine_meta, indent=2) + "\n").encode()})
    if timing_cache is not None:
        write_atomically({Path(timing_cache): builder.timing_cache_bytes()})
    return engine_path
