"""The metadata an exported file carries (its format: ``s2vc.engine.exported_meta``), written by
the ONNX and TorchScript exports alike."""
from __future__ import annotations

from typing import Any

import torch

import s2vc
from s2vc.engine.exported_meta import FORMAT, FORMAT_VERSION, STRATEGY_INPUTS, flow_sha256
from s2vc.engine.suppression import check_alpha


def base_metadata(flow, kind: str, precision: str, exporter: str) -> dict[str, Any]:
    """What every export of ``flow`` records: format, kind ("generator" / "encoder" / "decoder"),
    the flow's hash and shape, precision ("fp32" / "fp16"), the exporter and the versions."""
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
    """The metadata an exported generator carries (see ``s2vc.engine.exported_meta``)."""
    check_alpha(alpha)
    meta = base_metadata(flow, "generator", "fp16" if fp16 else "fp32", exporter)
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
