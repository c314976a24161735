"""``s2vc eval ... --weights FILE``: backbones trained elsewhere through the evaluations (issue 22).

A plain torchvision ``r3d_18`` state_dict, the same under the prefixes other trainers write,
this project's pretrain checkpoints, and the one-line errors for weights that do not fit."""
from __future__ import annotations

import json

import pytest
import torch
from torchvision.models import video as tv_video

from s2vc.cli import main
from s2vc.training.evaluation.checkpoints import backbone_from_weights, load_weights
from s2vc.training.evaluation.common import EvalSettings
from s2vc.training.models import Encoder
from s2vc.training.pretrain.moco import MoCo


@pytest.fixture(scope="module")
def r3d():
    """(a torchvision r3d_18, random init, in eval mode; its state_dict, classifier head included)."""
    torch.manual_seed(0)
    net = tv_video.r3d_18(weights=None).eval()
    return net, net.state_dict()


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    """A UCF101-format set of our own: the synthetic set's layout, 2 classes, 32x32, 8 frames."""
    from s2vc.training.data.synthetic import make_static_bias_set
    return make_static_bias_set(tmp_path_factory.mktemp("ucf"), classes=2, train_per_class=3, test_per_class=2,
                                frames=8, size=32)


def _features_of_torchvision(net, clips):
    head, net.fc = net.fc, torch.nn.Identity()
    try:
        return net(clips)
    finally:
        net.fc = head


def test_a_torchvision_state_dict_gives_the_same_features(r3d):
    net, state = r3d
    model, report = backbone_from_weights(state, source="r3d.pt")
    clips = torch.rand(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(clips), _features_of_torchvision(net, clips), atol=1e-5, rtol=1e-5)
    assert model.backbone_name == "r3d_18" and not model.training
    assert report.prefix == "" and report.head == ["fc.bias", "fc.weight"] and report.unexpected == []
    assert report.line("r3d.pt") == ("r3d_18 weights from r3d.pt (no prefix; no backbone key missing; "
                                     "classifier head ['fc.bias', 'fc.weight'] dropped)")


@pytest.mark.parametrize("prefix, wrapper", [("module.", None), ("backbone.", None), ("encoder_q.", None),
                                             ("encoder_q.backbone.", "model"), ("module.encoder_q.backbone.", None),
                                             ("model.", "state_dict")])
def test_prefixes_are_stripped_and_said(r3d, prefix, wrapper):
    """DDP's module., a wrapper's backbone., MoCo's encoder_q.(backbone.), Lightning's
    {"state_dict": {"model.…"}}: each stripped, the rest of the trainer's keys left aside."""
    _, state = r3d
    saved = {prefix + k: v for k, v in state.items()}
    saved["queue"] = torch.zeros(4, 8)                                  # a trainer's own buffer, outside
    model, report = backbone_from_weights({wrapper: saved, "epoch": 3} if wrapper else saved)
    line = report.line("w.pt")
    assert f"prefix {prefix!r} stripped" in line and "1 keys outside the prefix ignored" in line
    assert torch.equal(model.state_dict()["net.layer4.1.conv2.0.weight"], state["layer4.1.conv2.0.weight"])


def test_any_prefix_is_found_and_the_query_encoder_wins_a_tie(r3d):
    """A Lightning checkpoint of examples/lightning_moco.py: {"state_dict": {"moco.encoder_q.backbone.net.…",
    "moco.encoder_k.backbone.net.…", …}}: no known prefix, the query encoder (saved first) is read."""
    _, state = r3d
    saved = {f"moco.encoder_q.backbone.net.{k}": v for k, v in state.items()}
    saved.update({f"moco.encoder_k.backbone.net.{k}": torch.zeros_like(v) for k, v in state.items()})
    model, report = backbone_from_weights({"state_dict": saved, "epoch": 1})
    assert report.prefix == "moco.encoder_q.backbone." and report.outside == len(state)
    assert torch.equal(model.state_dict()["net.stem.0.weight"], state["stem.0.weight"])
    keyed = {f"encoder_k.backbone.{k}": torch.zeros_like(v) for k, v in state.items()}
    keyed.update({f"encoder_q.backbone.{k}": v for k, v in state.items()})      # the key encoder saved first
    model, report = backbone_from_weights(keyed)
    assert report.prefix == "encoder_q.backbone."                              # the known prefix decides
    assert torch.equal(model.state_dict()["net.stem.0.weight"], state["stem.0.weight"])


def test_a_torchvision_s3d_state_dict():
    torch.manual_seed(0)
    state = tv_video.s3d(weights=None).state_dict()
    model, report = backbone_from_weights({"module." + k: v for k, v in state.items()})
    assert model.backbone_name == "s3d" and report.prefix == "module."
    assert report.head == ["classifier.1.bias", "classifier.1.weight"]


def test_a_saved_file_with_a_prefix(r3d, tmp_path):
    _, state = r3d
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "w.pt")
    model, line = load_weights(tmp_path / "w.pt", "r3d_18")
    assert line.startswith(f"r3d_18 weights from {tmp_path / 'w.pt'} (prefix 'module.' stripped")


