"""The ``s2vc`` command: one entry point, one subcommand per job. Each subcommand is a thin
wrapper over an importable ``main(args)``."""
from __future__ import annotations

import argparse
import importlib
import sys


# name -> (module, its function that adds the flags, help). Each module has ``main(args)``.
COMMANDS = {
    "demo": ("s2vc.engine.demo", "add_arguments",
             "run the generator on the built-in default data and explain the output"),
    "generate": ("s2vc.engine.generate", "add_arguments", "write motion-preserved versions of video files"),
    "calibrate": ("s2vc.engine.calibrate", "add_arguments",
                  "preserved fraction of latents vs alpha for a flow; the alpha for a fraction"),
    "train-flow": ("s2vc.training.flow_training", "get_args_parser",
                   "train the flow by maximum likelihood on frames of videos/images"),
    "pretrain": ("s2vc.training.pretrain", "get_args_parser",
                 "MoCo pretraining with motion-preserved positives (torchrun for several processes)"),
    "eval": (None, None, "retrieval / linear probe / temporal-order / similarity of a pretrained backbone"),
    "export": ("s2vc.export.cli", "add_arguments",
               "export the generator to TorchScript or ONNX (then export/build_trt.py)"),
    "bench": ("s2vc.bench", "add_arguments", "time the generator's backends on this machine and print the table"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2vc", description="S²VC: suppress static visual cues in videos "
                                     "with a normalizing flow (motion-preserved video generation).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, add, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "eval":
            from s2vc.training import evaluate, similarity
            evals = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
            evaluate.add_eval_arguments(evals)
            q = evals.add_parser("similarity", help="intra-class cosine similarity of Z vs Z_p (paper Fig. 4)")
            similarity.add_arguments(q)
            q.set_defaults(func=similarity.main)
            continue
        module = importlib.import_module(module_name)
        getattr(module, add)(p)
        p.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        result = args.func(args)
        # a command's main returns an exit code, or its results (a dict) when it succeeded
        return result if isinstance(result, int) else 0
    except KeyboardInterrupt:
        print("s2vc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
