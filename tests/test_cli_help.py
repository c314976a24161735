"""Every flag of every ``s2vc`` command, nested ones (``eval retrieval``, ``export trt``) included,
has help text, ``--help`` shows defaults, and ``--device`` has the one shared default
(``s2vc.commands.common.default_device``: cuda when available, else cpu)."""
from __future__ import annotations

import argparse

import pytest
import torch

from s2vc.cli import HelpFormatter, build_parser
from s2vc.commands.common import default_device, parse_command_line, visible_option_strings

# commands whose --device means something else; the reason is the value
DEVICE_EXEMPT = {"s2vc info": "a filter: the default None reports every device there is"}


def walk(parser: argparse.ArgumentParser, name: str = "s2vc"):
    """(command name, parser) for ``parser`` and every sub(-sub)command, each parser once."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for sub_name, sub in action.choices.items():
                if id(sub) not in seen:          # an alias names the same parser
                    seen.add(id(sub))
                    yield from walk(sub, f"{name} {sub_name}")


def flags(parser: argparse.ArgumentParser):
    """The parser's own flags and positionals (not -h, not the subcommand choice)."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.fixture(scope="module")
def commands():
    return list(walk(build_parser()))


def test_the_walk_reaches_nested_commands(commands):
    names = {name for name, _ in commands}
    assert {"s2vc generate", "s2vc eval retrieval", "s2vc eval key-bands", "s2vc export trt"} <= names


def test_every_flag_has_help(commands):
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in commands for a in flags(p)
               if a.help is not argparse.SUPPRESS and not (a.help or "").strip()]
    assert not missing, f"{len(missing)} flags without help text: {missing}"


def test_device_has_the_shared_default(commands):
    wrong = [f"{name}: {a.default!r}" for name, p in commands for a in flags(p)
             if a.dest == "device" and name not in DEVICE_EXEMPT and a.default != default_device()]
    assert not wrong, f"--device should default to default_device() ({default_device()!r}): {wrong}"
    assert sum(a.dest == "device" for _, p in commands for a in flags(p)) >= 10


