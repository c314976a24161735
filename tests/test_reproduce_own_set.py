"""The comparison on a set of one's own (issue 21: it is to be repeated "on a static-bias set of
our own that the project has never seen"): `s2vc reproduce --dataset ucf101 --root R --flow F`
trains every arm on R's train split and scores R's test (or val) split, with paired tables, and
refuses what cannot work there before training anything."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from s2vc.cli import build_parser

# a tiny set in UCF101's layout: the synthetic renderer writes that layout, and read as "ucf101"
# nothing of the synthetic set's own (its looks, actor masks, fitted flow) is used
OWN = {"seed": 5, "train_per_class": 3, "test_per_class": 6, "val_per_class": 2, "frames": 16}
EXPERIMENT = ["--seeds", "0", "--steps", "2", "--snapshot-every", "1", "--frames", "4", "--crop-size", "32",
              "--decode-size", "32", "--batch-size", "4", "--queue", "8", "--num-clips", "1", "--threads", "1",
              "--no-progress"]


def _run(argv):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.run(args)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    from s2vc.training.data.synthetic import make_static_bias_set
    built = make_static_bias_set(tmp_path_factory.mktemp("built") / "set", **OWN)
    root = tmp_path_factory.mktemp("own") / "set"       # only what a set of one's own has: videos and lists
    shutil.copytree(built / "UCF-101", root / "UCF-101")
    shutil.copytree(built / "ucfTrainTestlist", root / "ucfTrainTestlist")
    (root / "ucfTrainTestlist" / "looks.csv").unlink()  # no look labels, no actor masks, no params.json
    return root


def _own(root, *more):
    return ["--dataset", "ucf101", "--root", str(root), *EXPERIMENT, *more]


def test_reproduce_on_a_set_of_ones_own(own, tmp_path, monkeypatch):
    monkeypatch.setenv("S2VC_CACHE", str(tmp_path / "cache"))        # nothing is built in the user's cache
    out = tmp_path / "rep"
    res = _run(["reproduce", "--out", str(out), "--arms", "moco", "s2vc-keys", "tfd-keys", "--flow", "bundled",
                *_own(own)])
    assert [(r["arm"], r["step"]) for r in res["rows"]] == [(a, s) for a in ("moco", "s2vc-keys", "tfd-keys")
                                                             for s in (0, 1, 2)]
    step0 = [r for r in res["rows"] if r["step"] == 0]
    assert len({(r["R@1"], r["motion"], r["linear"]) for r in step0}) == 1      # identical starts
    row = res["rows"][-1]
    assert all(math.isnan(row[f"look_{k}"]) for k in ("scene", "shape", "colour"))   # no look labels
    assert 0 <= row["motion"] <= 1 and 0 <= row["R@1"] <= 1                   # ids are UCF-style: groups
    md = (out / "results.md").read_text()
    assert "on ucf101 (" in md and "ucf101 at" in md and "decoded at 32 px" in md
    assert {(p["a"], p["b"]) for p in res["paired"]} == {("s2vc-keys", "moco"), ("s2vc-keys", "tfd-keys")}
    pinned = json.loads((out / "experiment.json").read_text())
    assert pinned["dataset"] == "ucf101" and pinned["root"] == str(own.resolve()) and pinned["decode_size"] == 32
    manifest = json.loads((out / "mirrors" / "s2vc" / "manifest.json").read_text())
    assert len(manifest["videos"]) == 6 * 3 and manifest["settings"]["decode_size"] == 32
    assert json.loads((out / "keys.json").read_text()) == ["moco", "s2vc-keys", "tfd-keys"]
    assert not (tmp_path / "cache").exists()
    # the paper's key chosen as the project's variant (--arms ... s2vc-keys --best s2vc-keys): it runs
    # once, and the pairs are the same (nothing trained again: the finished runs are reused)
    again = _run(["reproduce", "--out", str(out), "--arms", "moco", "s2vc-keys", "tfd-keys", "s2vc-keys",
                  "--best", "s2vc-keys", "--flow", "bundled", *_own(own)])
    assert json.dumps([again["rows"], again["paired"]]) == json.dumps([res["rows"], res["paired"]])  # nan != nan
    assert json.loads((out / "keys.json").read_text()) == ["moco", "s2vc-keys", "tfd-keys"]
    # the validation split of one's own (vallist01.txt: videos held out of trainlist01.txt)
    val = _run(["reproduce", "--out", str(out), "--arms", "moco", "--flow", "bundled", *_own(own, "--split", "val"),
                "--eval-only"])
    assert (out / "results_val.json").exists() and [r["step"] for r in val["rows"]] == [0, 1, 2]
    # its curves beside the test split's, neither overwriting the other; each table names its own
    assert (out / "curves_val.png").exists() and (out / "curves.png").exists()
    assert "curves_val.png" in (out / "results_val.md").read_text()
    assert "curves_val.png" not in (out / "results.md").read_text()
    assert val["rows"][0]["R@1"] != res["rows"][0]["R@1"] or val["rows"][0]["linear"] != res["rows"][0]["linear"]
    # the same folder on another set is refused, not mixed in
    with pytest.raises(ValueError, match="dataset 'ucf101' \\(there\\) vs 'synthetic' \\(asked\\)"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", "--flow", "bundled", *EXPERIMENT, "--eval-only"])


def test_what_cannot_work_on_a_set_of_ones_own_is_refused_first(own, tmp_path):
    out = tmp_path / "rep"
    with pytest.raises(ValueError, match="arm 'oracle' .* actor masks"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", "--flow", "bundled", *_own(own)])
    with pytest.raises(ValueError, match="needs a flow fitted to it.*s2vc train-flow --dataset ucf101 --root "):
        _run(["reproduce", "--out", str(out), "--arms", "moco", "s2vc-keys", *_own(own)])
    bare = tmp_path / "bare"
    shutil.copytree(own, bare)
    (bare / "ucfTrainTestlist" / "vallist01.txt").unlink()
    with pytest.raises(ValueError, match="ucf101 val split 1: expected .*vallist01.txt"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", "--flow", "bundled", *_own(bare, "--split", "val")])
    lists = bare / "ucfTrainTestlist"
    (lists / "vallist01.txt").write_text((lists / "trainlist01.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="1 videos of the validation split are also in the training split"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", "--flow", "bundled", *_own(bare, "--split", "val")])
    with pytest.raises(SystemExit):                   # a folder has no splits: not a choice
        build_parser().parse_args(["reproduce", "--out", str(out), "--dataset", "folder", "--root", str(own)])
    assert not out.exists()                           # nothing was written by a refused call


def test_a_bad_set_is_refused_before_anything_is_written(own, tmp_path):
    """No --root, a root that is not there, a fold UCF101 does not have, HMDB51's missing val split:
    refused before experiment.json or a run folder exists (a rerun with the right flags is not
    blocked by a half-written folder)."""
    out = tmp_path / "rep"
    flags = ["--seeds", "0", "--steps", "1", "--no-progress", "--flow", "bundled", "--arms", "moco"]
    for more, message in ((["--dataset", "ucf101"], "root folder is required"),
                          (["--dataset", "ucf101", "--root", str(tmp_path / "nowhere")], "no such folder"),
                          (["--dataset", "ucf101", "--root", str(own), "--fold", "0"], "fold must be 1, 2, 3 or a fold"),
                          (["--dataset", "ucf101", "--root", str(own), "--fold", "4"], "trainlist04.txt"),
                          (["--dataset", "ucf101", "--root", str(own), "--fold", "2"], "trainlist02.txt"),
                          (["--dataset", "hmdb51", "--root", str(own), "--split", "val"], "hmdb51 has no validation")):
        with pytest.raises(ValueError, match=message):
            _run(["reproduce", "--out", str(out), *flags, *more])
        assert not out.exists(), more
    # no arm needs a flow: none is asked for; the default arms leave the oracle out on one's own set
    from s2vc.training.experiments.runner import ReproduceConfig
    from s2vc.training.experiments.sets import experiment_flow
    no_flow = ReproduceConfig(out=str(out), dataset="ucf101", root=str(own), arms=("moco", "fame"))
    assert experiment_flow(no_flow) is None
    assert "oracle" not in ReproduceConfig(out="x", dataset="ucf101", root=str(own)).arms
    assert "oracle" in ReproduceConfig(out="x").arms
    # the arms that need a flow are exactly those whose key the flow makes (s2vc and tfd, however keyed)
    from s2vc.training.experiments.runner import ARMS, KEYED_VARIANTS, VARIANTS
    from s2vc.training.experiments.sets import FLOW_ARMS
    from s2vc.training.pretrain.keys import KEYS_SUFFIX
    variants = {**VARIANTS, **KEYED_VARIANTS}
    for arm in ARMS:
        mode = variants[arm]["mode"] if arm in variants else arm.removesuffix(KEYS_SUFFIX)
        assert (arm in FLOW_ARMS) == (mode in ("s2vc", "tfd")), arm
    with pytest.raises(ValueError, match="needs a flow fitted to it"):
        _run(["reproduce", "--out", str(out), "--dataset", "ucf101", "--root", str(own), *EXPERIMENT])


def test_a_folder_of_the_code_before_sets_is_the_synthetic_set(own, tmp_path):
    """experiment.json written before --dataset existed names no set: it is the synthetic set's, so
    reading it as another set is refused (not mixed in)."""
    from s2vc.training.experiments.runner import PINNED, ReproduceConfig, pin_experiment, pinned_settings
    out = tmp_path / "old"
    out.mkdir()
    old = {k: v for k, v in pinned_settings(ReproduceConfig(out=str(out))).items()
           if k not in ("dataset", "root", "fold", "decode_size")}
    (out / "experiment.json").write_text(json.dumps(old))
    pin_experiment(ReproduceConfig(out=str(out)), out)                   # the same synthetic experiment: fine
    with pytest.raises(ValueError, match="dataset 'synthetic' \\(there\\) vs 'ucf101' \\(asked\\)"):
        pin_experiment(ReproduceConfig(out=str(out), dataset="ucf101", root=str(own)), out)
    assert set(PINNED) >= {"dataset", "root", "fold", "decode_size"}
    # the root is one spelling whatever folder the command runs in
    assert ReproduceConfig(out="x", dataset="ucf101", root=str(own / ".." / own.name)).root == str(own.resolve())


def test_calibration_passes_over_an_unreadable_video_when_asked(own, tmp_path, capsys):
    """``ablate preserve`` calibrates on the listed training videos: a corrupt one is passed over
    (said once), as training and scoring skip it, instead of ending the experiment."""
    from s2vc.engine import load_flow
    from s2vc.engine.calibrate import latent_stds
    from s2vc.engine.checkpoint import default_checkpoint_path
    from s2vc.engine.video_io import VideoDecodeError
    flow = load_flow(default_checkpoint_path())
    good = sorted((own / "UCF-101").rglob("*.*"))[0]
    bad = tmp_path / "v_Bad_g01_c01.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoDecodeError):
        latent_stds(flow, [good, bad], clip_len=4, size=32, max_windows=1, stride=2)
    capsys.readouterr()
    stds = latent_stds(flow, [good, bad], clip_len=4, size=32, max_windows=1, stride=2, skip_unreadable=True)
    assert torch.equal(stds, latent_stds(flow, [good], clip_len=4, size=32, max_windows=1, stride=2))
    assert "1 of 2 videos could not be decoded" in capsys.readouterr().err


def test_kinetics_layout_unlabelled_test_rows_and_its_val_split(own, tmp_path):
    """Kinetics' own test.csv has no labels: scoring it is refused before training (retrieval and
    the probes score classes), its val split is accepted, and a val clip that is also a training
    clip is refused."""
    from s2vc.training.experiments.runner import ReproduceConfig
    from s2vc.training.experiments.sets import check_set
    root = tmp_path / "k400"
    videos = sorted((own / "UCF-101").rglob("*.avi")) or sorted((own / "UCF-101").rglob("*.*"))
    rows = {"train": [], "val": [], "test": []}
    for n, video in enumerate(videos[:12]):
        split = ("train", "train", "val", "test")[n % 4]
        label, vid = video.parent.name, f"clip{n:03d}"
        target = root / split / label / f"{vid}_000000_000010{video.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, target)
        rows[split].append(f"{label if split != 'test' else ''},{vid},0,10,{split}")
    (root / "annotations").mkdir()
    for split, lines in rows.items():
        (root / "annotations" / f"{split}.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                                           + "\n".join(lines) + "\n")
    cfg = dict(out=str(tmp_path / "rep"), dataset="kinetics", root=str(root), arms=("moco",))
    with pytest.raises(ValueError, match="kinetics test: 3 videos have no class .*--split val"):
        check_set(ReproduceConfig(**cfg), ("moco",))
    check_set(ReproduceConfig(**cfg, split="val"), ("moco",))
    train_row = rows["train"][0]
    (root / "annotations" / "val.csv").write_text("label,youtube_id,time_start,time_end,split\n" + train_row + "\n")
    with pytest.raises(ValueError, match="1 videos of the validation split are also in the training split"):
        check_set(ReproduceConfig(**cfg, split="val"), ("moco",))
    with pytest.raises(ValueError, match="have no class"):
        _run(["reproduce", "--out", cfg["out"], "--dataset", "kinetics", "--root", str(root), "--arms", "moco",
              "--no-progress"])
    assert not (tmp_path / "rep").exists()


def test_odd_names_of_a_set_of_ones_own(own, tmp_path):
    """What a set of one's own may look like: a validation video with the name of a training video
    in another class folder is another video; names with spaces are read whole; a classInd.txt of
    another form and a container the mirror cannot write are clear errors before any work."""
    from s2vc.training.data.layouts import ucf101_records
    from s2vc.training.experiments.runner import ReproduceConfig
    from s2vc.training.experiments.sets import check_set
    from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror
    root = tmp_path / "odd"
    shutil.copytree(own, root)
    lists, videos = root / "ucfTrainTestlist", root / "UCF-101"
    train_rel = (lists / "trainlist01.txt").read_text().split()[0]             # "<Class>/<name>.mp4"
    classes = sorted(p.name for p in videos.iterdir())
    other = next(c for c in classes if c != train_rel.split("/")[0])
    same_name = f"{other}/{train_rel.split('/')[1]}"
    shutil.copy(videos / train_rel, videos / same_name)
    (lists / "vallist01.txt").write_text(f"{same_name} {classes.index(other) + 1}\n")
    check_set(ReproduceConfig(out=str(tmp_path / "r"), dataset="ucf101", root=str(root), split="val"), ("moco",))
    spaced = f"{other}/my clip 01.mp4"
    shutil.copy(videos / train_rel, videos / spaced)
    (lists / "vallist01.txt").write_text(f"{spaced} {classes.index(other) + 1}\n")
    (lists / "testlist01.txt").write_text((lists / "testlist01.txt").read_text() + spaced + "\n")
    assert [r.path for r in ucf101_records(root, "val", val=True)[0]] == [videos / spaced]
    assert ucf101_records(root, "test")[0][-1].path == videos / spaced
    ind = (lists / "classInd.txt").read_text()
    (lists / "classInd.txt").write_text("\ufeff" + ind, encoding="utf-8")      # a BOM (written on Windows)
    assert ucf101_records(root, "train")[1] == ucf101_records(own, "train")[1]
    (lists / "classInd.txt").write_text("\n".join(classes) + "\n")              # names without indices
    with pytest.raises(ValueError, match=r"classInd.txt: line .* is not '<index> <ClassName>'"):
        ucf101_records(root, "train")
    mpg = tmp_path / "mpg"
    shutil.copytree(own, mpg)
    for name in ("trainlist01.txt", "testlist01.txt", "vallist01.txt"):
        f = mpg / "ucfTrainTestlist" / name
        f.write_text(f.read_text().replace(".mp4", ".mpg"))
    for video in list((mpg / "UCF-101").rglob("*.mp4")):
        video.rename(video.with_suffix(".mpg"))
    with pytest.raises(ValueError, match=r"storage 'lossless' cannot write \.mpg videos .*--storage residual"):
        generate_mirror(MirrorConfig(out=str(tmp_path / "mirror"), dataset="ucf101", root=str(mpg), split="train",
                                     flow=None, progress=False))
    assert not (tmp_path / "mirror").exists()
    from s2vc.training.data.layouts import VideoRecord
    from s2vc.training.pretrain.mirror import _check_containers
    webm = [VideoRecord(tmp_path / "a.webm", 0, "a")]
    _check_containers(webm, "lossless")                                         # lossless VP9 in WebM
    with pytest.raises(ValueError, match=r"storage 'compact' cannot write \.webm videos"):
        _check_containers(webm, "compact")                                      # no near-lossless WebM
    report = generate_mirror(MirrorConfig(out=str(tmp_path / "mirror"), dataset="ucf101", root=str(mpg), split="train",
                                          flow=None, progress=False, storage="residual", decode_size=32))
    manifest = json.loads((tmp_path / "mirror" / "manifest.json").read_text())
    assert manifest["videos"] and not [v for v in manifest["videos"].values() if v.get("skipped")], report


def test_decoded_videos_are_kept_in_memory_only_where_they_fit(own, monkeypatch, capsys):
    """A set of one's own may be UCF101 itself (about 100 GB decoded at 128 px): reproduce keeps the
    decoded training videos in memory only when a sample's estimate fits a quarter of the memory,
    and says so; the flag decides when given; the synthetic set is always kept."""
    import os
    from s2vc.training.experiments import runner
    cfg = runner.ReproduceConfig(out="x", dataset="ucf101", root=str(own), decode_size=32)
    assert runner.cache_decision(cfg, ("moco",)) is True
    said = capsys.readouterr().err
    assert "the 18 training videos decoded at 32 px take about" in said and "kept in memory" in said
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 1 if name == "SC_PHYS_PAGES" else real(name))  # a tiny machine
    assert runner.cache_decision(cfg, ("moco", "s2vc-keys")) is False
    said = capsys.readouterr().err
    assert "(with the keys)" in said and "decoded per clip" in said
    # the evaluation windows, kept for every snapshot's scoring, are checked before anything trains
    from s2vc.training.experiments.sets import check_set
    with pytest.raises(ValueError, match="evaluation windows .* would take about .*lower --num-clips"):
        check_set(cfg, ("moco",))
    assert runner.cache_decision(runner.ReproduceConfig(out="x", dataset="ucf101", root=str(own),
                                                        cache_videos=True), ("moco",)) is True
    assert runner.cache_decision(runner.ReproduceConfig(out="x"), ("moco",)) is True        # the synthetic set
    no = runner.ReproduceConfig(out="x", dataset="ucf101", root=str(own), cache_videos=False)
    assert runner.run_settings(no, own / "run", mode="moco", seed=0).cache_videos is False
    assert build_parser().parse_args(["reproduce", "--out", "x", "--no-cache-videos"]).cache_videos is False


def test_split_val_holds_a_validation_split_out_by_group_into_a_new_fold(own, tmp_path, capsys):
    """`s2vc split-val`: a set of one's own without a vallist gains one in a new fold, by group (no
    recording on both sides), the source lists untouched; every command reads it with --fold."""
    from s2vc.training.data.layouts import ucf101_records
    from s2vc.training.data.val_fold import _group, write_val_fold
    from s2vc.training.experiments.runner import ReproduceConfig
    from s2vc.training.experiments.sets import check_set
    from s2vc.training.data.synthetic import make_static_bias_set
    with pytest.raises(ValueError, match="nothing can be held out by group"):      # 3 clips per class: one group
        write_val_fold(own, share=0.5)
    root = make_static_bias_set(tmp_path / "mine", **{**OWN, "train_per_class": 8, "val_per_class": 0})
    lists = root / "ucfTrainTestlist"
    for extra in ("looks.csv", "vallist01.txt"):            # a set of one's own: train and test lists only
        (lists / extra).unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in lists.iterdir()}
    assert _run(["split-val", "--root", str(root), "--share", "0.5"]) == 0
    said = capsys.readouterr().out
    assert "use it with --fold 4" in said and "motion probe cannot score" in said     # one group per class
    assert {p.name: p.read_bytes() for p in lists.iterdir() if p.name in before} == before     # untouched
    train, val = ucf101_records(root, "train", 4)[0], ucf101_records(root, "val", 4, val=True)[0]
    source = ucf101_records(root, "train", 1)[0]
    assert sorted(r.path for r in train + val) == sorted(r.path for r in source) and val and train
    assert not {_group(r.video_id, r.label) for r in val} & {_group(r.video_id, r.label) for r in train}
    assert {r.label for r in val} == {r.label for r in source}          # every class gave a group
    assert (lists / "testlist04.txt").read_bytes() == (lists / "testlist01.txt").read_bytes()
    check_set(ReproduceConfig(out=str(tmp_path / "r"), dataset="ucf101", root=str(root), fold=4, split="val"), ("moco",))
    again = write_val_fold(root, share=0.5, seed=1)
    assert again["fold"] == 5 and again["probe"] is False
    # more groups per class: two held out, of both parities, so the probe can score the split
    from s2vc.training.data.val_fold import PROBE_GROUPS, _both_parities, held_out_count
    assert [held_out_count(n, 0.1) for n in (1, 2, 5, PROBE_GROUPS, 14, 25, 40)] == [0, 1, 1, 2, 2, 2, 4]
    assert held_out_count(2, 0.9) == 1 and held_out_count(8, 0.5) == 4
    rng = __import__("numpy").random.default_rng(0)
    groups = [(0, g) for g in range(1, 9)]
    assert {g % 2 for _, g in _both_parities([(0, 2), (0, 4)], groups, rng)} == {0, 1}
    assert _both_parities([(0, 2), (0, 3)], groups, rng) == [(0, 2), (0, 3)]
    assert _both_parities([(0, 2)], groups, rng) == [(0, 2)]
    with pytest.raises(ValueError, match="fold 4 exists already"):
        write_val_fold(root, share=0.5, into=4)
    with pytest.raises(ValueError, match=r"--share must lie in \(0, 1\)"):
        write_val_fold(root, share=1.0)
    with pytest.raises(ValueError, match="not the source fold"):
        write_val_fold(root, share=0.5, into=1)
