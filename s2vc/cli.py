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
    "eval": (None, None, "evaluations of a pretrained backbone: retrieval, linear, finetune, temporal-order, "
             "probes, similarity, static-gain, cam"),
    "reproduce": ("s2vc.training.experiments", "add_reproduce_arguments",
                  "pretrain MoCo / S²VC / TFD / oracle over seeds on the synthetic set, evaluate, tabulate"),
    "ablate": ("s2vc.training.experiments", "add_ablate_arguments",
               "pretrain S²VC over alphas (Fig. 3) or strategies (Table 4), evaluate, tabulate"),
    "export": ("s2vc.export.cli", "add_arguments",
               "export the generator to TorchScript or ONNX (then export/build_trt.py)"),
    "bench": ("s2vc.bench", "add_arguments", "time the generator's backends on this machine and print the table"),
}

# ``s2vc eval NAME`` beyond retrieval / linear / temporal-order: module (add_arguments, main), help
EVALS = {
    "similarity": ("s2vc.training.similarity", "intra-class cosine similarity of Z vs Z_p (paper Fig. 4)"),
    "finetune": ("s2vc.training.finetune", "finetune the backbone with a classifier; windows x (ten-)crop testing"),
    "static-gain": ("s2vc.training.static_gain", "per-class gain vs static accuracy, Pearson r (paper Fig. 6)"),
    "cam": ("s2vc.training.cam", "class activation maps over the frames of videos (paper Fig. 7)"),
    "probes": ("s2vc.training.probes", "motion and look probes on the synthetic set's test split"),
}
MAINS = {"reproduce": "main_reproduce", "ablate": "main_ablate"}   # default: "main"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2vc", description="S²VC: suppress static visual cues in videos "
                                     "with a normalizing flow (motion-preserved video generation).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, add, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "eval":
            from s2vc.training import evaluate
            evals = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
            evaluate.add_eval_arguments(evals)
            for sub_name, (module_name, help_text) in EVALS.items():
                module = importlib.import_module(module_name)
                q = evals.add_parser(sub_name, help=help_text)
                module.add_arguments(q)
                q.set_defaults(func=module.main)
            continue
        module = importlib.import_module(module_name)
        getattr(module, add)(p)
        p.set_defaults(func=getattr(module, MAINS.get(name, "main")))
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
