"""``s2vc export {torchscript,onnx}``: the generator (or the flow's encoder/decoder) as files that
the torchscript / onnxruntime / tensorrt backends run; ``python export/build_trt.py`` turns an
ONNX export into a TensorRT engine."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("format", choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True, help="output file (.pt / .onnx), or folder for --what flow")
    p.add_argument("--what", choices=("generator", "flow"), default="generator",
                   help="the whole generator (video in, video out), or the flow's encoder and decoder (onnx)")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--alpha", type=float, default=None, help="default: the checkpoint's calibrated alpha")
    p.add_argument("--strategy", choices=("zero", "noise", "shuffle_clip"), default="zero")
    p.add_argument("--height", type=int, default=112)
    p.add_argument("--width", type=int, default=112)
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest")
    p.add_argument("--clamp", action="store_true")
    p.add_argument("--fp16", action="store_true", help="half-precision graph (TensorRT 11 takes precision from it)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="torch.onnx exporter (onnx only)")
    return p


def main(args: argparse.Namespace) -> int:
    from s2vc.engine import load_flow
    flow = load_flow(args.flow)
    from s2vc.engine.suppression import resolve_alpha
    alpha = resolve_alpha(flow, args.alpha)
    common = dict(alpha=alpha, strategy=args.strategy, height=args.height, width=args.width,
                  upsample=args.upsample, clamp=args.clamp, fp16=args.fp16)
    if args.format == "torchscript":
        if args.what != "generator":
            raise SystemExit("s2vc export torchscript: only --what generator")
        from .torchscript_export import export_torchscript
        paths = [export_torchscript(flow, args.out, **common)]
    elif args.what == "flow":
        from .onnx_export import export_flow_onnx
        paths = list(export_flow_onnx(flow, args.out, fp16=args.fp16, exporter=args.exporter).values())
    else:
        from .onnx_export import check_tensorrt_ops, export_generator_onnx
        paths = [export_generator_onnx(flow, args.out, exporter=args.exporter, **common)]
        problems = check_tensorrt_ops(paths[0])
        print("TensorRT op check: " + ("every op supported" if not problems else "; ".join(problems)))
    for path in paths:
        print(f"wrote {Path(path)}")
    return 0
