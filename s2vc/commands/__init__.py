"""The ``s2vc`` subcommands: one small module each (``HELP``, ``add_arguments(p)``, ``run(args)``).

A command parses flags, builds the library's typed settings, calls the library and prints; the
work itself lives in ``s2vc.engine``, ``s2vc.training`` and ``s2vc.export`` (docs/ARCHITECTURE.md).
"""

# name -> module under s2vc.commands, in the order ``s2vc --help`` lists them
COMMANDS = {
    "demo": "demo",
    "generate": "generate",
    "calibrate": "calibrate",
    "train-flow": "train_flow",
    "pretrain": "pretrain",
    "eval": "eval",
    "reproduce": "reproduce",
    "ablate": "ablate",
    "split-val": "split_val",
    "export": "export",
    "bench": "bench",
    "info": "info",
}
