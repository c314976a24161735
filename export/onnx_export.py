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

``check_tensorrt_ops`` checks a model against TensorRT's ONNX-parser op table (op present and
supported, input types, constant-input restrictions); ``list_onnx_ops`` lists what a model runs.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import onnx.inliner
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import s2vc
from s2vc.engine.engine_meta import (
    FORMAT,
    FORMAT_VERSION,
    STRATEGY_INPUTS,
    draw_strategy_inputs,
    flow_sha256,
    metadata_to_props,
)
from s2vc.engine.graph import GeneratorGraph

EXPORTERS = ("dynamo", "torchscript")
TORCHSCRIPT_DEFAULT_OPSET = 18
# a model over this is saved with its weights in a ``.onnx.data`` file beside it (protobuf's 2 GiB)
_EXTERNAL_DATA_BYTES = 1 << 30
_TABLE_NAME = "onnx_tensorrt_supported_ops.tsv"


# -- metadata ----------------------------------------------------------------------------------

def _base_metadata(flow, kind: str, precision: str, exporter: str) -> dict[str, Any]:
    cfg = flow.config
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
        "flow_sha256": flow_sha256(flow), "flow_resolution": cfg.resolution,
        "flow_channels": cfg.channels, "flow_dims": cfg.dims, "flow_config": cfg.to_dict(),
        "precision": precision, "exporter": exporter,
        "s2vc_version": s2vc.__version__, "torch_version": torch.__version__,
    }


def generator_metadata(flow, *, alpha: float, strategy: str, height: int, width: int,
                       upsample: str = "nearest", clamp: bool = False, fp16: bool = False,
                       exporter: str = "dynamo") -> dict[str, Any]:
    """The metadata an exported generator carries (see ``s2vc.engine.engine_meta``)."""
    meta = _base_metadata(flow, "generator", "fp16" if fp16 else "fp32", exporter)
    extra = list(STRATEGY_INPUTS[strategy])
    meta.update({
        "alpha": float(alpha), "strategy": strategy, "height": int(height), "width": int(width),
        "upsample": upsample, "clamp": bool(clamp),
        "inputs": ["video"] + extra, "outputs": ["out", "mask"],
        "dynamic_axes": {"video": {"0": "batch", "2": "frames"}, "noise": {"0": "batch"},
                         "order": {"0": "batch", "1": "frames"}, "out": {"0": "batch", "2": "frames"},
                         "mask": {"0": "batch"}},
    })
    meta["dynamic_axes"] = {k: v for k, v in meta["dynamic_axes"].items() if k in meta["inputs"] + meta["outputs"]}
    return meta


# -- the graphs as modules with exactly their inputs ---------------------------------------------

class _GeneratorIO(nn.Module):
    """``GeneratorGraph`` with the inputs its strategy needs and no ``None`` (exporters take none)."""

    def __init__(self, graph: GeneratorGraph):
        super().__init__()
        self.generator = graph

    def forward(self, video: torch.Tensor, extra: torch.Tensor | None = None):
        if self.generator.strategy == "noise":
            return self.generator(video, extra, None)
        if self.generator.strategy == "shuffle_clip":
            return self.generator(video, None, extra)
        return self.generator(video, None, None)


