"""What several commands share: flag groups, building typed settings from flags and TOML files,
and turning a user's mistake into one line.

A command module (``s2vc/commands/<name>.py``) has ``HELP`` (one line for ``s2vc --help``),
``add_arguments(parser)`` and ``run(args) -> int``; ``run`` builds the library's typed settings
(a dataclass) from the flags, calls the library, prints. Libraries never see ``args``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# the --fold flag of every command that reads a dataset
FOLD_HELP = "split number (UCF101: 1-3, or a fold of your own from s2vc split-val; HMDB51: 1-3)"


class UsageError(ValueError):
    """A user's mistake found by a command (a flag, a file): printed as one line, exit 2."""


# ---------------------------------------------------------------------------------------------
# Flag groups
# ---------------------------------------------------------------------------------------------
def default_device() -> str:
    """Every command's ``--device`` default: ``"cuda"`` when a GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_device_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "") -> None:
    """``--device`` with the shared default (``default_device()``); ``what`` says what runs there."""
    p.add_argument("--device", default=default_device(),
                   help=f"torch device{what and ' ' + what}: cuda, cuda:1, cpu (cuda when one is available, else cpu)")


def add_synthetic_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                            old_names: bool = False) -> None:
    """The built-in synthetic set's flags, the same for every command (defaults from
    ``training.synthetic.SyntheticSet``). ``old_names`` also accepts reproduce/ablate's earlier
    ``--bias / --train-per-class / --test-per-class`` (aliases kept for one release)."""
    from s2vc.training.data.synthetic import BIAS_LEVELS, SyntheticSet
    from s2vc.training.data.synthetic_render import CAMERAS

    d = SyntheticSet()

    def add(name: str, old: str, **kwargs: Any) -> None:
        if old_names:
            deprecated_alias(p, name, old=old, **kwargs)
        else:
            p.add_argument(name, **kwargs)

    p.add_argument("--synthetic-seed", type=int, default=d.seed,
                   help="synthetic set: the seed it is rendered from (not a run's seed)")
    add("--synthetic-bias", "--bias", dest="synthetic_bias", default=d.bias, choices=tuple(BIAS_LEVELS),
        help="synthetic set: how strongly looks are tied to classes in train")
    add("--synthetic-train-per-class", "--train-per-class", dest="synthetic_train_per_class", type=int,
        default=d.train_per_class, help="synthetic set: train videos per class")
    add("--synthetic-test-per-class", "--test-per-class", dest="synthetic_test_per_class", type=int,
        default=d.test_per_class, help="synthetic set: test videos per class")
    p.add_argument("--synthetic-camera", choices=CAMERAS, default=d.camera,
                   help="synthetic set: still (the scene does not move), shake (a few pixels of jitter per "
                        "frame) or pan (a slow drift across a scene larger than the frame)")
    p.add_argument("--synthetic-val-per-class", type=int, default=d.val_per_class,
                   help="synthetic set: validation videos per class, held out of training, looks drawn as the "
                        "test split's (0: no validation split)")


class _DeprecatedSpellings:
    """Mixed into an action by ``deprecated_alias``: an old spelling still parses, prints one
    deprecation line on stderr, and is left out of ``--help`` (HelpFormatter) and the usage line."""

    deprecated_names: dict[str, str]   # old option string -> the one to use
    said: set[str]                      # old spellings already reported by this parser (--config re-parses)

    def __call__(self, parser, namespace, values, option_string=None):
        new = self.deprecated_names.get(option_string)
        if new is not None and option_string not in self.said:
            self.said.add(option_string)
            print(f"s2vc: {option_string} is deprecated, use {new}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)

    def format_usage(self) -> str:   # BooleanOptionalAction lists every spelling in the usage line
        return " | ".join(s for s in self.option_strings if s not in self.deprecated_names)


_DEPRECATING: dict[type, type] = {}


def deprecated_alias(p: argparse.ArgumentParser | argparse._ArgumentGroup, *names: str,
                     old: str | tuple[str, ...], **kwargs: Any) -> argparse.Action:
    """``p.add_argument(*names, *old, **kwargs)`` where the ``old`` spellings (issue 23's earlier
    names) still parse but are hidden from ``--help`` and print one line naming ``names[0]``.
    With ``action=BooleanOptionalAction`` the ``--no-OLD`` forms are old too. Give ``dest`` when
    the library settings expect the old name's."""
    old = (old,) if isinstance(old, str) else tuple(old)
    if kwargs.get("action") is None and "choices" not in kwargs:   # not the old dest's name in --help
        kwargs.setdefault("metavar", names[0].lstrip("-").upper().replace("-", "_"))
    action = p.add_argument(*names, *old, **kwargs)
    renamed = {o: names[0] for o in old}
    if isinstance(action, argparse.BooleanOptionalAction):
        renamed.update({"--no-" + o[2:]: "--no-" + names[0][2:] for o in old if o.startswith("--")})
    base = type(action)
    if base not in _DEPRECATING:
        _DEPRECATING[base] = type(f"Deprecating{base.__name__}", (_DeprecatedSpellings, base), {})
    action.__class__ = _DEPRECATING[base]
    action.deprecated_names, action.said = renamed, set()
    return action


