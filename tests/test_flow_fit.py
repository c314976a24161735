"""The domain check (does a flow fit a dataset?) and the synthetic set's own fitted flow."""
from __future__ import annotations

import math

import pytest
import torch

from s2vc.engine import load_flow
from s2vc.engine.checkpoint import save_flow
from s2vc.engine.flow import AdvFlow, FlowConfig
from s2vc.training.flow import fitted as fitted_flow_module
from s2vc.training.data.datasets import dataset_root, split_records
from s2vc.training.flow.fitted import FittedFlowRecipe, fitted_flow_for, fitted_flow_path
from s2vc.training.flow.fit_check import (FIT_MARGIN_BPD, FlowDoesNotFitError, check_flow_fits, check_flow_for_dataset,
                                    fit_command, noise_quantile, reference_bpd)
from s2vc.training.data.synthetic import SyntheticSet

TINY_SET = SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12)
# enough training videos for the check's noise (SE over videos) to be below the bundled flow's shortfall
CHECK_SET = SyntheticSet(classes=2, train_per_class=8, test_per_class=1, frames=12)
TINY_RECIPE = FittedFlowRecipe(resolution=8, high_blocks=1, low_blocks=1, fc_blocks=1, hidden=8, fc_hidden=8,
                               epochs=2, steps_per_epoch=3, batch_size=4, warmup_steps=1, decode_size=32,
                               clip_len=6, holdout=0.25, from_bundled=False, crop_scale=(0.5, 1.0))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return dataset_root("synthetic", tmp_path_factory.mktemp("set") / "tiny", synthetic=TINY_SET)


@pytest.fixture(scope="module")
def check_root(tmp_path_factory):
    return dataset_root("synthetic", tmp_path_factory.mktemp("set") / "check", synthetic=CHECK_SET)


def test_bundled_flow_on_the_synthetic_set(check_root):
    bundled = load_flow()
    ref, where, ref_se = reference_bpd(bundled)
    assert ref == pytest.approx(4.638, abs=0.01) and "history" in where and ref_se == 0   # docs/default_flow.md
    report = check_flow_for_dataset(bundled, "synthetic", check_root, synthetic=CHECK_SET)
    assert report.frames >= 96 and report.videos == 16 and report.reference_bpd == ref
    assert report.margin == FIT_MARGIN_BPD and 0 < report.noise < 0.2
    # the bundled flow was trained on natural clips: it does not fit the synthetic set
    assert report.fits is False and report.data_bpd > ref + FIT_MARGIN_BPD + report.quantile * report.noise
    # the reference records no spread: the data's 16 videos give 15 degrees of freedom
    assert report.quantile == pytest.approx(1.7531, abs=1e-4)
    assert "does not fit synthetic" in report.message and "\n" not in report.message
    assert f"± {report.noise:.3f}" in report.message        # the noise is stated (the reference records none)
    # a set with settings that have no flag is read through its UCF101 layout
    assert report.fit_command == f"s2vc train-flow --dataset ucf101 --root {check_root} --out flow_ucf101.pt " \
                                 "--minutes 30"
    assert report.fit_command in report.message
    with pytest.raises(FlowDoesNotFitError, match="s2vc train-flow --dataset ucf101"):
        check_flow_for_dataset(None, "synthetic", check_root, synthetic=CHECK_SET, strict=True, frames=16)
    # a margin wide enough lets it pass, with a message that says so
    wide = check_flow_for_dataset(bundled, "synthetic", check_root, synthetic=CHECK_SET, margin=10.0, frames=16)
    assert wide.fits is True and wide.frames == 16
    assert wide.message.startswith("the flow fits synthetic")


def test_frames_tensors_and_a_flow_without_a_reference(tiny_root, tmp_path):
    from s2vc.engine import video_io
    path = split_records("synthetic", tiny_root, "train")[0].path
    frames = video_io.read_video(path)                                    # uint8 (T, 64, 64, 3)
    flow = AdvFlow(FlowConfig(resolution=8, high_blocks=1, low_blocks=1, fc_blocks=1, hidden=8, fc_hidden=8))
    report = check_flow_fits(flow, frames)
    assert report.fits is None and report.reference_bpd is None and "unknown" in report.message
    assert report.fit_command.startswith("s2vc train-flow --data")
    as_float = check_flow_fits(flow, frames.permute(0, 3, 1, 2).float() / 255)
    assert as_float.data_bpd == pytest.approx(report.data_bpd, abs=0.05)
    # a checkpoint's meta["heldout_bpd"] is the reference
    save_flow(flow, tmp_path / "f.pt", meta={"heldout_bpd": report.data_bpd - 1.0})
    checked = check_flow_fits(tmp_path / "f.pt", frames, dataset="folder", root="/data/clips")
    assert checked.fits is False and checked.reference == "meta['heldout_bpd']"
    assert "--dataset folder --root /data/clips --out flow_folder.pt" in checked.message
    assert fit_command("synthetic", None, synthetic=SyntheticSet(train_per_class=5)) == \
        "s2vc train-flow --dataset synthetic --synthetic-train-per-class 5 --out flow_synthetic.pt --minutes 30"
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        check_flow_fits(flow, torch.zeros(2, 4, 4))


