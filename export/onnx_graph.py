"""Walking and tidying an exported ONNX graph: the subgraphs of a node, the names a graph reads,
the ops a model runs (``list_onnx_ops``), and the two clean-ups every export gets (Constant nodes
to initializers, no-op Slices dropped)."""
from __future__ import annotations

import os

import numpy as np

from s2vc.engine.extras import require

onnx = require("onnx", "ONNX export")      # an extra: one line naming it when absent
TensorProto, numpy_helper = onnx.TensorProto, onnx.numpy_helper


def load_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """``model`` itself, or the model in the file it names."""
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node holds as attributes (If branches, Loop/Scan bodies)."""
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def op_name(node: onnx.NodeProto) -> str:
    """``Op`` for the default ONNX domain, else ``domain::Op``."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for sub in subgraphs(node):
            names |= names_read(sub)
    return names


def list_onnx_ops(model: str | os.PathLike | onnx.ModelProto) -> set[str]:
    """Every op type the model holds: main graph, subgraphs (If/Loop/Scan bodies) and the bodies
    of model-local functions (a call node counts too). Ops outside the default ONNX domain are
    named ``domain::Op``."""
    model = load_model(model)
    ops: set[str] = set()

    def walk(nodes):
        for node in nodes:
            ops.add(op_name(node))
            for sub in subgraphs(node):
                walk(sub.node)

    walk(model.graph.node)
    for fn in model.functions:
        walk(fn.node)
    return ops


# -- clean-up ----------------------------------------------------------------------------------

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


def constants_to_initializers(graph: onnx.GraphProto) -> None:
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


def drop_noop_slices(graph: onnx.GraphProto) -> None:
    """Remove Slices that take everything (start 0, end >= 2^31, step 1): the exporters emit one
    per ``x[:, a:b]`` for the full first axis. Their consumers read the Slice's input instead."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # graph outputs and names that subgraphs read from the outer scope keep their producer
    outputs = {o.name for o in graph.output} | {n for node in graph.node for sub in subgraphs(node)
                                                for n in names_read(sub)}
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
    used = names_read(graph) | {o.name for o in graph.output}
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
