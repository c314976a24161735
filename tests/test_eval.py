"""Evaluation: metrics on constructed features with known answers, the checkpoint loader (files,
run folders, and what is neither), and retrieval / linear probe / temporal order end to end on a
tiny synthetic set, through the typed library and through ``s2vc eval``."""
from __future__ import annotations

import json
import math

import pytest
import torch

from s2vc.cli import main as cli_main
from s2vc.training.data.datasets import build_dataset
from s2vc.training.evaluation.common import EvalSettings, LinearEvalSettings
from s2vc.training.evaluation.frozen import (assert_frozen_unchanged, evaluate_linear, evaluate_retrieval,
                                    evaluate_temporal_order, extract_features, frame_permutation, frozen_state,
                                    linear_probe, load_backbone, temporal_order_test)
from s2vc.training.evaluation.metrics import pearson, retrieval_recall, top1
from s2vc.training.models import Encoder
from s2vc.training.pretrain.moco import MoCo

# --- metrics ---------------------------------------------------------------------------------


def test_retrieval_recall_known_neighbours():
    # gallery: one item per direction e_0..e_3 with labels 0..3; queries sit next to e_j
    gallery = torch.eye(4) * 10 + 1.0                  # the mean (3.5 everywhere) is removed first
    g_labels = torch.tensor([0, 1, 2, 3])
    queries = gallery[[0, 1, 2]] + 0.1 * torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]).float()
    # query 0 -> nearest e_0 (label 0: hit at 1); query 1 has label 3, which is its most distant
    # item; query 2 -> label 0 is its second nearest (e_2 first, then e_0)
    q_labels = torch.tensor([0, 3, 0])
    r = retrieval_recall(queries, q_labels, gallery, g_labels, ks=(1, 2, 4, 50))
    assert r == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@4": 1.0, "R@50": 1.0})
    assert list(r) == ["R@1", "R@2", "R@4", "R@50"]


def test_retrieval_centres_by_gallery_mean():
    # without centring every item is ~(100, 100) and cosine ranks are arbitrary; with it the
    # query next to (101, 100) finds that item first
    gallery = torch.tensor([[101.0, 100.0], [100.0, 101.0]])
    r = retrieval_recall(torch.tensor([[100.9, 100.0]]), torch.tensor([1]), gallery, torch.tensor([1, 0]), ks=(1,))
    assert r["R@1"] == 1.0
    with pytest.raises(ValueError, match="labels do not match"):
        retrieval_recall(gallery, torch.tensor([0]), gallery, torch.tensor([0, 1]))


def test_top1_and_pearson():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    assert top1(logits, torch.tensor([0, 1, 1, 0])) == 0.5
    x = torch.arange(10.0)
    assert pearson(x, 3 * x + 2) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4])) == pytest.approx(0.8)
    assert math.isnan(pearson(x, torch.ones(10)))


def test_linear_probe_separable_and_random_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 32, generator=g) * 3

    def sample(n):
        y = torch.randint(0, 5, (n,), generator=g)
        return centres[y] + torch.randn(n, 32, generator=g) * 0.5 + 50.0, y   # offset: BN must handle it

    (xtr, ytr), (xte, yte) = sample(500), sample(200)
    res = linear_probe(xtr, ytr, xte, yte, epochs=30, lr=1e-2, weight_decay=0.0)
    assert res["top1"] >= 0.98 and res["num_classes"] == 5
    rtr, rte = torch.randint(0, 5, (500,), generator=g), torch.randint(0, 5, (200,), generator=g)
    chance = linear_probe(xtr, rtr, xte, rte, epochs=30, lr=1e-2, weight_decay=0.0)
    assert abs(chance["top1"] - 0.2) < 0.1


def test_assert_frozen_unchanged():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    state = frozen_state(net)
    assert_frozen_unchanged(net, state)
    net.train()(torch.randn(4, 3))                     # moves the BatchNorm running statistics
    with pytest.raises(AssertionError, match="running_mean"):
        assert_frozen_unchanged(net, state)