def _export_module(module: nn.Module, args: tuple, names: list[str], outputs: list[str],
                   dynamic: Mapping[str, Mapping[int, str]], opset: int | None, exporter: str) -> onnx.ModelProto:
    """One module to an ONNX ModelProto with the given names and named dynamic axes."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    module = module.eval()
    with torch.no_grad():
        if exporter == "dynamo":
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
            from onnxscript import optimizer
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


# -- graph clean-up ----------------------------------------------------------------------------

def _constant_tensor(node: onnx.NodeProto) -> TensorProto | None:
    if len(node.attribute) != 1:
        return None
    a = node.attribute[0]
    if a.name == "value":
        t = TensorProto()
        t.CopyFrom(a.t)
        return t
    values = {"value_float": lambda: np.array(a.f, np.float32),
              "value_floats": lambda: np.array(list(a.floats), np.float32),
              "value_int": lambda: np.array(a.i, np.int64),
              "value_ints": lambda: np.array(list(a.ints), np.int64)}
    return numpy_helper.from_array(values[a.name]()) if a.name in values else None


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Main-graph Constant nodes become initializers: TensorRT's parser wants reduce axes (and
    TopK's K) as initializers, and it is one thing less to parse."""
    keep = []
    for node in graph.node:
        tensor = _constant_tensor(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if tensor is None:
            keep.append(node)
            continue
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
    del graph.node[:]
    graph.node.extend(keep)


def _drop_noop_slices(graph: onnx.GraphProto) -> None:
    """Remove Slices that take everything (start 0, end >= 2^31, step 1): the exporters emit one
    per ``x[:, a:b]`` for the full first axis. Their consumers read the Slice's input instead."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # graph outputs and names that subgraphs read from the outer scope keep their producer
    outputs = {o.name for o in graph.output} | {n for node in graph.node for sub in _subgraphs(node)
                                                for n in _names_read(sub)}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        ins = list(node.input) + [""] * (5 - len(node.input))
        consts = [inits.get(n) if n else None for n in ins[1:5]]
        noop = (node.op_type == "Slice" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs
                and consts[0] is not None and consts[1] is not None
                and np.all(consts[0] == 0) and np.all(consts[1] >= 2**31 - 1)
                and (not ins[4] or (consts[3] is not None and np.all(consts[3] == 1))))
        if noop:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = _names_read(graph) | {o.name for o in graph.output}
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for sub in _subgraphs(node):
            names |= _names_read(sub)
    return names


def _finish(model: onnx.ModelProto, meta: Mapping[str, Any], path: Path) -> Path:
    """Clean up, attach the metadata, check, and save ``path`` plus ``path.with_suffix('.json')``."""
    _constants_to_initializers(model.graph)
    _drop_noop_slices(model.graph)
    del model.metadata_props[:]
    for key, value in metadata_to_props(meta).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "s2vc", s2vc.__version__
    model.doc_string = f"s2vc {meta['kind']} ({meta['precision']})"
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() > _EXTERNAL_DATA_BYTES:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
        onnx.checker.check_model(str(path), full_check=True)
    else:
        onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps(dict(meta), indent=2) + "\n")
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
        meta = _base_metadata(flow, kind, "fp16" if fp16 else "fp32", exporter)
        meta.update({"inputs": [name_in], "outputs": [name_out],
                     "dynamic_axes": {name_in: {"0": "batch"}, name_out: {"0": "batch"}}})
        model = _export_module(_Coder(coder.to(dtype)), (sample,), [name_in], [name_out],
                               {name_in: {0: "batch"}, name_out: {0: "batch"}}, opset, exporter)
        meta["opset"] = _opset(model)
        paths[kind] = _finish(model, meta, directory / f"{kind}.onnx")
    return paths


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


# -- inspection --------------------------------------------------------------------------------

def _load(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def list_onnx_ops(model: str | os.PathLike | onnx.ModelProto) -> set[str]:
    """Every op type the model holds: main graph, subgraphs (If/Loop/Scan bodies) and the bodies
    of model-local functions (a call node counts too). Ops outside the default ONNX domain are
    named ``domain::Op``."""
    model = _load(model)
    ops: set[str] = set()

    def walk(nodes):
        for node in nodes:
            ops.add(_op_name(node))
            for sub in _subgraphs(node):
                walk(sub.node)

    walk(model.graph.node)
    for fn in model.functions:
        walk(fn.node)
    return ops


@dataclasses.dataclass(frozen=True)
class TrtOp:
    """One row of TensorRT's ONNX-parser op table."""

    op: str
    supported: bool
    types: frozenset[int]          # ONNX TensorProto element types; empty: not listed
    notes: str


_TRT_TYPES = {
    "FP32": [TensorProto.FLOAT], "FP16": [TensorProto.FLOAT16], "BF16": [TensorProto.BFLOAT16],
    "INT32": [TensorProto.INT32], "INT64": [TensorProto.INT64], "INT8": [TensorProto.INT8],
    "UINT8": [TensorProto.UINT8], "BOOL": [TensorProto.BOOL], "INT4": [TensorProto.INT4],
    "FP8": [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2], "FP4": [getattr(TensorProto, "FLOAT4E2M1", -1)],
}
_FLOATING = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}


def default_op_table_path() -> Path:
    """Where the TensorRT op table is looked for: ``$S2VC_TRT_OP_TABLE``, a copy beside this module,
    then ``$S2VC_SHARED/data`` or the ``shared/`` folder beside the repository."""
    candidates = []
    if os.environ.get("S2VC_TRT_OP_TABLE"):
        candidates.append(Path(os.environ["S2VC_TRT_OP_TABLE"]))
    here = Path(__file__).resolve().parent
    candidates.append(here / _TABLE_NAME)
    shared = Path(os.environ.get("S2VC_SHARED", here.parent.parent / "shared"))
    candidates.append(shared / "data" / _TABLE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"TensorRT's ONNX op table ({_TABLE_NAME}) not found; looked in "
                            + ", ".join(str(c) for c in candidates) + " (set S2VC_TRT_OP_TABLE)")


def load_op_table(path: str | os.PathLike | None = None) -> dict[str, TrtOp]:
    """Read the op table (TSV with columns op, supported (Y/N), notes ("types: ...; restrictions: ..."))."""
    path = Path(path) if path is not None else default_op_table_path()
    table = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            notes = (row.get("notes") or "").strip()
            types: set[int] = set()
            for part in notes.split(";"):
                part = part.strip()
                if part.startswith("types:"):
                    for name in part[len("types:"):].split(","):
                        types.update(_TRT_TYPES.get(name.strip(), []))
            table[row["op"].strip()] = TrtOp(row["op"].strip(), row["supported"].strip().upper() == "Y",
                                             frozenset(types), notes)
    if not table:
        raise ValueError(f"{path}: empty TensorRT op table")
    return table


