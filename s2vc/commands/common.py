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
    alias = (lambda name: [name]) if old_names else (lambda name: [])
    p.add_argument("--synthetic-seed", type=int, default=d.seed,
                   help="synthetic set: the seed it is rendered from (not a run's seed)")
    p.add_argument("--synthetic-bias", *alias("--bias"), dest="synthetic_bias", default=d.bias,
                   choices=tuple(BIAS_LEVELS), help="synthetic set: how strongly looks are tied to classes in train")
    p.add_argument("--synthetic-train-per-class", *alias("--train-per-class"), dest="synthetic_train_per_class",
                   type=int, default=d.train_per_class, help="synthetic set: train videos per class")
    p.add_argument("--synthetic-test-per-class", *alias("--test-per-class"), dest="synthetic_test_per_class",
                   type=int, default=d.test_per_class, help="synthetic set: test videos per class")
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


def read_toml(path: str | os.PathLike, cls: type | None = None) -> dict:
    """A TOML file of settings (``tomllib``: data only), keys with '-' or '_'. With ``cls``,
    keys that are not its fields are an error naming them and the valid ones."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist (expected a TOML file such as configs/*.toml)")
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    values = {k.replace("-", "_"): v for k, v in raw.items()}
    if cls is not None:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"config file {path}: unknown keys {unknown}; expected some of {sorted(known)}")
    return values


def apply_toml_defaults(parser: argparse.ArgumentParser, argv: list[str],
                        path: str | os.PathLike) -> argparse.Namespace:
    """Re-parse ``argv`` with the TOML file's values as defaults: flags given on the command line
    win over the file, the file over the parser's defaults. Keys are flags of ``parser``: a
    flag's name (``crop_size``, as ``--crop-size``) or its settings field (``size``)."""
    names = {a.dest: a.dest for a in parser._actions}
    for a in parser._actions:   # the names --help shows; not BooleanOptionalAction's --no-X (inverted)
        names.update({s.lstrip("-").replace("-", "_"): a.dest for s in visible_option_strings(a)
                      if s.startswith("--") and not (isinstance(a, argparse.BooleanOptionalAction)
                                                     and s.startswith("--no-"))})
    values = {names.get(k, k): v for k, v in read_toml(path).items()}
    known = set(names.values())
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"config file {path}: unknown keys {unknown} (keys are this command's flags)")
    parser.set_defaults(**values)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
# Exceptions that are a user's mistake (a flag, a path, a file's content) rather than a bug:
# their message is the whole story (RuntimeError: the decode and engine-build errors, a named
# backend that cannot run). Anything else also gets its type and a pointer to --debug.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


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