def visible_option_strings(action: argparse.Action) -> list[str]:
    """The spellings ``--help`` shows: the action's option strings less its deprecated aliases."""
    hidden = getattr(action, "deprecated_names", {})
    return [s for s in action.option_strings if s not in hidden]


def synthetic_set(args: argparse.Namespace):
    """The ``SyntheticSet`` the synthetic flags name."""
    from s2vc.training.data.synthetic import SyntheticSet

    return SyntheticSet(seed=args.synthetic_seed, bias=args.synthetic_bias,
                        train_per_class=args.synthetic_train_per_class,
                        test_per_class=args.synthetic_test_per_class,
                        camera=getattr(args, "synthetic_camera", "still"),
                        val_per_class=getattr(args, "synthetic_val_per_class", 0))


# ---------------------------------------------------------------------------------------------
# Typed settings
# ---------------------------------------------------------------------------------------------
def settings_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """A ``cls`` dataclass filled from the flags whose names (``dest``) are its fields; fields
    without a flag keep their defaults; ``overrides`` win over both."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)


def read_toml(path: str | os.PathLike) -> dict:
    """A TOML file of settings (``tomllib``: data only), keys with '-' or '_' (as '_'); which
    keys a command takes is ``apply_config``'s check."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist (expected a TOML file such as configs/*.toml)")
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    return {k.replace("-", "_"): v for k, v in raw.items()}


def config_keys(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, str | None]]:
    """The keys a ``--config`` file may set for ``parser``'s command: {key: (its flag, None, or
    the name to use instead)}. A key is a flag's name as ``--help`` shows it (``crop_size`` for
    ``--crop-size``; ``no_compare`` for a ``--no-compare`` switch); the settings field behind a
    renamed flag (``size``, ``clip_len``) is an old name, still read, that says what to use. Not
    BooleanOptionalAction's inverted ``--no-X``, --help, --config itself."""
    keys: dict[str, tuple[argparse.Action, str | None]] = {}
    for a in parser._actions:
        if a.dest in (argparse.SUPPRESS, "help", "config") or isinstance(a, argparse._SubParsersAction):
            continue
        names = [s.lstrip("-").replace("-", "_") for s in visible_option_strings(a)
                 if s.startswith("--") and not (isinstance(a, argparse.BooleanOptionalAction) and s.startswith("--no-"))]
        for name in names:
            keys[name] = (a, None)
        if not a.option_strings:                      # a positional: its dest is its name
            keys[a.dest] = (a, None)
        elif a.dest not in keys and names and not isinstance(a, argparse._StoreFalseAction):
            keys[a.dest] = (a, names[0])
    return keys


