"""The ``s2vc`` command: one entry point, one subcommand per job. Each subcommand is a thin
wrapper over an importable ``main(args)``."""
from __future__ import annotations

import argparse
import sys


def _train_flow(args: argparse.Namespace) -> int:
    from s2vc.training import flow_training
    flow_training.main(args)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from s2vc.engine import generate
    return generate.main(args)


def _pretrain(args: argparse.Namespace) -> int:
    from s2vc.training import pretrain
    pretrain.main(args)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from s2vc import bench
    return bench.main(args)


def _export(args: argparse.Namespace) -> int:
    from s2vc.export import cli as export_cli
    return export_cli.main(args)


def _calibrate(args: argparse.Namespace) -> int:
    from s2vc.engine import calibrate
    return calibrate.main(args)


def _similarity(args: argparse.Namespace) -> int:
    from s2vc.training import similarity
    similarity.main(args)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from s2vc.engine import demo
    return demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2vc", description="S²VC: suppress static visual cues in videos "
                                     "with a normalizing flow (motion-preserved video generation).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from s2vc.engine import demo
    p = sub.add_parser("demo", help="run the generator on the built-in default data and explain the output")
    demo.add_arguments(p)
    p.set_defaults(func=_demo)

    from s2vc.engine import generate
    p = sub.add_parser("generate", help="write motion-preserved versions of video files")
    generate.add_arguments(p)
    p.set_defaults(func=_generate)

    from s2vc.engine import calibrate
    p = sub.add_parser("calibrate", help="preserved fraction of latents vs alpha for a flow; the alpha for a fraction")
    calibrate.add_arguments(p)
    p.set_defaults(func=_calibrate)

    from s2vc.training import flow_training
    p = sub.add_parser("train-flow", help="train the flow by maximum likelihood on frames of videos/images")
    flow_training.get_args_parser(p)
    p.set_defaults(func=_train_flow)

    from s2vc.training import pretrain
    p = sub.add_parser("pretrain", help="MoCo pretraining with motion-preserved positives (torchrun for several processes)")
    pretrain.get_args_parser(p)
    p.set_defaults(func=_pretrain)

    from s2vc.training import evaluate
    p = sub.add_parser("eval", help="retrieval / linear probe / temporal-order test of a pretrained backbone")
    evals = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL")
    evaluate.add_eval_arguments(evals)
    from s2vc.training import similarity
    p = evals.add_parser("similarity", help="intra-class cosine similarity of Z vs Z_p (paper Fig. 4)")
    similarity.add_arguments(p)
    p.set_defaults(func=_similarity)

    from s2vc.export import cli as export_cli
    p = sub.add_parser("export", help="export the generator to TorchScript or ONNX (then export/build_trt.py)")
    export_cli.add_arguments(p)
    p.set_defaults(func=_export)

    from s2vc import bench
    p = sub.add_parser("bench", help="time the generator's backends on this machine and print the table")
    bench.add_arguments(p)
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("s2vc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
