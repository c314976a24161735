"""TorchScript export of the generator: ``GeneratorGraph`` scripted and saved with its metadata.

    export_torchscript(flow, "gen.pt", alpha=0.676, strategy="zero", height=112, width=112)
    module, meta = s2vc.engine.exported_meta.load_torchscript("gen.pt", flow, alpha=..., strategy=...)
    out, mask = module(video, noise, order)       # as GeneratorGraph.forward

The metadata (the same dict the ONNX export carries) is the file's ``s2vc.json`` extra file.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from s2vc.engine.checkpoint import atomic_open
from s2vc.engine.graph import GeneratorGraph

from .export_meta import generator_metadata


def export_torchscript(flow, path: str | os.PathLike, *, alpha: float, strategy: str, height: int, width: int,
                       upsample: str = "nearest", clamp: bool = False, fp16: bool = False) -> Path:
    """Script the generator for (height, width) frames and save it to ``path``; returns ``path``.
    Arguments as for ``export_generator_onnx``; fp16: the half-precision graph."""
    path = Path(path)
    graph = GeneratorGraph(flow.prepare(), alpha, strategy, height, width, upsample=upsample, clamp=clamp)
    # the prepared flow shares its weights with ``flow``: convert a copy, never the caller's flow
    graph = copy.deepcopy(graph).to(torch.float16 if fp16 else torch.float32).eval()
    meta = generator_metadata(flow, alpha=alpha, strategy=strategy, height=height, width=width,
                              upsample=upsample, clamp=clamp, fp16=fp16, exporter="torch.jit.script")
    meta["inputs"] = ["video", "noise", "order"]          # the scripted forward takes all three
    scripted = torch.jit.script(graph)
    with atomic_open(path, "wb") as f:                 # a killed export never leaves half a file
        torch.jit.save(scripted, f, _extra_files={"s2vc.json": json.dumps(meta, indent=2)})
    return path
