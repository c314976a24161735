"""`s2vc train-flow` end to end on real frames: bits/dim per epoch, atomic checkpoints, resume."""
from __future__ import annotations

import torch

from s2vc.cli import main as cli_main
from s2vc.engine import load_flow
from conftest import sample_video


def _args(out, epochs):
    videos = {name: str(sample_video(name)) for name in ("bikes.mp4", "carphone_pristine.mp4")}
    return ["train-flow", "--data", videos["bikes.mp4"], "--val-data", videos["carphone_pristine.mp4"],
            "--synthetic", "8", "--resolution", "8", "--high-blocks", "1", "--low-blocks", "1",
            "--fc-blocks", "1", "--hidden", "8", "--fc-hidden", "8", "--epochs", str(epochs),
            "--steps-per-epoch", "4", "--batch-size", "8", "--max-frames", "24", "--decode-size", "32",
            "--val-frames", "4", "--warmup-steps", "1", "--out", str(out), "--resume", "--no-progress",
            "--frames", "16", "--stride", "2"]


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
    # ... on the pretraining clip's windows (issue 21): 16 frames, 2 apart
    assert (flow.meta["alpha_frames"], flow.meta["alpha_stride"]) == (16, 2)
    assert flow.meta["alpha_calibration"]["stride"] == 2
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


def test_alpha_windows_take_the_clip_stride_and_a_run_on_another_clip_is_told(tmp_path):
    """latent_stds with a stride reads the same windows as subsampling consecutive frames by hand;
    write_alpha records the clip; a run on another clip gets one line naming both clips."""
    from s2vc.engine import video_io
    from s2vc.engine.calibrate import calibrate, latent_stds, write_alpha
    from s2vc.engine.checkpoint import default_checkpoint_path
    from s2vc.training.flow.alpha_clip import alpha_clip, alpha_clip_note
    import shutil
    import torch.nn.functional as F

    video = sample_video("bikes.mp4")
    flow = load_flow(None)
    stds = latent_stds(flow, [video], clip_len=4, size=32, max_windows=2, stride=3)
    frames = video_io.read_video(video, size=32, max_frames=24)
    x = frames[[0, 3, 6, 9, 12, 15, 18, 21]].permute(0, 3, 1, 2).float().div(255)
    z = flow.prepare().encode(F.adaptive_avg_pool2d(x, flow.config.resolution))
    assert torch.allclose(stds, z.reshape(2, 4, -1).std(dim=1), atol=1e-5)
    assert not torch.allclose(stds, latent_stds(flow, [video], clip_len=4, size=32, max_windows=2), atol=1e-3)

    assert alpha_clip(flow.meta) == (16, 1)          # the bundled flow: calibrated before strides were recorded
    assert alpha_clip_note(flow, 16, 1) is None
    note = alpha_clip_note(flow, 16, 2)
    assert "16 frames 1 apart" in note and "16 frames 2 apart" in note and "\n" not in note
    assert "s2vc calibrate --frames 16 --stride 2 --decode-size 0 --preserve 0.227 --write-to flow_f16s2.pt VIDEOS" in note
    # a run on a dataset: recalibrate on its training split, into a copy of the flow it loaded
    on_set = alpha_clip_note(flow, 16, 2, flow_path="runs/my flow.pt", dataset="ucf101", root="/data/UCF", fold=2,
                             decode_size=128)
    assert ("s2vc calibrate --flow 'runs/my flow.pt' --dataset ucf101 --root /data/UCF --fold 2 --frames 16 "
            "--stride 2 --decode-size 128 --preserve 0.227 --write-to 'runs/my flow_f16s2.pt'") in on_set
    # the synthetic set is named with its settings: without them calibrate would build a default set at
    # that root in its place (the pan set would become a still one)
    from s2vc.training.data.synthetic import SyntheticSet
    pan = alpha_clip_note(flow, 16, 2, flow_path="f.pt", dataset="synthetic", root="/sets/pan",
                          synthetic=SyntheticSet(camera="pan", val_per_class=10))
    assert ("--dataset synthetic --root /sets/pan --synthetic-camera pan --synthetic-val-per-class 10 --frames 16 "
            "--stride 2 --decode-size 0") in pan
    copy = tmp_path / "flow.pt"
    shutil.copy(default_checkpoint_path(), copy)
    write_alpha(calibrate(copy, [video], clip_len=4, size=32, stride=3))
    meta = load_flow(copy).meta
    assert (meta["alpha_frames"], meta["alpha_stride"]) == (4, 3) and alpha_clip(meta) == (4, 3)