def test_unexpected_keys_under_the_prefix_are_dropped_and_named(r3d):
    _, state = r3d
    extra = {**state, "projector.weight": torch.zeros(2, 2)}
    _, report = backbone_from_weights(extra, "r3d_18")
    assert report.unexpected == ["projector.weight"]
    assert "1 unexpected keys dropped ['projector.weight']" in report.line("x")


def test_missing_backbone_weights_are_an_error(r3d):
    _, state = r3d
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    with pytest.raises(ValueError, match=r"of the 120 weights of a 'r3d_18' backbone are missing .*layer4") as info:
        backbone_from_weights(partial)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no key fits a s3d backbone"):
        backbone_from_weights(state, "s3d")                              # another architecture asked
    with pytest.raises(ValueError, match="no key fits"):
        backbone_from_weights({"x.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no state_dict of tensors"):
        backbone_from_weights({"epoch": 3})


def test_a_wrong_shape_is_an_error(r3d):
    _, state = r3d
    bad = {**state, "stem.0.weight": torch.zeros(64, 3, 1, 7, 7)}
    with pytest.raises(ValueError, match="other shapes"):
        backbone_from_weights(bad)


def test_this_projects_pretrain_checkpoint_reads_through_weights_too(tmp_path):
    torch.manual_seed(0)
    moco = MoCo(Encoder("small"), K=8)
    torch.save({"model": moco.state_dict(), "config": {"backbone": "small"}}, tmp_path / "checkpoint.pt")
    model, line = load_weights(tmp_path)                               # a run folder
    assert line.startswith("small weights from") and "prefix 'encoder_q.backbone.' stripped" in line
    assert torch.equal(model.state_dict()["features.0.weight"], moco.encoder_q.backbone.features[0].weight)
    with pytest.raises(ValueError, match="of backbone 'small', but backbone 'r3d_18' was asked"):
        load_weights(tmp_path, "r3d_18")


def test_checkpoint_and_weights_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        EvalSettings(checkpoint="a.pt", weights="b.pt")


def _args(root, out):
    return ["--dataset", "ucf101", "--root", str(root), "--frames", "4", "--stride", "1", "--crop-size", "32",
            "--decode-size", "32", "--num-clips", "1", "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--out", str(out)]


def test_eval_retrieval_scores_a_torchvision_r3d_18_state_dict(r3d, ucf, tmp_path, capsys):
    _, state = r3d
    torch.save(state, tmp_path / "r3d_18.pt")
    assert main(["eval", "retrieval", "--weights", str(tmp_path / "r3d_18.pt"), *_args(ucf, tmp_path / "r.json")]) == 0
    stdout = capsys.readouterr().out
    assert "r3d_18 weights from" in stdout and "classifier head ['fc.bias', 'fc.weight'] dropped" in stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["weights"] == str(tmp_path / "r3d_18.pt") and result["checkpoint"] is None
    assert result["query_videos"] == 4 and result["gallery_videos"] == 6
    assert set(result["recall"]) >= {"R@1", "R@5"} and all(0 <= v <= 1 for v in result["recall"].values())


def test_eval_with_weights_that_do_not_fit_ends_in_one_line(r3d, ucf, tmp_path, capsys):
    _, state = r3d
    torch.save({"backbone." + k: v for k, v in state.items() if not k.startswith("stem.")}, tmp_path / "cut.pt")
    assert main(["eval", "linear", "--weights", str(tmp_path / "cut.pt"), *_args(ucf, tmp_path / "l.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights of a 'r3d_18' backbone are missing" in err[0] and "stem.0.weight" in err[0]
    (tmp_path / "not.pt").write_text("hello")
    assert main(["eval", "retrieval", "--weights", str(tmp_path / "not.pt"), *_args(ucf, tmp_path / "n.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a backbone weights checkpoint" in err[0]


@pytest.mark.parametrize("evaluation, settings_class", [
    ("retrieval", "s2vc.training.evaluation.common:EvalSettings"),
    ("linear", "s2vc.training.evaluation.common:LinearEvalSettings"),
    ("temporal-order", "s2vc.training.evaluation.common:LinearEvalSettings"),
    ("probes", "s2vc.training.evaluation.probes:ProbeSettings"),
    ("finetune", "s2vc.training.evaluation.finetune:FinetuneSettings")])
def test_every_backbone_evaluation_takes_weights(tmp_path, evaluation, settings_class):
    """The flag reaches each evaluation's settings, and the backbone it evaluates is the weights'."""
    import importlib

    from s2vc.cli import build_parser
    from s2vc.commands.common import settings_from_args
    from s2vc.training.evaluation.common import eval_backbone
    torch.manual_seed(1)
    moco = MoCo(Encoder("small"), K=8)
    torch.save({"module." + k: v for k, v in moco.encoder_q.backbone.state_dict().items()}, tmp_path / "w.pt")
    args = build_parser().parse_args(["eval", evaluation, "--weights", str(tmp_path / "w.pt")])
    module, name = settings_class.split(":")
    settings = settings_from_args(getattr(importlib.import_module(module), name), args)
    assert settings.weights == str(tmp_path / "w.pt") and settings.checkpoint is None
    model, desc = eval_backbone(settings)
    assert desc.startswith("small weights from") and "prefix 'module.' stripped" in desc
    assert torch.equal(model.state_dict()["features.0.weight"], moco.encoder_q.backbone.features[0].weight)
