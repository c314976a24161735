"""The ``s2vc`` command: one entry point, one subcommand per job (``s2vc.commands``).

A user's mistake ends as one line on stderr naming what was expected and what arrived, and a
non-zero exit; ``--debug`` (or ``S2VC_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import sys

from s2vc.commands import COMMANDS


def _debug_flag(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--debug", action="store_true", default=default,
                   help="on an error, show the full traceback instead of one line")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` lists each flag's default as "(default: X)", except where the help text already
    says what the default is, the default is None (nothing set), or the flag is a switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (re.search(r"\bdefault[: ]", text, re.IGNORECASE) or action.default is None
                or action.default is argparse.SUPPRESS
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))):
            return text
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        # deprecated spellings (commands.common.deprecated_alias) parse but are not advertised
        hidden = getattr(action, "deprecated_names", None)
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


class Parser(argparse.ArgumentParser):
    """The parser of ``s2vc`` and of every (sub-)subcommand: subparsers are made of the class of
    their parent (argparse's ``add_subparsers``), so the help formatter is set here once."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """argparse's usage error, naming flags as --help does: "required: --method-json", not
        "--method-json/--method" (an old spelling, ``commands.common.deprecated_alias``)."""
        for action in self._actions:
            hidden = getattr(action, "deprecated_names", None)
            if hidden:
                shown = [s for s in action.option_strings if s not in hidden]
                message = message.replace("/".join(action.option_strings), "/".join(shown))
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="s2vc", description="S²VC: suppress static visual cues in videos "
                    "with a normalizing flow (motion-preserved video generation).")
    _debug_flag(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"s2vc.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", None))
        # after the subcommand too; SUPPRESS keeps a `s2vc --debug CMD` from being overwritten
        _debug_flag(p, argparse.SUPPRESS)
        module.add_arguments(p)
        p.set_defaults(run=module.run)   # eval's sub-subcommands set their own run
        _add_config(p)
    return parser


def _add_config(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` (TOML of the flags, ``commands.common.apply_config``) on every command
    and every sub-subcommand (``eval retrieval``, ``export onnx``), where a command has none."""
    from s2vc.commands.common import add_config_argument

    sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is not None:
        for leaf in dict.fromkeys(sub.choices.values()):   # aliases share a parser
            _add_config(leaf)
    elif not any(a.dest == "config" for a in p._actions):
        add_config_argument(p)


def _legacy_argv(argv: list[str]) -> list[str]:
    """Earlier command lines that the flags' new meanings would misread: ``bench --config NAME``
    named a preset (now ``--preset``; ``--config`` is a TOML file in every command)."""
    if argv[:1] == ["bench"] or (argv[:2] == ["--debug", "bench"]):
        from s2vc.commands.bench import legacy_argv
        return legacy_argv(argv)
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    from s2vc.commands.common import UsageError, parse_command_line
    try:
        args = parse_command_line(parser, _legacy_argv(argv))
    except UsageError as exc:   # a --config file that does not fit the command: one line
        if "--debug" in argv or os.environ.get("S2VC_DEBUG", "") not in ("", "0"):
            raise
        words = [t for t in argv if t != "--debug"]
        words = words[:next((i for i, t in enumerate(words) if t.startswith("-")), len(words))][:2]
        print(f"s2vc {' '.join(words)}: error: {exc}", file=sys.stderr)
        return 2
    debug = args.debug or os.environ.get("S2VC_DEBUG", "") not in ("", "0")
    name = " ".join(x for x in (args.command, getattr(args, "eval_command", None)) if x)
    try:
        result = args.run(args)
        # a command's run returns an exit code, or its results (a dict) when it succeeded
        return result if isinstance(result, int) else 0
    except KeyboardInterrupt:
        print(f"s2vc {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error becomes one line unless --debug
        if debug:
            raise
        from s2vc.commands.common import USER_ERRORS, UsageError, error_line, in_flag_names, leaf_parser
        print(f"s2vc {name}: error: {in_flag_names(error_line(exc), leaf_parser(parser, argv)[0])}", file=sys.stderr)
        if not isinstance(exc, USER_ERRORS):
            print("(run again with --debug for the traceback)", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
