"""ONNX export of the generator (``GeneratorGraph``) and of the flow's encoder and decoder.

    export_generator_onnx(flow, "gen.onnx", alpha=0.676, strategy="zero", height=112, width=112)
        -> gen.onnx  inputs  video float (B, 3, T, H, W) [, noise float (B, D) | order int64 (B, T, D)]
                     outputs out float (B, 3, T, H, W), mask bool (B, D)
           gen.json  the metadata (also in the model's metadata_props as ``s2vc.<field>``)
    export_flow_onnx(flow, "flow_onnx/")
        -> encoder.onnx  frames (N, C, r, r) -> z (N, D);  decoder.onnx  z (N, D) -> frames (N, C, r, r)

Batch B (N) and frames T are dynamic; the frame size is fixed by the graph's pooling matrices.
fp16 models are the graph converted to half and exported with half inputs, so every tensor in the
ONNX graph is fp16 (TensorRT 10+ builds strongly typed networks: precision comes from the graph).

Exporters: ``exporter="dynamo"`` (default; ``torch.onnx.export(..., dynamo=True)``, the exporter
this torch defaults to) or ``"torchscript"`` (the legacy tracer, ``dynamo=False``: same graph, about
5x faster to export on a small CPU, deprecated by PyTorch). The dynamo output is cleaned with
constant folding only (onnxscript's full optimiser costs ~10 s here and changes nothing that
matters for this graph); then, for both exporters, Constant nodes become initializers (TensorRT's
parser wants reduce axes as initializers) and no-op Slices are dropped.

``check_tensorrt_ops`` (``trt_op_check``) checks a model against TensorRT's ONNX-parser op table;
``list_onnx_ops`` (``onnx_graph``, with the clean-ups) lists what a model runs.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import s2vc
from s2vc.engine.checkpoint import replace_together
from s2vc.engine.exported_meta import draw_strategy_inputs, metadata_to_props
from s2vc.engine.extras import require
from s2vc.engine.graph import GeneratorGraph
from s2vc.engine.strategies import STRATEGY_INPUTS

from .export_meta import base_metadata, generator_metadata
from .onnx_graph import constants_to_initializers, drop_noop_slices, list_onnx_ops
# the TensorRT op check lives in trt_op_check; importable from here too, as before the split
from .trt_op_check import TrtOp, check_tensorrt_ops, default_op_table_path, load_op_table

onnx = require("onnx", "ONNX export")      # an extra: one line naming it when absent

__all__ = ["EXPORTERS", "export_flow_onnx", "export_generator_onnx", "generator_metadata", "list_onnx_ops",
           "check_tensorrt_ops", "load_op_table", "default_op_table_path", "TrtOp"]

EXPORTERS = ("dynamo", "torchscript")
TORCHSCRIPT_DEFAULT_OPSET = 18
# a model over this is saved with its weights in a ``.onnx.data`` file beside it (protobuf's 2 GiB)
_EXTERNAL_DATA_BYTES = 1 << 30


# -- the graphs as modules with exactly their inputs ---------------------------------------------

class _GeneratorIO(nn.Module):
    """``GeneratorGraph`` with the inputs its strategy needs and no ``None`` (exporters take none)."""

    def __init__(self, graph: GeneratorGraph):
        super().__init__()
        self.generator = graph

    def forward(self, video: torch.Tensor, extra: torch.Tensor | None = None):
        # the strategy's one extra input, if any, by its name in the strategy table
        inputs = STRATEGY_INPUTS[self.generator.strategy]
        return self.generator(video, extra if "noise" in inputs else None, extra if "order" in inputs else None)


def _export_module(module: nn.Module, args: tuple, names: list[str], outputs: list[str],
                   dynamic: Mapping[str, Mapping[int, str]], opset: int | None, exporter: str) -> onnx.ModelProto:
    """One module to an ONNX ModelProto with the given names and named dynamic axes."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    module = module.eval()
    with torch.no_grad():
        if exporter == "dynamo":
            # torch.onnx's dynamo exporter needs onnxscript too: say so before torch does, at length
            optimizer = require("onnxscript.optimizer", "ONNX export with the dynamo exporter")
            dims: dict[str, torch.export.Dim] = {}
            for axes in dynamic.values():
                for axis_name in axes.values():
                    if axis_name not in dims:
                        # T >= 2 is what the temporal STD needs; B, N >= 1
                        dims[axis_name] = torch.export.Dim(axis_name, min=2 if axis_name == "frames" else 1)
            params = ["video", "extra"] if isinstance(module, _GeneratorIO) else ["x"]
            shapes = {params[i]: {ax: dims[n] for ax, n in dynamic.get(name, {}).items()}
                      for i, name in enumerate(names)}
            with warnings.catch_warnings():
                # one Dim object shared by several inputs is what ties their sizes; not a problem
                warnings.filterwarnings("ignore", message=".*shares the same shape constraints")
                program = torch.onnx.export(module, args, input_names=names, output_names=outputs,
                                            dynamic_shapes=shapes, dynamo=True, optimize=False,
                                            opset_version=opset, verbose=False, external_data=False)
            optimizer.fold_constants(program.model)
            optimizer.remove_unused_nodes(program.model)
            return program.model_proto
        import io
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)      # the legacy exporter's notice
            torch.onnx.export(module, args, buf, input_names=names, output_names=outputs,
                              dynamic_axes={k: dict(v) for k, v in dynamic.items()},
                              opset_version=opset or TORCHSCRIPT_DEFAULT_OPSET, dynamo=False,
                              do_constant_folding=True)
        return onnx.load_from_string(buf.getvalue())


