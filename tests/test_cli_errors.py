"""A user's mistake at the command line ends as one line that names what was expected and what
arrived, and a non-zero exit: no traceback (``--debug`` shows it)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from s2vc.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A real short video, a file that is no checkpoint, a corrupt video, a run folder with no checkpoint."""
    import numpy as np

    from s2vc.engine import video_io
    root = tmp_path_factory.mktemp("bad_input")
    clip = root / "clip.mp4"
    frames = (np.random.default_rng(0).random((6, 32, 32, 3)) * 255).astype(np.uint8)
    video_io.write_video(clip, frames, fps=25)
    fake = root / "not_a_checkpoint.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a torch file")
    corrupt = root / "corrupt.avi"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    (root / "empty_run").mkdir()
    return {"clip": str(clip), "fake": str(fake), "corrupt": str(corrupt), "root": root,
            "empty_run": str(root / "empty_run")}


# (argv with {placeholders}, words the one line must contain (lower case))
CASES = [
    (["generate", "--alpha", "-1", "{clip}", "--out", "{root}/o1"], ["alpha", "-1"]),
    (["generate", "--flow", "{fake}", "{clip}", "--out", "{root}/o2"], ["not_a_checkpoint.mp4", "checkpoint"]),
    (["generate", "{root}/missing.avi", "--out", "{root}/o3"], ["missing.avi", "no such"]),
    (["generate", "--frames", "1", "{clip}", "--out", "{root}/o4"], ["--frames must be >= 2", "got 1"]),
    (["pretrain", "--dataset", "ucf101", "--mode", "moco", "--root", "/missing/ucf101", "--out", "{root}/run1"],
     ["/missing/ucf101"]),
    (["pretrain", "--dataset", "ucf101", "--root", "/missing/ucf101", "--out", "{root}/run1"],
     ["flow fitted to it", "s2vc train-flow --dataset ucf101 --root /missing/ucf101"]),
    (["pretrain", "--config", "{root}/none.toml", "--out", "{root}/run2"], ["none.toml"]),
    (["pretrain", "--frames", "1", "--out", "{root}/run3", "--max-steps", "1"], ["frames", "1"]),
    (["eval", "retrieval", "--checkpoint", "{fake}"], ["not_a_checkpoint.mp4", "checkpoint"]),
    (["eval", "retrieval", "--checkpoint", "{empty_run}"], ["empty_run", "checkpoint.pt"]),
    (["eval", "retrieval", "--checkpoint", "{root}/nothing_here.pt"], ["nothing_here.pt"]),
    (["calibrate", "--flow", "{fake}", "{clip}"], ["not_a_checkpoint.mp4"]),
    (["export", "onnx", "--flow", "{fake}", "--out", "{root}/g.onnx"], ["not_a_checkpoint.mp4"]),
    (["train-flow", "--data", "/missing/frames", "--out", "{root}/f.pt"], ["/missing/frames"]),
]


def _argv(argv, files):
    return [a.format(**files) for a in argv]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line(argv, words, files, capsys):
    code = main(_argv(argv, files))
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("s2vc ")]
    assert len(lines) == 1, err
    line = lines[0].lower()
    assert "error:" in line and all(w.lower() in line for w in words), line
    assert len(line) < 400, "one readable line, not a dump"


def test_debug_shows_the_traceback(files):
    with pytest.raises(ValueError):
        main(["--debug", "generate", "--alpha", "-1", files["clip"], "--out", str(files["root"] / "o5")])


def test_console_script_prints_no_traceback(files):
    run = subprocess.run([sys.executable, "-m", "s2vc.cli", "generate", "--flow", files["fake"], files["clip"],
                          "--out", str(files["root"] / "o6")], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("s2vc generate: error:")


def test_a_library_field_is_named_as_the_flag():
    """A library's "clip_len must ..." reaches the user as the flag they typed (--frames); a
    field whose flag has its name, a path or an ordinary word is left alone."""
    from s2vc.cli import build_parser
    from s2vc.commands.common import in_flag_names, leaf_parser

    gen = leaf_parser(build_parser(), ["generate"])[0]
    assert in_flag_names("batch must be >= 1 window, got 0", gen) == "--batch-size must be >= 1 window, got 0"
    assert in_flag_names("got size=0 for /x/size=3", gen) == "got --decode-size=0 for /x/size=3"
    assert in_flag_names("the batch was empty; stride must be >= 1", gen) == "the batch was empty; stride must be >= 1"
    pre = leaf_parser(build_parser(), ["pretrain"])[0]
    assert in_flag_names("size must be >= 8", pre) == "--crop-size must be >= 8"


def test_a_missing_required_flag_is_named_as_help_names_it(capsys):
    """argparse's "required" error lists a flag's spellings: the old one is left out."""
    with pytest.raises(SystemExit) as done:
        main(["eval", "static-gain", "--static", "a.json", "--baseline", "b.json"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert "required: --method-json" in err and "--method-json/--method" not in err