def test_frame_permutation_is_seeded_and_never_identity():
    for v in range(20):
        p = frame_permutation(2, seed=0, video_index=v)
        assert p.tolist() == [1, 0]
    assert torch.equal(frame_permutation(8, 3, 5), frame_permutation(8, 3, 5))


# --- checkpoint ------------------------------------------------------------------------------


def _checkpoint(path, backbone="small", saved_as=None):
    torch.manual_seed(0)
    moco = MoCo(Encoder(backbone), K=8)
    torch.save({"model": moco.state_dict(), "config": {"backbone": saved_as or backbone}}, path)
    return moco


def test_load_backbone_accepts_its_own(tmp_path):
    moco = _checkpoint(tmp_path / "ckpt.pt")
    net = load_backbone(tmp_path / "ckpt.pt")
    assert not net.training
    ref = moco.encoder_q.backbone.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())
    assert load_backbone(tmp_path / "ckpt.pt", "small").backbone_name == "small"


def test_load_backbone_refuses_another_backbone(tmp_path):
    _checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="backbone 'small'.*backbone 'r3d_18' was asked"):
        load_backbone(tmp_path / "ckpt.pt", "r3d_18")
    # a config that lies: the keys are checked too
    _checkpoint(tmp_path / "lying.pt", "small", saved_as="r3d_18")
    with pytest.raises(ValueError, match="do not fit a 'r3d_18' backbone.*missing"):
        load_backbone(tmp_path / "lying.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a pretrain checkpoint"):
        load_backbone(tmp_path / "other.pt")


def test_load_backbone_takes_a_pretrain_run_folder(tmp_path):
    """Issue 11: `s2vc pretrain --out RUN` writes RUN/checkpoint.pt; RUN itself is accepted."""
    run = tmp_path / "run"
    run.mkdir()
    moco = _checkpoint(run / "checkpoint.pt")
    net = load_backbone(run)
    ref = moco.encoder_q.backbone.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())


