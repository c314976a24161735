"""The study scripts issue valid s2vc commands: scripts/reproduce_cpu.sh is run with a stand-in for
Python that records each command instead of running it, and every recorded command must parse
with the real command-line parser (a renamed flag or a wrong value would otherwise surface hours
into a study)."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s2vc.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("main", "set2", "keybands", "preserve", "strategy", "detail", "longer", "flow64")
PAIRED_PARTS = ("starts", "budget", "variant", "still", "pan")     # the pre-registered comparison


CHOICES = {"budget": '{"step": 300}', "variant": '{"arm": "s2vc-topk"}'}   # what the stand-in "chooses"


def _run_script(tmp_path: Path, parts: str | None, choices: dict | None = None, **env_extra: str):
    """Run reproduce_cpu.sh with a stand-in Python: s2vc commands are recorded, not run; the
    pre-registered choices (``scripts/choose.py KIND ... --out FILE``) write ``choices[KIND]`` to FILE;
    ``-c`` snippets (the script reading a choice) run in this Python."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "commands.txt"
    fake = tmp_path / "fake_python"
    choices = CHOICES if choices is None else choices
    fake.write_text(f"""#!/usr/bin/env bash
if [ "$1" = -c ]; then exec {shlex.quote(sys.executable)} "$@"; fi
printf "%q " "$@" >> {shlex.quote(str(record))}; echo >> {shlex.quote(str(record))}
out=""; prev=""; for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done
if [ "${{1##*/}}" = choose.py ]; then
    case $2 in budget) echo {shlex.quote(choices["budget"])} > "$out";; variant) echo {shlex.quote(choices["variant"])} > "$out";; esac
elif [ "$3" = reproduce ]; then    # a reproduce's tables, as the script copies them
    mkdir -p "$out" && echo '{{"split": "val", "rows": []}}' > "$out/results_val.json" && echo - > "$out/results_val.md"
fi
exit 0
""")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(tmp_path / "out"), **env_extra}
    for name in ("PARTS", "PAIRED_STEPS", "BEST", "PAIRED_SEEDS", "ALL_SEEDS", "KEYED_SETS"):
        if name not in env_extra:
            env.pop(name, None)
    if parts is not None:
        env["PARTS"] = parts
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_cpu.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    commands = [shlex.split(line) for line in record.read_text().splitlines() if line.strip()] \
        if record.exists() else []
    return done, commands


