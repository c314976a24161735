"""What an exported generator is: its metadata, its inputs, and the checks that refuse a mismatch.

Every exported artefact (ONNX model, TensorRT engine, TorchScript file) carries one metadata dict::

    {"format": "s2vc-export", "format_version": 1, "kind": "generator" | "encoder" | "decoder",
     "flow_sha256": ..., "flow_resolution": r, "flow_channels": C, "flow_dims": D,
     "alpha": ..., "strategy": ..., "height": H, "width": W, "upsample": ..., "clamp": ...,
     "precision": "fp32" | "fp16", "inputs": [...], "outputs": [...], "s2vc_version": ..., ...}

In an ONNX model it sits in ``metadata_props`` as ``s2vc.<field>`` = JSON of the value (and in
``model.json`` beside it); a TensorRT engine has it in ``model.engine.json``; a TorchScript file in
its ``s2vc.json`` extra file. The runtimes (``runtime_onnx``, ``runtime_trt``) read it and call
``check_metadata`` before running anything, so an engine built for another flow, threshold or
frame size is refused with both values named, never run.

This module is runtime code: it never imports ``s2vc.export``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch

from .strategies import STRATEGY_INPUTS  # noqa: F401 (re-exported: export/export_meta.py reads it here)
from .suppression import draw_random_inputs
from .video_checks import check_video

FORMAT = "s2vc-export"
FORMAT_VERSION = 1
PROP_PREFIX = "s2vc."
KINDS = ("generator", "encoder", "decoder")
PRECISIONS = ("fp32", "fp16")
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class MetadataMismatchError(ValueError):
    """An exported model that does not fit the flow, settings or inputs it was asked to run with."""


def flow_sha256(flow) -> str:
    """The flow's weight hash: ``flow.sha256`` (set and verified by ``load_flow``), else computed
    from its state_dict the way checkpoints compute it."""
    digest = getattr(flow, "sha256", None)
    if digest:
        return digest
    from .checkpoint import state_dict_sha256
    return state_dict_sha256(flow.state_dict())


# -- storage -----------------------------------------------------------------------------------

def metadata_to_props(meta: Mapping[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` entries (string to string) for a metadata dict."""
    return {PROP_PREFIX + key: json.dumps(value) for key, value in meta.items()}