def test_device_default_follows_cuda(monkeypatch):
    """The default is asked when the parser is built: with a GPU there, every command says cuda."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices = {name: a.default for name, p in walk(build_parser()) for a in flags(p)
               if a.dest == "device" and name not in DEVICE_EXEMPT}
    assert devices and set(devices.values()) == {"cuda"}, devices


def test_help_shows_defaults(commands):
    for name, p in commands:
        assert p.formatter_class is HelpFormatter, name
        p.format_help()   # a '%' in a help text would fail here, now that defaults are formatted in
    text = dict(commands)["s2vc eval retrieval"].format_help()
    assert "(default: 16)" in text and "(default: coclr)" in text
    pretrain = " ".join(dict(commands)["s2vc pretrain"].format_help().split())
    assert "--mode {" in pretrain and "(default: s2vc)" in pretrain
    # a switch or a None default gets no "(default: ...)"; a help that says its default keeps its own words
    assert "(default: False)" not in text and "(default: None)" not in text
    # "the paper's default" does not say the flag's default; "default: the bundled one" does
    generate = " ".join(dict(commands)["s2vc generate"].format_help().split())
    assert "zero the rest (no alpha) (default: zero)" in generate
    assert "(default: the bundled one;" in generate and "bundled one) (default" not in generate


def test_long_commands_take_no_progress(commands):
    names = {name: p for name, p in commands}
    for name in ("calibrate", "generate", "train-flow", "pretrain", "reproduce", "eval retrieval", "eval linear",
                 "eval temporal-order", "eval probes", "eval similarity", "eval finetune", "eval key-bands"):
        assert "no_progress" in {a.dest for a in flags(names[f"s2vc {name}"])}, name


def test_calibrate_shows_a_bar_unless_no_progress(tmp_path, capsys):
    import numpy as np

    from s2vc.cli import main
    from s2vc.engine import video_io
    frames = (np.random.default_rng(0).random((16, 32, 32, 3)) * 255).astype(np.uint8)
    video = tmp_path / "v.mp4"
    video_io.write_video(video, frames, fps=10)
    args = ["calibrate", str(video), "--frames", "8", "--stride", "1", "--decode-size", "32",
            "--plot", str(tmp_path / "c.png")]
    assert main(args) == 0
    assert "calibrating" in capsys.readouterr().err
    assert main([*args, "--no-progress"]) == 0
    assert "calibrating" not in capsys.readouterr().err


# issue 23's one vocabulary: canonical flag -> spellings of the same concept no parser may show
# (they stay as hidden aliases, see test_old_spelling_parses_and_says_so)
FORBIDDEN = {
    "--frames": {"--clip-len", "--clip-length", "--num-frames"},
    "--decode-size": {"--size", "--short-side"},
    "--crop-size": {"--size", "--crop"},
    "--batch-size": {"--batch", "--bs"},
    "--backend": {"--gen-backend", "--generator-backend"},
    "--mode": {"--method", "--key"},
    "--clamp": {"--clamp-key", "--no-clamp-key"},
}
# a spelling that names another concept there; the reason is the value
SPELLING_EXEMPT = {("s2vc export trt", "--batch"): "the TensorRT profile's MIN,OPT,MAX range (build_trt.py's "
                                                   "flag); the served batch is its --batch-size"}


def test_one_spelling_per_concept(commands):
    shown = [(name, s) for name, p in commands for a in flags(p) for s in visible_option_strings(a)]
    wrong = [f"{name}: {s} (use {canonical})" for name, s in shown
             for canonical, old in FORBIDDEN.items() if s in old and (name, s) not in SPELLING_EXEMPT]
    assert not wrong, f"a concept spelled the old way: {wrong}"
    # and the canonical names are there: the walk sees them
    seen = {s for _, s in shown}
    assert set(FORBIDDEN) <= seen, set(FORBIDDEN) - seen


def test_old_spellings_are_hidden_from_help(commands):
    for name, p in commands:
        text = p.format_help()
        for a in flags(p):
            for old in getattr(a, "deprecated_names", {}):
                assert f"{old} " not in text and f"{old}," not in text and f"{old}]" not in text, (name, old)


# (command line, old flag, canonical flag, dest, expected value): one per alias family
ALIASES = [
    (["generate", "--clip-len", "4"], "--clip-len", "--frames", "clip_len", 4),
    (["calibrate", "--clip-len", "4"], "--clip-len", "--frames", "clip_len", 4),
    (["train-flow", "--out", "o", "--dataset", "synthetic", "--clip-len", "4"], "--clip-len", "--frames", "clip_len", 4),
    (["generate", "--size", "96"], "--size", "--decode-size", "size", 96),
    (["calibrate", "--size", "96"], "--size", "--decode-size", "size", 96),
    (["bench", "--size", "96"], "--size", "--decode-size", "size", 96),
    (["pretrain", "--out", "o", "--size", "48"], "--size", "--crop-size", "size", 48),
    (["eval", "retrieval", "--checkpoint", "c", "--size", "48"], "--size", "--crop-size", "size", 48),
    (["generate", "--batch", "3"], "--batch", "--batch-size", "batch", 3),
    (["bench", "--batch", "3"], "--batch", "--batch-size", "batch", 3),
    (["pretrain", "--out", "o", "--gen-backend", "eager"], "--gen-backend", "--backend", "gen_backend", "eager"),
    (["generate", "--method", "tfd"], "--method", "--mode", "method", "tfd"),
    (["pretrain", "--out", "o", "--no-clamp-key"], "--no-clamp-key", "--no-clamp", "clamp_key", False),
    (["pretrain", "--out", "o", "--clamp-key"], "--clamp-key", "--clamp", "clamp_key", True),
    (["reproduce", "--out", "o", "--bias", "mild"], "--bias", "--synthetic-bias", "synthetic_bias", "mild"),
    (["ablate", "preserve", "--values", "0.1", "--out", "o", "--train-per-class", "5"], "--train-per-class",
     "--synthetic-train-per-class", "synthetic_train_per_class", 5),
    (["reproduce", "--out", "o", "--test-per-class", "7"], "--test-per-class", "--synthetic-test-per-class",
     "synthetic_test_per_class", 7),
]


@pytest.mark.parametrize("argv, old, new, dest, value", ALIASES, ids=[f"{a[0][0]} {a[1]}" for a in ALIASES])
def test_old_spelling_parses_and_says_so(argv, old, new, dest, value, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"s2vc: {old} is deprecated, use {new}"], err
    # the new spelling sets the same dest, silently
    args = build_parser().parse_args([new if a == old else a for a in argv])
    assert getattr(args, dest) == value and capsys.readouterr().err == ""


@pytest.mark.parametrize("toml", ['crop_size = 48\nbackend = "eager"\nclamp = false\n',
                                  'size = 48\ngen_backend = "eager"\nclamp_key = false\n'],
                         ids=["flag names", "settings fields"])
def test_config_keys_take_the_flag_names(toml, tmp_path, capsys):
    """pretrain --config: a key is a flag's name (crop_size) or its settings field (size)."""
    from s2vc.commands.pretrain import settings

    (tmp_path / "c.toml").write_text(toml)
    argv = ["pretrain", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path)]
    cfg = settings(parse_command_line(build_parser(), argv))
    assert (cfg.size, cfg.gen_backend, cfg.clamp_key) == (48, "eager", False)
    # a flag still wins over the file, and an old spelling given there is reported once
    argv = [*argv, "--size", "40"]
    assert settings(parse_command_line(build_parser(), argv)).size == 40
    assert capsys.readouterr().err.count("--size is deprecated") == 1


def test_config_key_unknown_is_one_line(tmp_path):
    from s2vc.commands.common import UsageError

    (tmp_path / "c.toml").write_text("crop_sise = 48\n")
    argv = ["pretrain", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path)]
    with pytest.raises(UsageError, match=r"unknown keys \['crop_sise'\]"):
        parse_command_line(build_parser(), argv)