def _recorded_commands(tmp_path: Path, parts: str | None, **kwargs) -> list[list[str]]:
    done, commands = _run_script(tmp_path, parts, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return [c for c in commands if c[:2] == ["-m", "s2vc.cli"]]


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
    # the variants on both sets' validation splits, at the budget the budget part chose (300 here)
    assert [(a.arms, a.synthetic_camera, a.steps) for a in val[1:]] == [
        (["s2vc-keys", "s2vc-dynamic", "s2vc-topk"], camera, 300) for camera in ("still", "pan")]
    assert [a.synthetic_camera for a in test] == ["still", "pan"]
    for a in test:   # the variant part's choice (s2vc-topk here) is the project's variant
        assert a.arms == ["moco", "s2vc-keys", "tfd-keys", "fame", "be", "oracle", "s2vc-topk"]
        assert a.seeds == [0, 1, 2, 3, 4, 5] and a.best == "s2vc-topk" and a.steps == 300
        # the pre-registration's allowance: oracle, be and fame at seeds 0-2, the deciding arms at all 6
        assert a.seeds_of == ["oracle=0,1,2", "be=0,1,2", "fame=0,1,2"]
    # the runs scored on val and on test share a folder: trained once, scored twice
    assert {a.out for a in val} == {a.out for a in test}


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_choices_are_made_by_code_and_can_be_overridden(tmp_path):
    """The budget and the variant come from training/experiments/choices.py on the validation
    results (never typed in); PAIRED_STEPS / BEST override them; a budget rule never met stops the
    comparison; a part run before its choice exists says which part to run."""
    done, commands = _run_script(tmp_path / "a", "budget variant")
    chose = [c for c in commands if c[0].endswith("scripts/choose.py")]
    assert [c[1] for c in chose] == ["budget", "variant"]
    assert chose[0][2].endswith("paired_still/budget_val.json") and "--step" in chose[1]
    args = [build_parser().parse_args(c[2:]) for c in commands if c[2:3] == ["reproduce"]]
    assert [a.steps for a in args] == [800, 300, 300]
    overridden = _recorded_commands(tmp_path / "b", "still", PAIRED_STEPS="500", BEST="s2vc-dynamic")
    a = build_parser().parse_args(overridden[0][2:])
    assert (a.steps, a.best) == (500, "s2vc-dynamic")
    every = _recorded_commands(tmp_path / "e", "still", PAIRED_STEPS="300", BEST="s2vc-topk", ALL_SEEDS="1",
                               PAIRED_SEEDS="2 3")
    a = build_parser().parse_args(every[0][2:])
    assert a.seeds == [2, 3] and a.seeds_of == []           # ALL_SEEDS: every arm every seed
    few = _recorded_commands(tmp_path / "f", "pan", PAIRED_STEPS="300", BEST="s2vc-topk", PAIRED_SEEDS="4 5 6 7")
    assert build_parser().parse_args(few[0][2:]).seeds_of == ["oracle=4,5,6", "be=4,5,6", "fame=4,5,6"]
    done, _ = _run_script(tmp_path / "c", "budget variant", choices={"budget": '{"step": null}', "variant": "{}"})
    assert done.returncode == 3 and "never beat MoCo by 10 R@1" in done.stderr
    done, _ = _run_script(tmp_path / "d", "still")
    assert done.returncode == 2 and "run part budget first" in done.stderr


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


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_paired_parts_train_with_the_flows_the_study_keeps(tmp_path):
    """Where OUT/flows/SET.pt is there (the study's tracked copy of a set's fitted flow), parts still
    and pan pass it as --flow, so a clone trains with the flow its recorded runs used; elsewhere
    nothing is passed (the set's own fitted flow)."""
    out = tmp_path / "out"
    env = {"PAIRED_STEPS": "300", "BEST": "s2vc-topk", "OUT": str(out)}
    flows = [build_parser().parse_args(c[2:]).flow for c in _recorded_commands(tmp_path / "a", "still pan", **env)]
    assert flows == [None, None]
    (out / "flows").mkdir(parents=True)
    for name in ("still", "pan"):
        (out / "flows" / f"{name}.pt").write_bytes(b"x")
    flows = [build_parser().parse_args(c[2:]).flow for c in _recorded_commands(tmp_path / "b", "still pan", **env)]
    assert flows == [str(out / "flows" / "still.pt"), str(out / "flows" / "pan.pt")]


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
    # in a fresh clone a finished run is its record (the weights are not tracked): copied the same way
    src = tmp_path / "out" / "set2" / "runs" / "s2vc_seed0"
    src.mkdir(parents=True)
    (src / "record.json").write_text("{}")
    _recorded_commands(tmp_path, "detail")
    assert (tmp_path / "out" / "detail_set2" / "runs" / "detail_keep_seed0" / "record.json").read_text() == "{}"


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_the_keyed_follow_up_links_the_finished_runs_and_trains_only_its_new_arm(tmp_path):
    """Part keyed (the registered follow-up): per set, the finished runs of the paper's key, TFD and
    the variant and both mirrors are hard-linked into keyed_<set> (the same files, not copies), and
    one reproduce pairs s2vc-topk-keys with them on the test split at the chosen budget."""
    out = tmp_path / "out"
    for set_name in ("still", "pan"):
        for arm in ("s2vc-keys", "tfd-keys", "s2vc-topk"):
            run = out / f"paired_{set_name}" / "runs" / f"{arm}_seed0"
            run.mkdir(parents=True)
            (run / "checkpoint.pt").write_bytes(arm.encode())
        for mode in ("s2vc", "tfd"):
            (out / f"paired_{set_name}" / "mirrors" / mode).mkdir(parents=True)
            (out / f"paired_{set_name}" / "mirrors" / mode / "manifest.json").write_text("{}")
    (out / "paired_still" / "budget_choice.json").write_text('{"step": 300}')
    (out / "paired_still" / "results.json").write_text("{}")
    done, _ = _run_script(tmp_path / "early", "keyed", OUT=str(out))   # part pan has not finished: nothing linked
    assert done.returncode == 2 and "run part pan first" in done.stderr
    (out / "paired_pan" / "results.json").write_text("{}")
    manifest = out / "paired_pan" / "mirrors" / "tfd" / "manifest.json"
    manifest.unlink()                       # a fresh clone: the mirrors are not committed
    done, _ = _run_script(tmp_path / "clone", "keyed", OUT=str(out))
    assert done.returncode == 2 and "run part pan first in this clone" in done.stderr
    manifest.write_text("{}")
    commands = _recorded_commands(tmp_path, "keyed", PAIRED_SEEDS="0 1")
    reps = [build_parser().parse_args(c[2:]) for c in commands]
    assert [(a.arms, a.best, a.seeds, a.steps, a.split, a.synthetic_camera) for a in reps] == [
        (["s2vc-keys", "tfd-keys", "s2vc-topk", "s2vc-topk-keys"], "s2vc-topk-keys", [0, 1], 300, "test", camera)
        for camera in ("still", "pan")]
    assert [a.out for a in reps] == [str(out / "keyed_still"), str(out / "keyed_pan")]
    one = _recorded_commands(tmp_path / "one", "keyed", PAIRED_SEEDS="0 1", OUT=str(out), KEYED_SETS="pan")
    assert [build_parser().parse_args(c[2:]).out for c in one] == [str(out / "keyed_pan")]   # one set alone
    done, commands = _run_script(tmp_path / "bad", "keyed", OUT=str(out), KEYED_SETS="still tilt")
    assert done.returncode == 2 and "KEYED_SETS: tilt is not a set" in done.stderr and not commands  # nothing ran
    for set_name in ("still", "pan"):
        for arm in ("s2vc-keys", "tfd-keys", "s2vc-topk"):
            src = out / f"paired_{set_name}" / "runs" / f"{arm}_seed0" / "checkpoint.pt"
            dst = out / f"keyed_{set_name}" / "runs" / f"{arm}_seed0" / "checkpoint.pt"
            assert dst.read_bytes() == arm.encode() and os.path.samefile(src, dst)
        assert (out / f"keyed_{set_name}" / "mirrors" / "tfd" / "manifest.json").is_file()
        assert not (out / f"keyed_{set_name}" / "runs" / "s2vc-keys_seed1").exists()   # seed 1 never ran


def test_the_study_folder_tracks_what_a_fresh_clone_needs():
    """docs/results/cpu_study is committed so that a fresh clone continues the study: each run's
    record, settings and scores are tracked (the repository's runs/ rule must not hide them), and
    each set's flow; its weights, features, mirrors and logs are not."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    study = "docs/results/cpu_study/paired_still"
    tracked = [f"{study}/runs/moco_seed0/record.json", f"{study}/runs/moco_seed0/config.json",
               f"{study}/runs/moco_seed0/eval/step_000300.json", f"{study}/runs/moco_seed0/eval/val/step_000300.json",
               f"{study}/results.json", f"{study}/results.md", f"{study}/experiment.json", f"{study}/keys.png"]
    tracked += ["docs/results/cpu_study/flows/still.pt", "docs/results/cpu_study/flows/pan.pt"]
    ignored = [f"{study}/runs/moco_seed0/checkpoint.pt", f"{study}/runs/moco_seed0/snapshots/step_000300.pt",
               f"{study}/runs/moco_seed0/eval/step_000300.features.pt", f"{study}/mirrors/s2vc/manifest.json",
               f"{study}/runs/moco_seed0/logs/events.out.tfevents.1", f"{study}/runs/moco_seed0/curves.png",
               "docs/results/cpu_study/still.log"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *tracked, *ignored], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert set(done.stdout.split()) == set(ignored)