# inputs (by position) that TensorRT needs as build-time constants
_CONSTANT_INPUTS = {"CumSum": (1, "axis"), "OneHot": (1, "depth"), "Dropout": (2, "training_mode"),
                    "Squeeze": (1, "axes"), "Unsqueeze": (1, "axes")}
_RESIZE_OK = {"coordinate_transformation_mode": {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                                 "asymmetric", "align_corners"},
              "mode": {"nearest", "linear"},
              "nearest_mode": {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"},
              "keep_aspect_ratio_policy": {"stretch"}}
TOPK_MAX_K = 3840


def check_tensorrt_ops(model: str | os.PathLike | onnx.ModelProto,
                       table: str | os.PathLike | Mapping[str, TrtOp] | None = None) -> list[str]:
    """Problems TensorRT's ONNX parser would have with ``model`` (empty list: none found).

    Strict: every node (local functions inlined, subgraphs included) must be a default-domain op
    that the table marks supported; its data input (the first) and every floating input must have
    a type the table lists for it; ReduceX axes must be initializers; TopK's K an initializer
    below 3840 with ``sorted=1``; CumSum/OneHot/Dropout/Squeeze/Unsqueeze constant inputs must be
    initializers or Constant outputs; Resize and pooling attributes within what TensorRT takes.
    """
    table = table if isinstance(table, Mapping) else load_op_table(table)
    model = _load(model)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:        # noqa: BLE001 - types are a bonus check; the op checks still run
        pass
    types: dict[str, int] = {}
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    problems: list[str] = []

    def where(node: onnx.NodeProto) -> str:
        return f"node {node.name or node.output[0]!r} ({_op_name(node)})"

    def walk(graph: onnx.GraphProto, outer_inits: dict[str, TensorProto], outer_consts: set[str]):
        inits = dict(outer_inits)
        inits.update({t.name: t for t in graph.initializer})
        for t in graph.initializer:
            types.setdefault(t.name, t.data_type)
        consts = set(outer_consts) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        for node in graph.node:
            problems.extend(_check_node(node, table, inits, consts, types, where(node)))
            for sub in _subgraphs(node):
                walk(sub, inits, consts)

    walk(model.graph, {}, set())
    return problems


def _check_node(node: onnx.NodeProto, table: Mapping[str, TrtOp], inits: Mapping[str, TensorProto],
                consts: set[str], types: Mapping[str, int], where: str) -> list[str]:
    if node.domain not in ("", "ai.onnx"):
        return [f"{where}: op outside the ONNX domain (TensorRT needs a plugin for it)"]
    info = table.get(node.op_type)
    if info is None:
        return [f"{where}: not in TensorRT's ONNX op table"]
    if not info.supported:
        return [f"{where}: not supported by TensorRT's ONNX parser"]
    problems = []
    if info.types:
        for i, name in enumerate(node.input):
            elem = types.get(name) if name else None
            if elem is None or (i > 0 and elem not in _FLOATING):
                continue
            if elem not in info.types:
                problems.append(f"{where}: input {name!r} is {TensorProto.DataType.Name(elem)}, which TensorRT "
                                f"does not take for {node.op_type} ({info.notes.split(';')[0]})")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in inits:
            problems.append(f"{where}: axes {node.input[1]!r} is not an initializer (TensorRT needs constant "
                            "reduce axes)")
    if node.op_type == "TopK":
        k_name = node.input[1] if len(node.input) > 1 else ""
        if k_name not in inits:
            problems.append(f"{where}: K {k_name!r} is not an initializer (TensorRT needs a constant K)")
        else:
            k = int(np.asarray(numpy_helper.to_array(inits[k_name])).reshape(-1)[0])
            if k >= TOPK_MAX_K:
                problems.append(f"{where}: K = {k} but TensorRT's TopK needs K < {TOPK_MAX_K}")
        if attrs.get("sorted", 1) != 1:
            problems.append(f"{where}: sorted = 0 but TensorRT's TopK needs sorted = 1")
    if node.op_type in _CONSTANT_INPUTS:
        index, what = _CONSTANT_INPUTS[node.op_type]
        if len(node.input) > index and node.input[index] and node.input[index] not in inits \
                and node.input[index] not in consts:
            problems.append(f"{where}: {what} {node.input[index]!r} is not a constant (TensorRT needs it at "
                            "build time)")
    if node.op_type == "Resize":
        for name, allowed in _RESIZE_OK.items():
            value = attrs.get(name)
            value = value.decode() if isinstance(value, bytes) else value
            if value is not None and value not in allowed:
                problems.append(f"{where}: {name} = {value!r} is not one TensorRT supports ({sorted(allowed)})")
        if attrs.get("antialias", 0):
            problems.append(f"{where}: antialias is not supported by TensorRT")
    if node.op_type in ("AveragePool", "MaxPool", "LpPool") and any(d != 1 for d in attrs.get("dilations", [])):
        problems.append(f"{where}: dilations must be all ones for TensorRT")
    return problems
