"""Will TensorRT's ONNX parser take this model? ``check_tensorrt_ops`` checks every node against
TensorRT's ONNX-parser op table (``onnx_tensorrt_supported_ops.tsv``: op present and supported,
input types, constant-input restrictions, Resize/pooling attributes)."""
from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from s2vc.engine.extras import require

onnx = require("onnx", "the TensorRT op check of an ONNX export")   # an extra: one line when absent
require("onnx.inliner", "the TensorRT op check of an ONNX export")
TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper

from .onnx_graph import load_model, op_name, subgraphs

TABLE_NAME = "onnx_tensorrt_supported_ops.tsv"


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
    """Where the TensorRT op table is: ``$S2VC_TRT_OP_TABLE`` when set, else the copy that ships
    beside this module (its source: onnx_tensorrt_supported_ops.SOURCE.txt)."""
    candidates = []
    if os.environ.get("S2VC_TRT_OP_TABLE"):
        candidates.append(Path(os.environ["S2VC_TRT_OP_TABLE"]))
    candidates.append(Path(__file__).resolve().parent / TABLE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"TensorRT's ONNX op table ({TABLE_NAME}) not found; looked in "
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
    model = load_model(model)
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
        return f"node {node.name or node.output[0]!r} ({op_name(node)})"

    def walk(graph: onnx.GraphProto, outer_inits: dict[str, TensorProto], outer_consts: set[str]):
        inits = dict(outer_inits)
        inits.update({t.name: t for t in graph.initializer})
        for t in graph.initializer:
            types.setdefault(t.name, t.data_type)
        consts = set(outer_consts) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        for node in graph.node:
            problems.extend(_check_node(node, table, inits, consts, types, where(node)))
            for sub in subgraphs(node):
                walk(sub, inits, consts)

    walk(model.graph, {}, set())
    return problems


def _check_node(node: onnx.NodeProto, table: Mapping[str, TrtOp], inits: Mapping[str, TensorProto],
                consts: set[str], types: Mapping[str, int], where: str) -> list[str]:
    """The problems of one node: its op, its input types, its constant inputs, its attributes."""
    if node.domain not in ("", "ai.onnx"):
        return [f"{where}: op outside the ONNX domain (TensorRT needs a plugin for it)"]
    info = table.get(node.op_type)
    if info is None:
        return [f"{where}: not in TensorRT's ONNX op table"]
    if not info.supported:
        return [f"{where}: not supported by TensorRT's ONNX parser"]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (_check_input_types(node, info, types, where) + _check_constant_inputs(node, attrs, inits, consts, where)
            + _check_attributes(node, attrs, where))


def _check_input_types(node: onnx.NodeProto, info: TrtOp, types: Mapping[str, int], where: str) -> list[str]:
    """The data input (the first) and every floating input must have a type the table lists."""
    problems = []
    if not info.types:
        return problems
    for i, name in enumerate(node.input):
        elem = types.get(name) if name else None
        if elem is None or (i > 0 and elem not in _FLOATING):
            continue
        if elem not in info.types:
            problems.append(f"{where}: input {name!r} is {TensorProto.DataType.Name(elem)}, which TensorRT "
                            f"does not take for {node.op_type} ({info.notes.split(';')[0]})")
    return problems


def _check_constant_inputs(node: onnx.NodeProto, attrs: Mapping, inits: Mapping[str, TensorProto],
                           consts: set[str], where: str) -> list[str]:
    """Inputs TensorRT needs at build time: reduce axes, TopK's K (and its limits), the inputs
    of ``_CONSTANT_INPUTS``."""
    problems = []
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
    return problems


def _check_attributes(node: onnx.NodeProto, attrs: Mapping, where: str) -> list[str]:
    """Resize and pooling attributes within what TensorRT takes."""
    problems = []
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