def _metadata_path(path: Path) -> Path:
    """Where the metadata of the model at ``path`` goes (``path`` with suffix .json); ValueError
    for a model path that is itself a .json file (the metadata would overwrite it)."""
    meta_path = path.with_suffix(".json")
    if meta_path == path:
        raise ValueError(f"{path}: an ONNX model needs another suffix than .json (its metadata is written to it)")
    return meta_path


def _finish(model: onnx.ModelProto, meta: Mapping[str, Any], path: Path) -> Path:
    """Clean up, attach the metadata, check, and save ``path`` plus ``path.with_suffix('.json')``."""
    constants_to_initializers(model.graph)
    drop_noop_slices(model.graph)
    del model.metadata_props[:]
    for key, value in metadata_to_props(meta).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "s2vc", s2vc.__version__
    model.doc_string = f"s2vc {meta['kind']} ({meta['precision']})"
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole in a temporary folder beside ``path`` (the external data's location is the
    # final file name), then moved into place as one set (``replace_together``)
    meta_path, data_path = _metadata_path(path), path.with_name(path.name + ".data")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        files = [path.name]
        if model.ByteSize() > _EXTERNAL_DATA_BYTES:
            files.insert(0, data_path.name)
            onnx.save(model, str(staging / path.name), save_as_external_data=True, location=data_path.name)
            onnx.checker.check_model(str(staging / path.name), full_check=True)
        else:
            onnx.save(model, str(staging / path.name))
        (staging / meta_path.name).write_text(json.dumps(dict(meta), indent=2) + "\n")
        files.append(meta_path.name)
        for name in files:
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
        replace_together({path.parent / name: staging / name for name in files}, stale=[data_path])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


# -- public API --------------------------------------------------------------------------------

def export_generator_onnx(flow, path: str | os.PathLike, *, alpha: float, strategy: str, height: int,
                          width: int, upsample: str = "nearest", clamp: bool = False, fp16: bool = False,
                          opset: int | None = None, exporter: str = "dynamo") -> Path:
    """Export the generator for (height, width) frames to ``path`` (and its metadata to
    ``path.with_suffix('.json')``); returns ``path``.

    flow: an AdvFlow; alpha, strategy ("zero", "noise", "shuffle_clip"), upsample, clamp: as for
    ``MotionPreservingGenerator``. fp16: export the half-precision graph (inputs/outputs half).
    opset: the ONNX opset (None: the exporter's default). exporter: "dynamo" or "torchscript".
    """
    path = Path(path)
    _metadata_path(path)                         # a bad path is refused before the export's work
    graph = GeneratorGraph(flow.prepare(), alpha, strategy, height, width, upsample=upsample, clamp=clamp)
    meta = generator_metadata(flow, alpha=alpha, strategy=strategy, height=height, width=width,
                              upsample=upsample, clamp=clamp, fp16=fp16, exporter=exporter)
    dtype = torch.float16 if fp16 else torch.float32
    # the prepared flow shares its weights with ``flow``: convert a copy, never the caller's flow
    module = _GeneratorIO(copy.deepcopy(graph).to(dtype))
    b, t = 2, 3                     # sample sizes; B, T > 1 so that no exporter specialises them
    cfg = flow.config
    video = torch.rand(b, cfg.channels, t, height, width, generator=torch.Generator().manual_seed(0)).to(dtype)
    noise, order = draw_strategy_inputs(strategy, b, t, cfg.dims, generator=torch.Generator().manual_seed(0))
    args = (video,) + ((noise.to(dtype),) if noise is not None else ()) + ((order,) if order is not None else ())
    model = _export_module(module, args, meta["inputs"], meta["outputs"],
                           {k: {int(a): n for a, n in v.items()} for k, v in meta["dynamic_axes"].items()},
                           opset, exporter)
    meta["opset"] = _opset(model)
    return _finish(model, meta, path)


class _Coder(nn.Module):
    def __init__(self, coder: nn.Module):
        super().__init__()
        self.coder = coder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coder(x)


def export_flow_onnx(flow, directory: str | os.PathLike, *, fp16: bool = False, opset: int | None = None,
                     exporter: str = "dynamo") -> dict[str, Path]:
    """Export the prepared flow's encoder (frames (N, C, r, r) -> z (N, D)) and decoder
    (z (N, D) -> frames (N, C, r, r)) to ``directory/encoder.onnx`` and ``directory/decoder.onnx``
    (each with its ``.json``), N dynamic. Returns ``{"encoder": path, "decoder": path}``."""
    directory = Path(directory)
    prepared = copy.deepcopy(flow.prepare())        # shares weights with ``flow``; converted below
    dtype = torch.float16 if fp16 else torch.float32
    cfg = flow.config
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, cfg.channels, cfg.resolution, cfg.resolution, generator=g).to(dtype)
    z = torch.randn(2, cfg.dims, generator=g).to(dtype)
    paths = {}
    for kind, coder, sample, name_in, name_out in (("encoder", prepared.encoder, frames, "frames", "z"),
                                                    ("decoder", prepared.decoder, z, "z", "frames")):
        meta = base_metadata(flow, kind, "fp16" if fp16 else "fp32", exporter)
        meta.update({"inputs": [name_in], "outputs": [name_out],
                     "dynamic_axes": {name_in: {"0": "batch"}, name_out: {"0": "batch"}}})
        model = _export_module(_Coder(coder.to(dtype)), (sample,), [name_in], [name_out],
                               {name_in: {0: "batch"}, name_out: {0: "batch"}}, opset, exporter)
        meta["opset"] = _opset(model)
        paths[kind] = _finish(model, meta, directory / f"{kind}.onnx")
    return paths


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
