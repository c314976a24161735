"""Checkpoints: the bundled default, corrupt and mismatched files, safe loading."""
from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from s2vc.engine import AdvFlow, CheckpointError, FlowConfig, load_flow, save_flow
from s2vc.engine.checkpoint import default_checkpoint_path

from conftest import randomize_

SMALL = FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8, fc_hidden=8)


def test_default_checkpoint_is_bundled_small_and_loads():
    path = default_checkpoint_path()
    assert path.is_file(), f"bundled flow missing at {path}"
    assert path.stat().st_size <= 20 * 2 ** 20
    flow = load_flow()
    assert not flow.training
    assert flow.meta.get("history"), "the default flow records how it was trained"
    assert 0 < float(flow.meta["alpha"]) < 10


def test_default_flow_beats_an_untrained_one_on_unseen_real_frames(real_frames):
    """carphone_pristine.mp4 is held out of the default flow's training (scripts/train_default_flow.sh)."""
    flow = load_flow()
    assert "carphone" not in " ".join(flow.meta["data"])
    untrained = AdvFlow(flow.config).eval()
    frames = F.adaptive_avg_pool2d(real_frames, flow.config.resolution)
    noise = torch.rand(frames.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained_bpd = flow.nll_bits_per_dim(frames, noise=noise).mean().item()
        untrained_bpd = untrained.nll_bits_per_dim(frames, noise=noise).mean().item()
    assert trained_bpd < untrained_bpd - 1.0, (trained_bpd, untrained_bpd)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="not found"):
        load_flow("/nonexistent/flow.pt")


def test_corrupt_file(tmp_path):
    good = tmp_path / "good.pt"
    save_flow(AdvFlow(SMALL), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="could not read flow checkpoint .*bad.pt"):
        load_flow(bad)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        load_flow(tmp_path / "text.pt")


def test_edited_weights_fail_the_hash(tmp_path):
    flow = randomize_(AdvFlow(SMALL))
    path = tmp_path / "f.pt"
    save_flow(flow, path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["module_list.1.s1.conv1.bias"][0] += 1.0
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not match their hash"):
        load_flow(path)


def test_mismatched_architecture_names_what_differs(tmp_path):
    flow = AdvFlow(SMALL)
    ckpt = torch.load(_saved(flow, tmp_path), weights_only=True)
    ckpt["config"]["hidden"] = 16          # config says 16, weights are 8 wide
    torch.save(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"40 shape mismatches .*conv1.weight: expected \(16, 1, 3, 3\), got \(8, 1, 3, 3\)"):
        load_flow(tmp_path / "m.pt")


def test_advflow_state_dict_with_missing_keys(compat, tmp_path):
    sd = dict(compat["state_dict"])
    del sd["module_list.40.s1.fc3.bias"]
    torch.save(sd, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"1 missing keys .*module_list.40.s1.fc3.bias"):
        load_flow(tmp_path / "a.pt")


def test_foreign_dict_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="neither an s2vc flow checkpoint"):
        load_flow(tmp_path / "x.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_pickled_code_is_not_executed(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "s2vc-flow", "x": _Evil()}, f)
    with pytest.raises(CheckpointError, match="could not read"):
        load_flow(tmp_path / "evil.pt")


def _saved(flow, tmp_path):
    path = tmp_path / "saved.pt"
    save_flow(flow, path)
    return path


def test_atomic_write_text_never_leaves_half_a_file(tmp_path, monkeypatch):
    """results.json / experiment.json go through atomic_write_text: a write killed part-way
    leaves the old file whole and no temp file beside it."""
    import os
    from s2vc.engine.checkpoint import atomic_write_text
    path = tmp_path / "deep" / "results.json"
    atomic_write_text(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}'

    def killed(fd):
        raise KeyboardInterrupt             # a kill after the new text is written, before the rename
    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, '{"a": 2, "b": "a longer file"}')
    assert path.read_text() == '{"a": 1}' and [p.name for p in path.parent.iterdir()] == ["results.json"]