def metadata_from_props(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of ``metadata_to_props``; entries without the ``s2vc.`` prefix are ignored."""
    return {key[len(PROP_PREFIX):]: json.loads(value) for key, value in props.items()
            if key.startswith(PROP_PREFIX)}


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The s2vc metadata of an ONNX model file (weights are not loaded)."""
    from .extras import require
    onnx = require("onnx", "reading an ONNX export's metadata")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    model = onnx.load(str(path), load_external_data=False)
    meta = metadata_from_props({p.key: p.value for p in model.metadata_props})
    if meta.get("format") != FORMAT:
        raise MetadataMismatchError(f"{path} carries no s2vc metadata (not made by s2vc's export): "
                                    "export it with s2vc.export.onnx_export.export_generator_onnx")
    return meta


def read_engine_metadata(engine_path: str | Path) -> dict[str, Any]:
    """The metadata JSON written beside a TensorRT engine (``MODEL.engine.json``)."""
    engine_path = Path(engine_path)
    meta_path = engine_path.with_name(engine_path.name + ".json")
    if not engine_path.is_file():
        raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{engine_path} has no metadata file {meta_path.name} beside it; engines "
                                "built by python export/build_trt.py write one (rebuild the engine)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise MetadataMismatchError(f"{meta_path} is not s2vc export metadata")
    return meta


# -- checks ------------------------------------------------------------------------------------

def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "none"


def check_metadata(meta: Mapping[str, Any], flow=None, alpha: float | None = None,
                   strategy: str | None = None, height: int | None = None, width: int | None = None,
                   *, kind: str = "generator", source: str = "the exported model") -> None:
    """Raise ``MetadataMismatchError`` unless ``meta`` fits what is given (None: not checked).

    flow: an AdvFlow (its weight hash is compared); alpha, strategy, height, width: the settings
    the caller expects. Each error names the stored value and the given one.
    """
    if meta.get("format") != FORMAT:
        raise MetadataMismatchError(f"{source} carries no s2vc export metadata")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise MetadataMismatchError(f"{source} has metadata format version {version}; this s2vc reads "
                                    f"version {FORMAT_VERSION}: re-export it")
    if meta.get("kind") != kind:
        raise MetadataMismatchError(f"{source} is a {meta.get('kind')!r} export, expected a {kind!r} one")
    if flow is not None:
        given = flow_sha256(flow)
        if given != meta.get("flow_sha256"):
            raise MetadataMismatchError(
                f"{source} was exported from the flow with weights sha256 {_short(meta.get('flow_sha256'))} "
                f"but the given flow has {_short(given)}: re-export it from this flow")
    if alpha is not None:
        stored = meta.get("alpha")
        if stored is None or not math.isclose(float(alpha), float(stored), rel_tol=1e-7, abs_tol=1e-12):
            raise MetadataMismatchError(f"{source} was exported with alpha = {stored} but alpha = {alpha} "
                                        "was asked for: re-export it with this alpha")
    if strategy is not None and strategy != meta.get("strategy"):
        raise MetadataMismatchError(f"{source} was exported with strategy {meta.get('strategy')!r} but "
                                    f"strategy {strategy!r} was asked for: re-export it with this strategy")
    if (height is not None and height != meta.get("height")) or (width is not None and width != meta.get("width")):
        raise MetadataMismatchError(
            f"{source} was exported for {meta.get('height')}x{meta.get('width')} frames but got "
            f"{height}x{width} (H x W): the graph's pooling is fixed to its frame size, so export one for "
            "this size or resize the video")


def check_generator_inputs(meta: Mapping[str, Any], video: torch.Tensor, noise: torch.Tensor | None,
                           order: torch.Tensor | None, *, source: str = "the exported model") -> None:
    """Shapes and dtypes of a generator call against the metadata, with errors that say what
    was expected and what arrived (the runtimes' own errors would only name a tensor)."""
    check_video(video, meta["flow_channels"], source=source, values=False)
    d = meta["flow_dims"]
    b, _, t, h, w = video.shape
    check_metadata(meta, height=h, width=w, source=source)
    needs = STRATEGY_INPUTS[meta["strategy"]]
    if "noise" in needs:
        if noise is None or tuple(noise.shape) != (b, d) or not noise.is_floating_point():
            got = None if noise is None else f"{noise.dtype} {tuple(noise.shape)}"
            raise ValueError(f"strategy 'noise' needs noise float (B, D) = ({b}, {d}), got {got}")
    elif noise is not None:
        raise ValueError(f"{source} (strategy {meta['strategy']!r}) takes no noise input")
    if "order" in needs:
        if order is None or tuple(order.shape) != (b, t, d) or order.dtype != torch.int64:
            got = None if order is None else f"{order.dtype} {tuple(order.shape)}"
            raise ValueError(f"strategy 'shuffle_clip' needs order int64 (B, T, D) = ({b}, {t}, {d}), got {got}")
    elif order is not None:
        raise ValueError(f"{source} (strategy {meta['strategy']!r}) takes no order input")


def draw_strategy_inputs(strategy: str, batch: int, frames: int, dims: int, *,
                         device: torch.device | str = "cpu",
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(noise, order)`` for a static graph (float32 noise), drawn by
    ``suppression.draw_random_inputs`` as every backend draws them."""
    if strategy not in STRATEGY_INPUTS:
        raise ValueError(f"strategy {strategy!r} has no static graph; exportable: {tuple(STRATEGY_INPUTS)}")
    return draw_random_inputs(strategy, batch, frames, dims, device=device, generator=generator)


def load_torchscript(path: str | Path, flow=None, *, alpha: float | None = None,
                     strategy: str | None = None, map_location: str | torch.device | None = "cpu"):
    """``(module, meta)``: a generator saved by ``s2vc.export.torchscript_export``, checked like the
    other runtimes. ``module(video, noise, order) -> (out, mask)`` as ``GeneratorGraph``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file not found: {path}")
    files = {"s2vc.json": ""}
    module = torch.jit.load(str(path), map_location=map_location, _extra_files=files)
    if not files["s2vc.json"]:
        raise MetadataMismatchError(f"{path} carries no s2vc.json metadata (not made by s2vc's export)")
    meta = json.loads(files["s2vc.json"])
    check_metadata(meta, flow, alpha, strategy, source=str(path))
    return module, meta