def test_fitted_flow_is_deterministic_and_cached(tmp_path, monkeypatch):
    first = fitted_flow_for(TINY_SET, root=tmp_path / "a", recipe=TINY_RECIPE, progress=False, log=lambda s: None)
    second = fitted_flow_for(TINY_SET, root=tmp_path / "b", recipe=TINY_RECIPE, progress=False, log=lambda s: None)
    assert first.parent == tmp_path / "a" and first.name == second.name
    assert first.name == f"flow_fitted_{TINY_RECIPE.key(TINY_SET)}.pt"
    a, b = load_flow(first), load_flow(second)
    assert torch.load(first, weights_only=True)["sha256"] == torch.load(second, weights_only=True)["sha256"]
    assert a.meta["alpha"] == b.meta["alpha"] > 0 and a.meta["heldout_bpd"] is not None
    assert a.meta["steps"] == 6 and a.meta["dataset"]["synthetic_set"] == TINY_SET.kwargs()
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".flow_fitted")]   # no work folder left

    def no_training(*args, **kwargs):
        raise AssertionError("the cached flow should have been reused")

    monkeypatch.setattr(fitted_flow_module, "train_flow", no_training)
    assert fitted_flow_for(TINY_SET, root=tmp_path / "a", recipe=TINY_RECIPE) == first
    assert fitted_flow_path(TINY_SET, root=tmp_path / "a", recipe=TINY_RECIPE) == first
    # another recipe or set is another file
    assert TINY_RECIPE.key(TINY_SET) != FittedFlowRecipe().key(TINY_SET) != FittedFlowRecipe().key(SyntheticSet())


def test_a_flow_fitted_with_train_flow_defaults_fits_its_own_data(check_root, tmp_path):
    """Issue 21: a flow fitted by train-flow (its defaults but a tiny architecture and a few
    steps) passes the check on its own training split; the check decodes at the size the flow was
    trained at and scores the same kind of views as its held-out figure (whole frames)."""
    from s2vc.training.flow.training import FlowTrainConfig, train_flow
    out = tmp_path / "f.pt"
    train_flow(FlowTrainConfig(dataset="synthetic", root=str(check_root), synthetic_set=CHECK_SET, out=str(out),
                               resolution=8, high_blocks=1, low_blocks=1, fc_blocks=1, hidden=8, fc_hidden=8,
                               epochs=2, steps_per_epoch=10, batch_size=8, decode_size=48, val_frames=8,
                               clip_len=6, progress=False), log=lambda line: None)
    flow = load_flow(out)
    views = flow.meta["fit_views"]
    assert views["decode_size"] == 48 and views["heldout_sources"] == 2 and views["heldout_bpd_se"] > 0
    report = check_flow_for_dataset(flow, "synthetic", check_root, synthetic=CHECK_SET, decode_size=128)
    assert report.decode_size == 48 and report.fits is True, report.message
    # train-flow recorded the check's own figure on the split it fitted: the check reproduces it
    assert views["own_videos"] == report.videos == 16 and views["own_frames"] == report.frames
    assert report.data_bpd == pytest.approx(views["own_bpd"], abs=1e-9)
    assert report.quantile == pytest.approx(noise_quantile(views["own_bpd_se"], 16, *(
        (views["own_bpd_se"], 16) if report.reference_bpd == views["own_bpd"] else (views["heldout_bpd_se"], 2))))
    assert f"{report.quantile:.2f} x {report.noise:.3f} noise" in report.message
    assert report.reference_bpd == max(flow.meta["heldout_bpd"], views["own_bpd"])
    chosen_se = views["own_bpd_se"] if report.reference_bpd == views["own_bpd"] else views["heldout_bpd_se"]
    assert report.noise == pytest.approx(math.hypot(views["own_bpd_se"], chosen_se))   # the data's SE is own_bpd_se
    assert "the flow fits synthetic" in report.message