def _check_config_value(path, key: str, action: argparse.Action, value: Any) -> None:
    """A config value of the kind its flag takes (argparse checks neither choices, nor types,
    nor counts of defaults): one line naming the key, the value and what was expected."""
    switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                 argparse.BooleanOptionalAction))
    many = action.nargs not in (None, "?", 0) and not switch
    items = value if many and isinstance(value, list) else [value]
    if many and not isinstance(value, list):
        raise UsageError(f"config file {path}: {key} = {value!r} must be a list (the flag takes several values)")
    if isinstance(action.nargs, int) and not switch and len(items) != action.nargs:
        raise UsageError(f"config file {path}: {key} = {value!r} must be a list of {action.nargs} values")
    if action.nargs == "+" and not items:
        raise UsageError(f"config file {path}: {key} = [] must hold at least one value")
    for item in items:
        if switch:
            if not isinstance(item, bool):
                raise UsageError(f"config file {path}: {key} = {item!r} must be true or false")
        elif action.type is int and (isinstance(item, bool) or not isinstance(item, int)):
            raise UsageError(f"config file {path}: {key} = {item!r} must be an integer")
        elif action.type is float and (isinstance(item, bool) or not isinstance(item, (int, float))):
            raise UsageError(f"config file {path}: {key} = {item!r} must be a number")
        elif action.type in (None, str) and not isinstance(item, str):
            raise UsageError(f"config file {path}: {key} = {item!r} must be a string (in quotes)")
        if action.choices is not None and item not in action.choices:
            raise UsageError(f"config file {path}: {key} = {item!r} is not one of {list(action.choices)}")


def apply_config(parser: argparse.ArgumentParser, argv: list[str], path: str | os.PathLike) -> None:
    """Make the TOML file's values ``parser``'s defaults, so that parsing ``argv`` (this
    command's part of the command line) gives flags > file > the parser's own defaults (several
    files: applied in order, a later one over an earlier one). Keys are ``config_keys``; values
    are checked as the flag would check them. A flag the file sets is no longer required; a
    switch the file turns on gains a hidden ``--no-X`` to turn it off again; in a group of
    exclusive flags, a member given in ``argv`` drops the file's values of the others (``--data``
    on the command line wins over ``dataset`` in the file)."""
    keys = config_keys(parser)
    raw = read_toml(path)
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise UsageError(f"config file {path}: unknown keys {unknown} (keys are this command's flags; "
                         f"--help lists them)")

    def given(action: argparse.Action) -> bool:
        return any(t == s or t.startswith(s + "=") for t in argv for s in action.option_strings)

    overruled = set()
    for group in parser._mutually_exclusive_groups:
        if any(given(a) for a in group._group_actions):
            overruled.update(a.dest for a in group._group_actions if not given(a))
    values = {}
    for key, value in raw.items():
        action, instead = keys[key]
        _check_config_value(path, key, action, value)
        if instead is not None:
            print(f"s2vc: config key {key} in {path} is an old name, use {instead}", file=sys.stderr)
        if isinstance(action, argparse._StoreFalseAction):   # no_compare = true: compare is False
            value = not value
        if action.dest in overruled:
            continue
        values[action.dest] = tuple(value) if isinstance(value, list) and isinstance(action.default, tuple) else value
        if isinstance(action, argparse._StoreTrueAction) and value:
            off = ["--no-" + s[2:] for s in visible_option_strings(action) if s.startswith("--")]
            if not any(o in parser._option_string_actions for o in off):
                parser.add_argument(*off, dest=action.dest, action="store_false", help=argparse.SUPPRESS)
    for a in parser._actions:
        if a.dest in values:
            a.required = False
    for group in parser._mutually_exclusive_groups:
        if any(a.dest in values for a in group._group_actions):
            group.required = False
    parser.set_defaults(**values)


def find_configs(argv: list[str]) -> list[str]:
    """The values of every ``--config FILE`` / ``--config=FILE`` in ``argv``, in order."""
    found = []
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif token.startswith("--config="):
            found.append(token.split("=", 1)[1])
    return found


