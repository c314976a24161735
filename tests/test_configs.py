"""configs/: every file parses as the command its first line names (its keys are that command's
flags, checked as the flags check them), the recipe's steps chain (each reads what the previous
one writes, at the same clip), and ``--config`` works the same in every command."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from s2vc.cli import build_parser, main as cli_main
from s2vc.commands.common import UsageError, parse_command_line

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.toml"))
RECIPE = REPO / "configs" / "recipe" / "ucf101"


def command_of(path: Path) -> list[str]:
    """The command line a config's first line names ("# s2vc CMD [SUB] --config PATH")."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# s2vc "), f"{path}: first line must be '# s2vc COMMAND --config {path.name}'"
    words = shlex.split(first[2:])[1:]
    assert "--config" in words and words[words.index("--config") + 1] == path.relative_to(REPO).as_posix()
    i = words.index("--config")
    return words[:i], words[i + 2:]


def parsed(path: Path, *extra: str):
    command, rest = command_of(path)
    return parse_command_line(build_parser(), [*command, "--config", str(path), *rest, *extra])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_every_config_parses_as_its_command(path):
    args = parsed(path)
    assert args.config == str(path)
    if args.command == "pretrain":
        from s2vc.commands.pretrain import settings
        settings(args).check()


def test_the_recipe_chains():
    """flow (1) -> mirror (2) -> pretrain (3) -> evaluations (4): each step names the files the
    previous one writes, and a mirror holds the clips its pretraining reads."""
    flow = parsed(RECIPE / "1_train_flow.toml")
    assert (flow.resolution, flow.dataset, flow.clip_len, flow.stride) == (64, "ucf101", 16, 2)
    # S3D's clip gets alpha recalibrated on it (step 1b), into a copy of step 1's flow
    cal = parsed(RECIPE / "1b_calibrate_s3d.toml")
    assert cal.command == "calibrate" and cal.flow == flow.out and cal.write_to != flow.out and not cal.write
    assert (cal.dataset, cal.root, cal.fold, cal.preserve) == (flow.dataset, flow.root, flow.fold, flow.preserve)
    for bb in ("r3d18", "s3d"):
        mirror = parsed(RECIPE / f"2_mirror_{bb}.toml")
        pre = parsed(RECIPE / f"3_pretrain_{bb}.toml")
        calibrated = flow if bb == "r3d18" else cal
        assert mirror.flow == pre.flow == (flow.out if bb == "r3d18" else cal.write_to)
        assert (calibrated.clip_len, calibrated.stride) == (pre.frames, pre.stride)   # alpha on the clip trained on
        assert (flow.decode_size if bb == "r3d18" else cal.size) == pre.decode_size
        assert pre.keys == mirror.out and mirror.split == "train" and pre.mode == mirror.method == "s2vc"
        assert (mirror.clip_len, mirror.stride, mirror.size) == (pre.frames, pre.stride, pre.decode_size)
        assert mirror.root == pre.root == flow.root and mirror.fold == pre.fold == flow.fold
        for step in ("retrieval", "linear", "finetune"):
            ev = parsed(RECIPE / f"4_{step}_{bb}.toml")
            assert ev.eval_command == step and ev.checkpoint == f"{pre.out}/checkpoint.pt"
            # the pretraining clip, but retrieval's 16-frame queries (the paper, after Xu et al. 2019)
            frames = 16 if step == "retrieval" else pre.frames
            assert (ev.frames, ev.stride, ev.size, ev.decode_size) == (frames, pre.stride, pre.size, pre.decode_size)
            if step != "retrieval":   # half-overlapping windows x ten crops; linear 100 epochs, finetune 500
                assert (ev.crops, ev.epochs) == (10, 100 if step == "linear" else 500)


def test_flags_win_over_the_file_everywhere(tmp_path):
    args = parsed(RECIPE / "1_train_flow.toml", "--epochs", "3", "--out", str(tmp_path / "f.pt"))
    assert (args.epochs, args.out, args.resolution) == (3, str(tmp_path / "f.pt"), 64)
    # --data on the command line wins over the file's dataset (the two are exclusive)
    args = parsed(RECIPE / "1_train_flow.toml", "--data", "samples")
    assert args.data == ["samples"] and args.dataset is None
    args = parsed(RECIPE / "4_retrieval_r3d18.toml", "--crop-size", "96")
    assert (args.size, args.frames) == (96, 16)


