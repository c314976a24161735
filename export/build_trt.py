#!/usr/bin/env python
"""Build a TensorRT engine from an s2vc ONNX export.

    python export/build_trt.py --onnx gen.onnx --out gen.engine [--batch 1,8,16] [--frames 2,16,32]
        [--fp16-check] [--tf32] [--workspace-gb 4] [--timing-cache trt.cache] [--verbose]

Writes gen.engine and gen.engine.json (the export's metadata, TensorRT version, precision, profile).
Needs an NVIDIA GPU with its driver and TensorRT 10+ (``pip install tensorrt``); without them it
says so in one line and exits 1. The logic is in ``s2vc.export.trt_builder`` (importable, tested).
"""
import os
import sys

if __package__ in (None, ""):
    # Run as a script, Python puts export/ itself first on sys.path, where its modules would
    # shadow installed ones by name; the package is imported as s2vc.export instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

try:
    from s2vc.export.trt_builder import main
except ImportError as exc:  # the message is the point; a traceback would bury it
    sys.exit(f"build_trt: cannot import s2vc ({exc}); install the project first: "
             "pip install -e .")

if __name__ == "__main__":
    sys.exit(main())
