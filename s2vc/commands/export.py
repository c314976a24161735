"""``s2vc export {torchscript,onnx}``: the generator (or the flow's encoder/decoder) as files that
the torchscript / onnxruntime / tensorrt backends run (``s2vc.export``); ``python
export/build_trt.py`` turns an ONNX export into a TensorRT engine."""
from __future__ import annotations

import argparse
from pathlib import Path

from s2vc.commands.common import UsageError

HELP = "export the generator to TorchScript or ONNX (then export/build_trt.py)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from s2vc.engine.strategies import EXPORTABLE_STRATEGIES

    p.add_argument("format", choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True, help="output file (.pt / .onnx), or folder for --what flow")
    p.add_argument("--what", choices=("generator", "flow"), default="generator",
                   help="the whole generator (video in, video out), or the flow's encoder and decoder (onnx)")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--alpha", type=float, default=None, help="default: the checkpoint's calibrated alpha")
    p.add_argument("--strategy", choices=EXPORTABLE_STRATEGIES, default="zero",
                   help="suppression strategy (those a static graph can run; see s2vc generate --help)")
    p.add_argument("--height", type=int, default=112)
    p.add_argument("--width", type=int, default=112)
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest")
    p.add_argument("--clamp", action="store_true")
    p.add_argument("--fp16", action="store_true", help="half-precision graph (TensorRT 11 takes precision from it)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="torch.onnx exporter (onnx only)")
    return p


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.checkpoint import load_flow
    from s2vc.engine.suppression import resolve_alpha

    if args.format == "torchscript" and args.what != "generator":
        raise UsageError(f"s2vc export torchscript exports the generator only (--what generator), got --what {args.what}")
    flow = load_flow(args.flow)
    common = dict(alpha=resolve_alpha(flow, args.alpha), strategy=args.strategy, height=args.height,
                  width=args.width, upsample=args.upsample, clamp=args.clamp, fp16=args.fp16)
    if args.format == "torchscript":
        from s2vc.export.torchscript_export import export_torchscript
        paths = [export_torchscript(flow, args.out, **common)]
    elif args.what == "flow":
        from s2vc.export.onnx_export import export_flow_onnx
        paths = list(export_flow_onnx(flow, args.out, fp16=args.fp16, exporter=args.exporter).values())
    else:
        from s2vc.export.onnx_export import export_generator_onnx
        from s2vc.export.trt_op_check import check_tensorrt_ops
        paths = [export_generator_onnx(flow, args.out, exporter=args.exporter, **common)]
        problems = check_tensorrt_ops(paths[0])
        print("TensorRT op check: " + ("every op supported" if not problems else "; ".join(problems)))
    for path in paths:
        print(f"wrote {Path(path)}")
    return 0
