"""`s2vc train-flow` end to end on real frames: bits/dim per epoch, atomic checkpoints, resume."""
from __future__ import annotations

import torch

from s2vc.cli import main as cli_main
from s2vc.engine import load_flow
from s2vc.engine.samples import sample_videos


def _args(out, epochs):
    videos = {v.name: str(v) for v in sample_videos()}
    return ["train-flow", "--data", videos["bikes.mp4"], "--val-data", videos["carphone_pristine.mp4"],
            "--synthetic", "8", "--resolution", "8", "--high-blocks", "1", "--low-blocks", "1",
            "--fc-blocks", "1", "--hidden", "8", "--fc-hidden", "8", "--epochs", str(epochs),
            "--steps-per-epoch", "4", "--batch-size", "8", "--max-frames", "24", "--decode-size", "32",
            "--val-frames", "4", "--warmup-steps", "1", "--out", str(out), "--resume", "--no-progress"]


def test_train_resume_and_load(tmp_path, capsys):
    out = tmp_path / "flow.pt"
    assert cli_main(_args(out, 2)) == 0
    first = torch.load(str(out) + ".resume.pt", weights_only=True)
    assert first["epoch"] == 2
    # a later call with more epochs continues from epoch 2 (as after a killed run)
    assert cli_main(_args(out, 3)) == 0
    log = capsys.readouterr()
    assert "resuming from" in log.out + log.err
    flow = load_flow(out)
    history = flow.meta["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert history[0]["train_bpd"] is None                      # the untrained held-out value
    assert all(h["val_bpd"] > 0 for h in history)
    assert history[-1]["val_bpd"] < history[0]["val_bpd"]
    assert flow.config.resolution == 8
    # alpha calibrated on windows of the training video when the run ended, beside the held-out figure
    assert flow.meta["alpha"] > 0 and flow.meta["alpha_calibration"]["videos"] == ["bikes.mp4"]
    assert flow.meta["heldout_bpd"] == history[-1]["val_bpd"]
    assert any(p.name.startswith("events") for p in (tmp_path / "flow.pt.logs").iterdir())
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_input_files_is_a_clear_error(tmp_path, capsys):
    import pytest
    from s2vc.training.flow.training import FlowTrainConfig, train_flow
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video or image files"):
        train_flow(FlowTrainConfig(data=[str(tmp_path / "empty")], out=str(tmp_path / "f.pt")))
    # the command: one line naming what was expected, exit 1
    assert cli_main(["train-flow", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "f.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no video or image files found in" in err[0] and "expected video/image" in err[0]
    assert cli_main(["train-flow", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "f.pt")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