@pytest.mark.parametrize("toml, words", [
    ('frames = "16"\n', ["frames", "integer"]),
    ('mode = "bogus"\n', ["mode", "bogus", "not one of"]),
    ('lr_steps = 400\n', ["lr_steps", "list"]),
    ('amp = 1\n', ["amp", "true or false"]),
    ('learning_rate = 1\n', ["unknown keys", "learning_rate"]),
    ('frames = \n', ["not valid toml"]),
])
def test_a_bad_config_is_one_line(toml, words, tmp_path, capsys):
    (tmp_path / "c.toml").write_text(toml)
    assert cli_main(["pretrain", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("s2vc pretrain: error: config file"), err
    assert all(w in err.lower() for w in words), err


def test_every_command_takes_a_config(tmp_path):
    """--config on every command and sub-subcommand; a file of another command's keys is refused."""
    import argparse

    def leaves(p, path):
        sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            yield path, p
            return
        for name, q in sub.choices.items():
            yield from leaves(q, [*path, name])

    found = list(leaves(build_parser(), []))
    assert len(found) >= 20
    for path, p in found:
        assert any("--config" in a.option_strings for a in p._actions), path
    (tmp_path / "c.toml").write_text("num_clips = 3\nprotocol = \"concat\"\n")
    args = parse_command_line(build_parser(), ["eval", "linear", "--config", str(tmp_path / "c.toml")])
    assert (args.num_clips, args.protocol) == (3, "concat")
    with pytest.raises(UsageError, match="unknown keys"):
        parse_command_line(build_parser(), ["calibrate", "--config", str(tmp_path / "c.toml")])


def test_a_public_dataset_with_the_bundled_flow_is_refused(tmp_path, capsys):
    """S2VC on UCF101 & co. with the bundled flow: refused before any work, with the command that
    fits a flow; --flow bundled runs it anyway; other modes and the synthetic set need nothing."""
    from s2vc.commands.pretrain import settings

    (tmp_path / "c.toml").write_text('dataset = "ucf101"\nroot = "/data/ucf"\nmode = "s2vc"\n')
    for argv in (["pretrain", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")],
                 ["generate", "--dataset", "hmdb51", "--root", "/data/hmdb", "--out", str(tmp_path / "m")]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "needs a flow fitted to it" in err and len(err) < 400, err
        assert "s2vc train-flow --dataset" in err and "--root /data/" in err and "--flow bundled" in err
        assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()
    base = ["pretrain", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")]
    assert settings(parse_command_line(build_parser(), [*base, "--flow", "bundled"])).flow is None
    assert settings(parse_command_line(build_parser(), [*base, "--mode", "moco"])).flow is None
    assert settings(parse_command_line(build_parser(), [*base, "--dataset", "synthetic"])).flow is None


def test_bench_config_preset_name_still_parses(capsys):
    """bench's --config once named a preset (now --preset; --config is a TOML file everywhere)."""
    from s2vc.cli import _legacy_argv

    args = parse_command_line(build_parser(), _legacy_argv(["bench", "--config", "paper64"]))
    assert args.preset == "paper64" and args.config is None
    assert capsys.readouterr().err.strip() == "s2vc: bench --config paper64 is deprecated, use --preset paper64"


def test_config_files_layer_and_switches_can_be_turned_off(tmp_path, capsys):
    """Several --config files apply in order (a later one over an earlier one); a switch a file
    turns on is turned off by --no-X; a --no-X key (no_compare) means what the flag means."""
    (tmp_path / "a.toml").write_text(f'out = "{tmp_path / "r"}"\nframes = 8\namp = true\n')
    (tmp_path / "b.toml").write_text("frames = 4\n")
    args = parse_command_line(build_parser(), ["pretrain", "--config", str(tmp_path / "a.toml"),
                                               "--config", str(tmp_path / "b.toml")])
    assert (args.out, args.frames, args.amp) == (str(tmp_path / "r"), 4, True)
    assert args.configs == [str(tmp_path / "a.toml"), str(tmp_path / "b.toml")]
    args = parse_command_line(build_parser(), ["pretrain", "--config", str(tmp_path / "a.toml"), "--no-amp"])
    assert args.amp is False
    (tmp_path / "d.toml").write_text("no_compare = true\n")
    assert parse_command_line(build_parser(), ["demo", "--config", str(tmp_path / "d.toml")]).compare is False
    (tmp_path / "d.toml").write_text("no_compare = false\n")
    assert parse_command_line(build_parser(), ["demo", "--config", str(tmp_path / "d.toml")]).compare is True


@pytest.mark.parametrize("argv, toml, words", [
    (["train-flow"], "crop_scale = [0.5]\n", ["crop_scale", "list of 2"]),
    (["pretrain", "--out", "o"], "strategy = 3\n", ["strategy", "string"]),
    (["pretrain", "--out", "o"], 'strategy = "bogus"\n', ["strategy", "not one of"]),
    (["pretrain", "--out", "o"], 'backend = "cuda"\n', ["backend", "not one of"]),
    (["reproduce", "--out", "o"], "seeds = []\n", ["seeds", "at least one"]),
])
def test_config_values_are_checked_as_the_flags_check_them(argv, toml, words, tmp_path):
    (tmp_path / "c.toml").write_text(toml)
    with pytest.raises(UsageError) as err:
        parse_command_line(build_parser(), [*argv, "--config", str(tmp_path / "c.toml")])
    assert all(w in str(err.value) for w in words), err.value


def test_an_old_key_still_reads_and_says_what_to_use(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("clip_len = 8\nbatch = 2\n")
    args = parse_command_line(build_parser(), ["generate", "--config", str(tmp_path / "c.toml")])
    assert (args.clip_len, args.batch) == (8, 2)
    err = capsys.readouterr().err
    assert "config key clip_len" in err and "use frames" in err and "use batch_size" in err


def test_config_before_the_command_is_one_line(tmp_path):
    (tmp_path / "c.toml").write_text("frames = 8\n")
    for argv in (["--config", str(tmp_path / "c.toml"), "pretrain"],
                 ["eval", "--config", str(tmp_path / "c.toml"), "retrieval"]):
        with pytest.raises(UsageError, match="--config goes after the command's name"):
            parse_command_line(build_parser(), argv)


def test_the_refusal_names_the_commands_own_clip(capsys):
    assert cli_main(["pretrain", "--dataset", "hmdb51", "--root", "/d/hmdb", "--fold", "2", "--out", "/nonexistent/r",
                     "--frames", "32", "--stride", "4", "--decode-size", "150"]) == 2
    err = capsys.readouterr().err
    assert ("s2vc train-flow --dataset hmdb51 --root /d/hmdb --fold 2 --resolution 64 --frames 32 --stride 4 "
            "--decode-size 150 --out flow_hmdb51.pt") in err