def leaf_parser(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """(the parser of the (sub-)subcommand ``argv`` names, the part of ``argv`` after its name):
    ``s2vc eval retrieval ...`` gives eval's retrieval parser."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = next((t for t in argv if sub is not None and t in sub.choices), None)
        if name is None:
            return parser, argv
        parser, argv = sub.choices[name], argv[argv.index(name) + 1:]


def add_config_argument(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` on a command's parser (``s2vc/cli.py`` adds it to every command)."""
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file of this command's flags (key = a flag's name, e.g. crop_size = 112; "
                        "configs/); flags given on the command line win over it")


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the ``--config FILE`` files' values as the named
    command's defaults (``apply_config``, in the order given); the Namespace keeps ``argv`` and
    ``configs`` (the files). A ``--config`` before the command's name is a one-line error."""
    paths = find_configs(argv)
    if paths:
        leaf, own = leaf_parser(parser, argv)
        if not any(a.dest == "config" for a in leaf._actions) or len(find_configs(own)) != len(paths):
            raise UsageError("--config goes after the command's name: s2vc COMMAND [SUBCOMMAND] --config FILE ...")
        for path in paths:
            apply_config(leaf, own, path)
    args = parser.parse_args(argv)
    args.argv, args.configs = argv, paths
    return args


REAL_DATASETS = ("ucf101", "hmdb51", "kinetics")   # where S²VC with the bundled flow is refused


def require_fitted_flow(command: str, *, dataset: str | None, mode: str, flow: str | None,
                        root: str | None = None, fold: int = 1, frames: int | None = None,
                        stride: int | None = None, decode_size: int | None = None) -> str | None:
    """The flow a ``command`` on ``dataset`` may run S²VC with: one of the public datasets
    (``REAL_DATASETS``) with the bundled flow is refused, naming the train-flow command that fits
    one, its alpha calibrated on the command's own clip (``frames`` ``stride`` apart, decoded at
    ``decode_size``); the bundled flow was fitted to a few sample clips: on UCF101 it makes S²VC no
    better than MoCo (docs/RESULTS.md). A ``folder`` of one's own videos is left to the flow fit
    check, which says whether the flow fits them. ``--flow bundled`` runs the bundled one anyway.
    Returns the flow path to use (None: the bundled one)."""
    import shlex

    from s2vc.training.flow.fitted import BUNDLED_FLOW

    if flow == BUNDLED_FLOW:
        return None
    if flow is None and mode == "s2vc" and dataset in REAL_DATASETS:
        out = f"flow_{dataset}.pt"
        fit = ["s2vc", "train-flow", "--dataset", dataset, "--root", str(root) if root is not None else "ROOT"]
        fit += ["--fold", str(fold)] if fold != 1 else []
        fit += ["--resolution", "64", "--frames", str(frames or 16), "--stride", str(stride or 2)]
        fit += ["--decode-size", str(decode_size)] if decode_size else []
        recipe = " (or configs/recipe/ucf101/1_train_flow.toml)" if dataset == "ucf101" else ""
        raise UsageError(
            f"S2VC on {dataset} needs a flow fitted to it, not the bundled one; fit one first: "
            f"{' '.join(shlex.quote(a) for a in fit)} --out {out}{recipe}, then add --flow {out} "
            f"(--flow bundled forces the bundled one)")
    return flow


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
# Exceptions that are a user's mistake (a flag, a path, a file's content) rather than a bug:
# their message is the whole story (RuntimeError: the decode and engine-build errors, a named
# backend that cannot run). Anything else also gets its type and a pointer to --debug.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


def in_flag_names(line: str, parser: argparse.ArgumentParser) -> str:
    """``line`` (a library's message) with the settings fields it names as the subject of a
    check (``clip_len must be >= 2``, ``batch=0``) spelled as the command's flags (``--frames``,
    ``--batch-size``): the user typed flags, not the dataclasses' field names."""
    import re

    for a in parser._actions:
        shown = [s for s in visible_option_strings(a) if s.startswith("--")]
        if not shown or a.dest in (argparse.SUPPRESS, "help") or shown[0][2:].replace("-", "_") == a.dest:
            continue
        line = re.sub(rf"(?<![\w./-]){re.escape(a.dest)}(?=\s+must\b|\s*=)", shown[0], line)
    return line


def error_line(exc: BaseException) -> str:
    """One line for ``exc``: its message's first line (long library help is cut), type-named
    for errors that are not a user's mistake."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and not exc.strerror is None:
        text = f"{exc.strerror}: {exc.filename}"
    first = text.splitlines()[0]
    if not isinstance(exc, USER_ERRORS):
        first = f"{type(exc).__name__}: {first}"
    return first