def test_load_backbone_refuses_what_is_not_a_checkpoint_in_one_line(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(ValueError) as info:
        load_backbone(video)
    message = str(info.value)
    assert message.startswith(f"checkpoint {video} is not a pretrain checkpoint (expected RUN/checkpoint.pt")
    assert "\n" not in message and "weights_only" not in message and len(message) < 400
    with pytest.raises(FileNotFoundError, match="does not exist \\(expected RUN/checkpoint.pt"):
        load_backbone(tmp_path / "missing.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="folder without checkpoint.pt"):
        load_backbone(tmp_path / "empty_run")


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """A synthetic set of 16-frame videos (3 train, 2 test per class), read in UCF101's layout."""
    from s2vc.training.data.synthetic import make_static_bias_set
    root = tmp_path_factory.mktemp("synthetic")
    make_static_bias_set(root, train_per_class=3, test_per_class=2, frames=16)
    return root


def _test_split(root):
    return build_dataset("ucf101", root, "test", frames=4, stride=2, size=None, two_clips=False)


def test_extract_features_one_per_video(tiny_set):
    ds = _test_split(tiny_set)
    torch.manual_seed(0)
    net = Encoder("small").backbone
    state = frozen_state(net)
    feats, labels = extract_features(net, ds, num_clips=2, size=32, batch_size=3)
    assert feats.shape == (len(ds), net.out_dim) and labels.tolist() == [r.label for r in ds.records]
    assert_frozen_unchanged(net, state)
    # the mean of the per-window features of video 0
    item = ds.eval_clips(0, 2, 0.5)
    from s2vc.training.data.transforms import eval_transform, normalize_clip
    t = eval_transform(32)
    with torch.no_grad():
        ref = net.eval()(normalize_clip(torch.stack([t(c) for c in item["clips"]]))).mean(0)
    assert len(item["clips"]) == 2
    torch.testing.assert_close(feats[0], ref, rtol=1e-4, atol=1e-5)


def _settings(root, ckpt, cls=EvalSettings, **kw):
    return cls(checkpoint=str(ckpt), dataset="synthetic", root=str(root), frames=4, stride=2, size=32,
               decode_size=32, num_clips=2, batch_size=8, workers=0, device="cpu", **kw)


def test_eval_library_end_to_end(tiny_set, tmp_path):
    root = tiny_set
    _checkpoint(tmp_path / "ckpt.pt")
    r = evaluate_retrieval(_settings(root, tmp_path / "ckpt.pt", out=str(tmp_path / "retrieval.json")))
    assert json.loads((tmp_path / "retrieval.json").read_text()) == r        # the JSON is the result
    assert set(r["recall"]) == {"R@1", "R@5", "R@10", "R@20", "R@50"} and r["query_videos"] == 12
    assert r["gallery_videos"] == 18 and r["recall"]["R@50"] == 1.0 and r["skipped"] == []
    assert "R@1" in r.table and r.notes == []
    linear = evaluate_linear(_settings(root, tmp_path / "ckpt.pt", LinearEvalSettings, epochs=5))
    assert 0.0 <= linear["top1"] <= 1.0 and linear["num_classes"] == 6 and "top-1" in linear.table
    t = evaluate_temporal_order(_settings(root, tmp_path / "ckpt.pt", LinearEvalSettings, epochs=5))
    assert t["train_videos"] + t["test_videos"] == 12 and 0.0 <= t["top1"] <= 1.0
    assert "chance 50.00" in t.table
    with pytest.raises(ValueError, match="protocol must be one of"):
        EvalSettings(protocol="mean")
    with pytest.raises(ValueError, match="labelled dataset.*folder dataset is unlabelled"):
        EvalSettings(dataset="folder")


def test_eval_commands_end_to_end(tiny_set, tmp_path, capsys):
    root = tiny_set
    run = tmp_path / "run"                        # what `s2vc pretrain --out RUN` leaves
    run.mkdir()
    _checkpoint(run / "checkpoint.pt")
    common = ["--dataset", "synthetic", "--root", str(root), "--frames", "4", "--stride", "2", "--crop-size", "32",
              "--decode-size", "32", "--num-clips", "2", "--batch-size", "8", "--workers", "0", "--device", "cpu"]
    results = {}
    for cmd, ckpt, extra in (("retrieval", run / "checkpoint.pt", []), ("linear", run, ["--epochs", "5"]),
                             ("temporal-order", run, ["--epochs", "5"])):
        assert cli_main(["eval", cmd, "--checkpoint", str(ckpt), *common, *extra,
                         "--out", str(tmp_path / f"{cmd}.json")]) == 0
        results[cmd] = json.loads((tmp_path / f"{cmd}.json").read_text())
    out = capsys.readouterr().out
    assert "R@1" in out and "top-1" in out and "chance 50.00" in out
    r = results["retrieval"]
    assert r["query_videos"] == 12 and r["gallery_videos"] == 18 and r["checkpoint"] == str(run / "checkpoint.pt")
    assert results["linear"]["num_classes"] == 6 and results["linear"]["checkpoint"] == str(run)
    t = results["temporal-order"]
    assert t["train_videos"] + t["test_videos"] == 12


def test_eval_command_refuses_a_video_as_checkpoint_in_one_line(tiny_set, tmp_path, capsys):
    """Issue 11: a path that is neither a checkpoint nor a run folder is one line, exit 1."""
    video = sorted((tiny_set / "UCF-101").glob("*/*.mp4"))[0]
    for given in (video, tmp_path / "missing", tmp_path):
        assert cli_main(["eval", "retrieval", "--checkpoint", str(given), "--root", str(tiny_set)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"s2vc eval retrieval: error: checkpoint {given} ")
        assert "(expected RUN/checkpoint.pt or a .pt file written by s2vc pretrain)" in err[0]
    assert cli_main(["eval", "retrieval", "--root", str(tiny_set)]) == 1
    assert "expected a pretrain checkpoint (--checkpoint)" in capsys.readouterr().err


class RampVideos:
    """A stand-in dataset (``eval_clips`` only): 2 windows per video whose frame t is noise plus a
    brightness t / T, so the frame order is written in the pixels."""

    strict = False

    def __init__(self, n, frames=4):
        self.n, self.frames = n, frames

    def __len__(self):
        return self.n

    def eval_clips(self, i, num_clips, overlap, transform=None):
        g = torch.Generator().manual_seed(i)
        ramp = torch.linspace(0, 1, self.frames).view(1, 1, -1, 1, 1)
        clips = (0.5 * torch.rand(2, 3, self.frames, 8, 8, generator=g) + 0.5 * ramp).clamp(0, 1)
        clips = torch.stack([transform(c) for c in clips]) if transform else clips
        return {"clips": clips, "label": 0, "index": i, "starts": [0, 2]}


def test_temporal_order_on_order_sensitive_backbone():
    class FrameMeans(torch.nn.Module):                   # sees the order: (B, C, T, H, W) -> (B, T)
        def forward(self, x):
            return x.mean(dim=(1, 3, 4))

    class ClipMean(torch.nn.Module):                     # blind to the order: (B, C, T, H, W) -> (B, 1)
        def forward(self, x):
            return x.mean(dim=(1, 2, 3, 4))[:, None]

    res = temporal_order_test(FrameMeans(), RampVideos(40, frames=8), num_clips=2, size=8, batch_size=8,
                              epochs=200, lr=1e-2)
    assert res["top1"] >= 0.9 and res["train_videos"] == 20 and res["test_videos"] == 20
    blind = temporal_order_test(ClipMean(), RampVideos(40, frames=8), num_clips=2, size=8, batch_size=8,
                                epochs=200, lr=1e-2)
    assert blind["top1"] <= 0.6                          # natural and shuffled features are identical


def test_skipped_videos_are_reported_and_left_out(tiny_set, tmp_path):
    from s2vc.training.data.datasets import ClipDataset, SkippedCounter, VideoRecord
    good = _test_split(tiny_set)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video")
    records = [good.records[0], VideoRecord(junk, 1, "junk"), good.records[1]]
    ds = ClipDataset(records, good.classes, frames=4, stride=2, size=None, two_clips=False)
    skipped = SkippedCounter()
    feats, labels = extract_features(Encoder("small").backbone, ds, num_clips=2, size=32, skipped=skipped)
    assert len(feats) == 2 and labels.tolist() == [good.records[0].label, good.records[1].label]
    assert skipped.total == 1 and "junk.avi: cannot decode" in skipped.messages[0]


def test_concat_protocol_joins_the_windows_along_time(tiny_set):
    """The authors' variant: one long clip per video instead of the mean over windows."""
    from s2vc.training.data.transforms import eval_transform, normalize_clip
    ds = _test_split(tiny_set)
    torch.manual_seed(0)
    net = Encoder("small").backbone.eval()
    feats, _ = extract_features(net, ds, num_clips=3, size=32, batch_size=4, protocol="concat")
    item = ds.eval_clips(1, 3, 0.5)
    t = eval_transform(32)
    long_clip = torch.cat([t(c) for c in item["clips"]], dim=1)          # (C, 3 * 4, H, W)
    with torch.no_grad():
        ref = net(normalize_clip(long_clip[None]))[0]
    torch.testing.assert_close(feats[1], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="protocol must be one of"):
        extract_features(net, ds, protocol="mean")


def test_eval_commands_show_a_progress_bar_unless_told_not_to(tiny_set, tmp_path, capsys):
    """``s2vc eval retrieval`` shows a bar over each split's videos on stderr; ``--no-progress``
    none; a library caller (EvalSettings' default) none."""
    run = tmp_path / "run"
    run.mkdir()
    _checkpoint(run / "checkpoint.pt")
    flags = ["eval", "retrieval", "--checkpoint", str(run), "--dataset", "synthetic", "--root", str(tiny_set),
             "--frames", "4", "--stride", "2", "--crop-size", "32", "--decode-size", "32", "--num-clips", "2",
             "--workers", "0", "--device", "cpu"]
    assert cli_main(flags) == 0
    err = capsys.readouterr().err
    assert "features train" in err and "features test" in err and "video" in err
    assert cli_main([*flags, "--no-progress"]) == 0
    assert "features" not in capsys.readouterr().err
    evaluate_retrieval(_settings(tiny_set, run / "checkpoint.pt"))
    assert "features" not in capsys.readouterr().err
