"""The study scripts issue valid s2vc commands: scripts/reproduce_cpu.sh is run with a stand-in for
Python that records each command instead of running it, and every recorded command must parse
with the real command-line parser (a renamed flag or a wrong value would otherwise surface hours
into a study)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from s2vc.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("main", "set2", "keybands", "preserve", "strategy", "detail", "longer", "flow64")
PAIRED_PARTS = ("starts", "budget", "variant", "still", "pan")     # the pre-registered comparison


def _recorded_commands(tmp_path: Path, parts: str) -> list[list[str]]:
    record = tmp_path / "commands.txt"
    fake = tmp_path / "fake_python"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {shlex.quote(str(record))}\necho >> '
                    f'{shlex.quote(str(record))}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(tmp_path / "out")}
    env.pop("PARTS", None)
    if parts is not None:
        env["PARTS"] = parts
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_cpu.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return [shlex.split(line) for line in record.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_reproduce_cpu_issues_valid_commands(tmp_path):
    commands = _recorded_commands(tmp_path, " ".join(PARTS + PAIRED_PARTS))
    parser = build_parser()
    seen = set()
    for argv in commands:
        assert argv[:2] == ["-m", "s2vc.cli"], argv
        args = parser.parse_args(argv[2:])          # SystemExit (a failing test) on a bad flag
        seen.add(args.command)
        assert str(tmp_path / "out") in " ".join(argv), f"writes outside OUT: {argv}"
    assert {"reproduce", "ablate", "eval", "train-flow", "pretrain"} <= seen
    # every part issued at least one command; the ablations ask for the values the study reports
    joined = [" ".join(c) for c in commands]
    # the ablations at the budget that decides (400 steps), as docs/RESULTS.md reports them
    assert any("ablate strategy --values zero noise shuffle_clip shuffle_frame topk --seeds 0 --steps 400" in c
               for c in joined)
    assert any("ablate preserve --values 0.05 0.1 0.4 0.6 --seeds 0 --steps 400" in c for c in joined)
    assert sum("ablate detail --values keep dynamic" in c for c in joined) == 2
    assert any("ablate detail --values dynamic --seeds 0 1 2" in c for c in joined)
    assert any("--arms moco oracle tfd be fame s2vc-keys --seeds 0 1 2 --steps 400" in c for c in joined)
    assert any("train-flow --dataset synthetic --resolution 64" in c for c in joined)


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_default_parts_are_the_pre_registered_comparison(tmp_path):
    """Without PARTS the script runs the pre-registered comparison of docs/RESULTS.md: identical
    starts, the budget and the variant chosen on validation, then all arms paired over 6 seeds on
    the still and the pan set, scored on test."""
    commands = _recorded_commands(tmp_path, None)
    parser = build_parser()
    starts = [parser.parse_args(c[2:]) for c in commands if c[2] == "pretrain"]
    assert [a.mode for a in starts] == ["moco", "s2vc", "tfd"] and all(a.max_steps == 0 for a in starts)
    reps = [parser.parse_args(c[2:]) for c in commands if c[2] == "reproduce"]
    val = [a for a in reps if a.split == "val"]
    test = [a for a in reps if a.split == "test"]
    assert val and all(a.synthetic_val_per_class == 10 for a in reps)
    assert val[0].arms == ["moco", "oracle"] and val[0].steps == 800
    assert [a.synthetic_camera for a in test] == ["still", "pan"]
    for a in test:
        assert a.arms == ["moco", "s2vc-keys", "tfd-keys", "fame", "be", "oracle", "s2vc-dynamic"]
        assert a.seeds == [0, 1, 2, 3, 4, 5] and a.best == "s2vc-dynamic" and a.steps == 400
    # the runs scored on val and on test share a folder: trained once, scored twice
    assert {a.out for a in val} == {a.out for a in test}


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_flow64_part_is_the_fitted_recipe_at_64(tmp_path):
    """The 64x64 flow of part flow64 differs from the set's fitted-flow recipe only where
    docs/RESULTS.md says it does: resolution, steps, a new flow, the crop scale."""
    import dataclasses

    from s2vc.training.flow.fitted import FITTED_RECIPE
    fits = [c for c in _recorded_commands(tmp_path, "flow64") if "train-flow" in c]
    assert len(fits) == 2                       # on crops (as first measured), then on whole frames
    for argv, crops in zip(fits, [(0.35, 1.0), None]):
        args = build_parser().parse_args(argv[2:])
        differs = {"resolution": 64, "epochs": 4 * FITTED_RECIPE.epochs, "from_bundled": False}
        if crops is not None:
            differs["crop_scale"] = crops
        for field, value in dataclasses.asdict(FITTED_RECIPE).items():
            got = args.init is not None if field == "from_bundled" else getattr(args, field)
            assert (tuple(got) if field == "crop_scale" else got) == differs.get(field, value), field


def test_reproduce_cpu_rejects_unknown_part(tmp_path):
    env = {**os.environ, "PYTHON": "false", "OUT": str(tmp_path / "out"), "PARTS": "nonsense"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_cpu.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown part nonsense" in done.stdout


def test_reproduce_cpu_reuses_a_finished_run(tmp_path):
    """strategy zero is main's s2vc run of seed 0: copied when it has finished, not trained again."""
    src = tmp_path / "out" / "main_s2vc" / "runs" / "s2vc_seed0"
    src.mkdir(parents=True)
    (src / "checkpoint.pt").write_bytes(b"x")
    _recorded_commands(tmp_path, "strategy")
    assert (tmp_path / "out" / "strategy" / "runs" / "strategy_zero_seed0" / "checkpoint.pt").read_bytes() == b"x"