def test_a_flow_whose_held_out_figure_is_low_still_fits_its_own_data(tiny_root, tmp_path):
    """With few training videos one video is held out, and its figure may lie well below what
    the flow scores on its training split: the check compares with the larger of the held-out
    figure and the check's own figure on the fitted data, so the flow passes on its own data and
    a flow recording only a low held-out figure would not."""
    from s2vc.training.flow.training import FlowTrainConfig, train_flow
    out = tmp_path / "f.pt"
    train_flow(FlowTrainConfig(dataset="synthetic", root=str(tiny_root), synthetic_set=TINY_SET, out=str(out),
                               resolution=8, high_blocks=1, low_blocks=1, fc_blocks=1, hidden=8, fc_hidden=8,
                               epochs=1, steps_per_epoch=4, batch_size=4, decode_size=32, val_frames=8,
                               clip_len=6, progress=False), log=lambda line: None)
    ckpt = torch.load(out, weights_only=True)
    views = dict(ckpt["meta"]["fit_views"])
    assert views["heldout_sources"] == 1 and views["heldout_bpd_se"] == 0      # one held-out video: no noise
    ckpt["meta"]["heldout_bpd"] = views["own_bpd"] - 1.0                        # an easy held-out video
    torch.save(ckpt, tmp_path / "low.pt")
    report = check_flow_for_dataset(tmp_path / "low.pt", "synthetic", tiny_root, synthetic=TINY_SET)
    assert report.fits is True and report.reference_bpd == views["own_bpd"], report.message
    assert "on the data it was fitted to" in report.message and "own_bpd" in report.reference
    del ckpt["meta"]["fit_views"]["own_bpd"]                                    # a flow of the code before
    torch.save(ckpt, tmp_path / "old.pt")
    old = check_flow_for_dataset(tmp_path / "old.pt", "synthetic", tiny_root, synthetic=TINY_SET)
    assert old.fits is False and old.reference_bpd == views["own_bpd"] - 1.0 and "held out" in old.message


def test_the_noise_allowance_is_a_t_quantile_at_welchs_degrees_of_freedom(monkeypatch):
    """The check allows a one-sided 95% t quantile of the difference's standard error at Welch's
    degrees of freedom: with few videos per figure a normal quantile (1.645) called a flow that
    fits unfit about twice as often as 5%; the t quantile keeps it near 5%."""
    import sys
    import numpy as np
    assert noise_quantile(0.1, 3, 0.0, 1) == pytest.approx(2.9200, abs=1e-4)      # 3 videos, a reference with no spread
    assert noise_quantile(0.1, 16, 0.1, 16) == pytest.approx(1.6973, abs=1e-4)    # df 30
    assert noise_quantile(0.0, 1, 0.0, 1) == pytest.approx(1.6449, abs=1e-4)      # no spread anywhere: the normal's
    fractional = noise_quantile(0.1, 16, 0.05, 8)
    monkeypatch.setitem(sys.modules, "scipy", None)                               # the table: the floor of the df
    assert fractional <= noise_quantile(0.1, 16, 0.05, 8) <= fractional + 0.01
    assert noise_quantile(0.0, 1, 0.0, 1) == pytest.approx(1.6449, abs=1e-4)
    assert noise_quantile(0.9532462486092964, 2, 0.0, 1) == pytest.approx(6.3138, abs=1e-4)   # df exactly 1
    assert noise_quantile(0.3, 3, 0.0, 1) == 2.92 and noise_quantile(0.1, 16, 0.0, 1) == 1.7531    # not a df below
    from s2vc.training.stats import t_quantile, welch_df     # beyond the table: Cornish-Fisher, t's not the normal's
    assert welch_df((0.9532462486092964, 2)) == 1.0 and welch_df((math.inf, 5), (0.1, 3)) == 2.0
    assert 3 <= welch_df((0.1, 16), (0.2, 4)) <= 18 and welch_df((0.0, 9), (0.1, 1)) == math.inf
    assert t_quantile(45.5, 0.95) == pytest.approx(1.6791, abs=1e-4) and t_quantile(200) == pytest.approx(1.9719, abs=1e-4)
    monkeypatch.undo()
    # a flow that fits (both figures means over 3 videos of the same spread), margin 0: how often
    # is it called unfit? (seeded: t 3.8%, normal 8.8%)
    rng = np.random.default_rng(0)
    data, ref = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    se_d, se_r = data.std(axis=1, ddof=1) / math.sqrt(3), ref.std(axis=1, ddof=1) / math.sqrt(3)
    noise, excess = np.hypot(se_d, se_r), data.mean(axis=1) - ref.mean(axis=1)
    quantiles = np.array([noise_quantile(a, 3, b, 3) for a, b in zip(se_d, se_r)])
    t_rate, z_rate = float((excess > quantiles * noise).mean()), float((excess > 1.645 * noise).mean())
    assert 0.025 <= t_rate <= 0.065 and z_rate > 0.075, (t_rate, z_rate)
