"""`s2vc train-flow --dataset`: only the training split is read, a time budget stops the run
cleanly, alpha and the held-out bits/dim land in the checkpoint, and torchrun runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s2vc.cli import main as cli_main
from s2vc.engine import load_flow, video_io
from s2vc.training.data.datasets import split_records
from s2vc.training.data.synthetic import SyntheticSet

from conftest import magenta_test_set

TINY_SET = SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12)
TINY_FLOW = ["--resolution", "8", "--high-blocks", "1", "--low-blocks", "1", "--fc-blocks", "1",
             "--hidden", "8", "--fc-hidden", "8", "--batch-size", "4", "--warmup-steps", "1",
             "--decode-size", "32", "--val-frames", "4", "--frames", "6", "--no-progress"]
MAGENTA = torch.tensor([255.0, 0.0, 255.0])


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """The tiny synthetic set whose *test* videos are solid magenta: a frame no training video has."""
    root, synthetic = magenta_test_set(tmp_path_factory.mktemp("set") / "tiny")
    assert synthetic == TINY_SET
    return root


def _is_magenta(frames: torch.Tensor) -> bool:
    """Any frame of uint8 (T, H, W, 3) whose mean colour is magenta."""
    mean = frames.float().mean(dim=(1, 2))
    return bool(((mean - MAGENTA).abs().max(dim=-1).values < 30).any())


@pytest.fixture
def decoded(monkeypatch):
    """Every path the video reader opens, with a check of every frame it returns."""
    opened: list[Path] = []
    real_read, real_iter, real_probe = video_io.read_video, video_io.iter_video_frames, video_io.probe_video

    def read_video(path, *args, **kwargs):
        opened.append(Path(path))
        frames = real_read(path, *args, **kwargs)
        assert not _is_magenta(frames), f"a test video's frame was read from {path}"
        return frames

    def iter_video_frames(path, *args, **kwargs):
        opened.append(Path(path))
        return real_iter(path, *args, **kwargs)

    def probe_video(path, *args, **kwargs):
        opened.append(Path(path))
        return real_probe(path, *args, **kwargs)

    monkeypatch.setattr(video_io, "read_video", read_video)
    monkeypatch.setattr(video_io, "iter_video_frames", iter_video_frames)
    monkeypatch.setattr(video_io, "probe_video", probe_video)
    return opened


def test_reads_only_the_training_split_and_stores_alpha(tiny_root, tmp_path, decoded):
    from s2vc.training.flow.fit_check import check_flow_for_dataset

    train = {r.path for r in split_records("synthetic", tiny_root, "train")}
    test = {r.path for r in split_records("synthetic", tiny_root, "test")}
    out = tmp_path / "flow.pt"
    # the synthetic set is in UCF101's layout: --dataset ucf101 reads it as it is
    assert cli_main(["train-flow", "--dataset", "ucf101", "--root", str(tiny_root), "--out", str(out),
                     "--epochs", "2", "--steps-per-epoch", "3", "--holdout", "0.25", *TINY_FLOW]) == 0
    check_flow_for_dataset(out, "synthetic", tiny_root, synthetic=TINY_SET, decode_size=32)
    assert decoded and not set(decoded) & test
    assert set(decoded) <= train

    flow = load_flow(out)
    meta = flow.meta
    assert meta["dataset"]["split"] == "train" and meta["dataset"]["dataset"] == "ucf101"
    assert len(meta["dataset"]["heldout_videos"]) == 1 and meta["dataset"]["train_videos"] == 3
    assert meta["heldout_bpd"] == meta["history"][-1]["val_bpd"] > 0
    assert meta["alpha"] > 0 and meta["alpha_calibration"]["preserve"] == pytest.approx(0.227)
    assert meta["alpha_calibration"]["clip_len"] == 6 and meta["alpha_calibration"]["size"] == 32
    assert [h["epoch"] for h in meta["history"]] == [0, 1, 2]


def test_time_budget_stops_cleanly_and_resume_continues(tiny_root, tmp_path):
    from s2vc.training.flow.training import FlowTrainConfig, train_flow

    def cfg(minutes):
        return FlowTrainConfig(
            dataset="synthetic", root=str(tiny_root), synthetic_set=TINY_SET, out=str(tmp_path / "f.pt"),
            resume=True, minutes=minutes, epochs=1000, steps_per_epoch=5, resolution=8, high_blocks=1,
            low_blocks=1, fc_blocks=1, hidden=8, fc_hidden=8, batch_size=4, decode_size=32, val_frames=4,
            clip_len=6, progress=False)

    first = train_flow(cfg(0.02), log=lambda line: None)          # 1.2 s of training
    assert first["stopped"] and "time budget" in first["stopped"]
    flow = load_flow(tmp_path / "f.pt")
    steps = flow.meta["steps"]
    assert 0 < steps < 5000 and flow.meta["stopped"] == first["stopped"]
    assert flow.meta["alpha"] == first["alpha"] > 0
    assert flow.meta["train_seconds"] >= 1.2
    # the whole budget is spent: resuming with the same one trains nothing more
    again = train_flow(cfg(0.02), log=lambda line: None)
    assert load_flow(tmp_path / "f.pt").meta["steps"] == steps and again["stopped"]
    # a larger budget continues where the run stopped
    more = train_flow(cfg(0.04), log=lambda line: None)
    assert load_flow(tmp_path / "f.pt").meta["steps"] > steps
    assert len(more["history"]) > len(first["history"])
    assert not list(tmp_path.glob(".*.tmp*"))


def test_bad_source_flags_are_one_line_errors(tiny_root, tmp_path, capsys):
    out = ["--out", str(tmp_path / "f.pt")]
    assert cli_main(["train-flow", "--dataset", "ucf101", *out]) == 1
    assert "needs its root folder (--root)" in capsys.readouterr().err
    assert cli_main(["train-flow", "--data", "samples", "--root", str(tiny_root), *out]) == 2
    assert "need --dataset" in capsys.readouterr().err
    assert cli_main(["train-flow", "--dataset", "ucf101", "--root", str(tmp_path), *out]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classInd.txt" in err[0]
    with pytest.raises(SystemExit):         # --data and --dataset together: argparse says which
        cli_main(["train-flow", "--data", "samples", "--dataset", "ucf101", *out])
    assert "not allowed with argument" in capsys.readouterr().err


def test_two_process_torchrun_gloo(tiny_root, tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "s2vc.cli", "train-flow", "--dataset", "ucf101", "--root", str(tiny_root), "--out", str(out),
           "--epochs", "1", "--steps-per-epoch", "2", "--holdout", "0.25", "--threads", "1", *TINY_FLOW]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = load_flow(out).meta
    assert meta["processes"] == 2 and meta["steps"] == 2 and meta["alpha"] > 0
    state = torch.load(str(out) + ".resume.pt", weights_only=True)
    assert len(state["ranks"]) == 2
    # the two processes drew different crops: their RNG states differ
    assert not torch.equal(state["ranks"][0]["torch_rng"], state["ranks"][1]["torch_rng"])
