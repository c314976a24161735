"""The comparison on a set of one's own (issue 21: it is to be repeated "on a static-bias set of
our own that the project has never seen"): `s2vc reproduce --dataset ucf101 --root R --flow F`
trains every arm on R's train split and scores R's test (or val) split, with paired tables, and
refuses what cannot work there before training anything."""
from __future__ import annotations

import json
import math
import shutil

import pytest

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
    # the validation split of one's own (vallist01.txt: videos held out of trainlist01.txt)
    val = _run(["reproduce", "--out", str(out), "--arms", "moco", "--flow", "bundled", *_own(own, "--split", "val"),
                "--eval-only"])
    assert (out / "results_val.json").exists() and [r["step"] for r in val["rows"]] == [0, 1, 2]
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
