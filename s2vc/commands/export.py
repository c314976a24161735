"""``s2vc export {torchscript,onnx}``: the generator (or the flow's encoder/decoder) as files that
the torchscript / onnxruntime / tensorrt backends run (``s2vc.export``); ``s2vc export trt`` (or
``python export/build_trt.py``, the same flags and builder) turns an ONNX export into a TensorRT
engine."""
from __future__ import annotations

import argparse
from pathlib import Path

from s2vc.commands.common import UsageError

HELP = "export the generator to TorchScript or ONNX; build a TensorRT engine from the ONNX export (trt)"
FORMATS = {"torchscript": "the generator as a TorchScript file (the torchscript backend)",
           "onnx": "the generator, or the flow's encoder and decoder, as ONNX (the onnxruntime backend; then trt)",
           "trt": "a TensorRT engine from an ONNX export (the tensorrt backend; needs an NVIDIA GPU and TensorRT 10+)"}


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # one sub-subcommand per format: trt's flags (an ONNX file in) are not the exporters' (a flow in)
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, help_text in FORMATS.items():
        fp = sub.add_parser(name, help=help_text, description=help_text)
        # as after every command (s2vc/cli.py); SUPPRESS keeps an earlier --debug
        fp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, show the full traceback instead of one line")
        if name == "trt":
            _add_trt_arguments(fp)
        else:
            _add_export_arguments(fp, onnx=name == "onnx")
    return p


def _add_trt_arguments(p: argparse.ArgumentParser) -> None:
    # the flags are parsed without TensorRT (its import waits for the build), so --help answers anywhere
    from s2vc.export import build_trt

    build_trt.add_arguments(p)
    p.set_defaults(run=_run_trt)


def _run_trt(args: argparse.Namespace) -> int:
    from s2vc.export import build_trt

    def refuse(message: str):
        raise UsageError(message)

    build_trt.check_args(args, refuse)
    path = build_trt.build_from_args(args)
    print(f"wrote {path} and {path.name}.json")
    return 0


def _add_export_arguments(p: argparse.ArgumentParser, onnx: bool) -> None:
    """The flags of ``export torchscript`` (``onnx=False``) or ``export onnx``: each format lists
    only its own (``--what flow`` and ``--exporter`` are ONNX's)."""
    from s2vc.engine.strategies import EXPORTABLE_STRATEGIES

    if onnx:
        p.add_argument("--out", required=True, help="output file (.onnx), or folder for --what flow")
        p.add_argument("--what", choices=("generator", "flow"), default="generator",
                       help="the whole generator (video in, video out), or the flow's encoder and decoder as two "
                            "files (the flow's flags only: --flow, --fp16, --exporter)")
    else:
        p.add_argument("--out", required=True, help="output file (.pt)")
    p.add_argument("--flow", default=None, help="flow checkpoint (default: the bundled one)")
    p.add_argument("--alpha", type=float, default=None, help="default: the checkpoint's calibrated alpha")
    p.add_argument("--strategy", choices=EXPORTABLE_STRATEGIES, default="zero",
                   help="suppression strategy (those a static graph can run; see s2vc generate --help)")
    p.add_argument("--height", type=int, default=112, help="frame height in pixels the graph takes")
    p.add_argument("--width", type=int, default=112, help="frame width in pixels the graph takes")
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest",
                   help="how the flow-resolution key is brought back to the frame size")
    p.add_argument("--clamp", action="store_true", help="clip the output to [0, 1] inside the graph")
    if onnx:
        p.add_argument("--fp16", action="store_true",
                       help="half-precision graph (TensorRT 11 takes precision from it)")
        p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                       help="torch.onnx exporter")
    else:
        p.add_argument("--fp16", action="store_true", help="half-precision graph")


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.checkpoint import load_flow
    from s2vc.engine.suppression import resolve_alpha

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
