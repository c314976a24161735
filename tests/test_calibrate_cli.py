"""`s2vc calibrate` (issue 23's review): --decode-size 128 by default, --device, a dataset's
training split instead of VIDEO files (test videos never read), --write-to FILE (a calibrated
copy, the input flow untouched) next to --write (in place)."""
from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from s2vc.cli import main as cli_main
from s2vc.engine import AdvFlow, FlowConfig, load_flow, save_flow, video_io
from s2vc.training.data.datasets import split_records
from s2vc.training.data.synthetic import SyntheticSet

from conftest import magenta_test_set, randomize_

TINY_SET = SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12)
CLIP = ["--frames", "4", "--stride", "2", "--decode-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def flow_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow") / "small.pt"
    flow = randomize_(AdvFlow(FlowConfig(resolution=16, high_blocks=1, low_blocks=1, fc_blocks=1,
                                         hidden=8, fc_hidden=8)), std=0.05)
    save_flow(flow, path, meta={"alpha": 0.05, "note": "kept"})
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = np.full((24, 40, 56, 3), 60, np.uint8)
    for i in range(24):
        frames[i, 10:22, 2 * i:2 * i + 12] = (230, 200, 30)
    path = tmp_path_factory.mktemp("video") / "m.mp4"
    video_io.write_video(path, frames, fps=10)
    return path


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """The tiny synthetic set (UCF101's layout) whose *test* videos are solid magenta."""
    root, synthetic = magenta_test_set(tmp_path_factory.mktemp("set") / "tiny")
    assert synthetic == TINY_SET
    return root


def _parser():
    from s2vc.commands import calibrate
    p = argparse.ArgumentParser()
    calibrate.add_arguments(p)
    return p


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_defaults_and_flags():
    from s2vc.commands.common import default_device
    args = _parser().parse_args([])
    # the pretraining clip's decode size, as train-flow, generate and eval take it
    assert (args.size, args.clip_len, args.stride) == (128, 16, 2)
    assert args.device == default_device()
    assert (args.dataset, args.root, args.fold, args.write, args.write_to) == (None, None, 1, False, None)
    with pytest.raises(SystemExit):     # one or the other
        _parser().parse_args(["--write", "--write-to", "x.pt"])


def test_write_to_writes_a_calibrated_copy_and_leaves_the_flow(tmp_path, flow_path, video, capsys):
    flow = tmp_path / "f.pt"
    shutil.copy(flow_path, flow)
    before = _sha(flow)
    copy = tmp_path / "out" / "f_s3d.pt"
    assert cli_main(["calibrate", str(video), "--flow", str(flow), "--preserve", "0.3", *CLIP,
                     "--write-to", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"written to {copy}" in out and f"{flow} unchanged" in out
    assert _sha(flow) == before                                   # the input: byte for byte
    assert not list(tmp_path.glob(".f.pt.*")) and not list(copy.parent.glob(".*.tmp"))
    written = load_flow(copy)
    assert written.sha256 == load_flow(flow).sha256               # the same weights
    meta = written.meta
    assert (meta["alpha_frames"], meta["alpha_stride"]) == (4, 2) and meta["note"] == "kept"
    assert meta["alpha_calibration"]["size"] == 32 and meta["alpha_calibration"]["preserve"] == 0.3
    assert meta["alpha"] != 0.05 and f"alpha = {meta['alpha']:.4f}" in out
    assert (copy.parent / "f_s3d.alpha.png").is_file()            # the plot beside the file written
    # --write keeps its meaning: the flow itself gets the same alpha
    assert cli_main(["calibrate", str(video), "--flow", str(flow), "--preserve", "0.3", *CLIP, "--write"]) == 0
    assert load_flow(flow).meta["alpha"] == pytest.approx(meta["alpha"])
    # --write-to the flow itself is --write: said so
    assert cli_main(["calibrate", str(video), "--flow", str(flow), *CLIP, "--write-to", str(flow)]) == 2
    assert "use --write" in capsys.readouterr().err
    # --write without --flow would rewrite the bundled flow every command defaults to: refused
    from s2vc.engine.checkpoint import default_checkpoint_path
    before = default_checkpoint_path().read_bytes()
    assert cli_main(["calibrate", str(video), *CLIP, "--write"]) == 2
    assert "--write-to FILE" in capsys.readouterr().err and default_checkpoint_path().read_bytes() == before
    assert cli_main(["calibrate", str(video), "--flow", str(default_checkpoint_path()), *CLIP, "--write"]) == 2
    assert default_checkpoint_path().read_bytes() == before and "--write-to FILE" in capsys.readouterr().err


def test_device_is_honoured(tmp_path, flow_path, video, monkeypatch):
    from s2vc.engine import calibrate as engine_calibrate
    seen = []
    real = engine_calibrate.latent_stds

    def spy(flow, *args, **kwargs):
        seen.append(next(flow.parameters()).device.type)
        return real(flow, *args, **kwargs)

    monkeypatch.setattr(engine_calibrate, "latent_stds", spy)
    assert cli_main(["calibrate", str(video), "--flow", str(flow_path), *CLIP, "--device", "cpu",
                     "--plot", str(tmp_path / "p.png")]) == 0
    assert seen == ["cpu"]
    # the library takes it too, and hands the STDs back on the CPU
    cal = engine_calibrate.calibrate(flow_path, [video], clip_len=4, size=32, stride=2, device="cpu")
    assert cal.windows > 0 and cal.size == 32


def test_dataset_calibrates_on_the_training_split_only(tmp_path, flow_path, tiny_root, monkeypatch, capsys):
    from s2vc.training.flow import data as flow_data
    train = {r.path for r in split_records("synthetic", tiny_root, "train")}
    test = {r.path for r in split_records("synthetic", tiny_root, "test")}
    opened = []
    real_read = video_io.read_video

    def read_video(path, *args, **kwargs):
        opened.append(Path(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(video_io, "read_video", read_video)
    monkeypatch.setattr(flow_data, "MAX_CALIBRATION_VIDEOS", 3)      # spread over at most this many
    copy = tmp_path / "f_ucf.pt"
    assert cli_main(["calibrate", "--dataset", "ucf101", "--root", str(tiny_root), "--flow", str(flow_path),
                     *CLIP, "--write-to", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "from 3 of the 4 training videos of ucf101 (fold 1)" in out, out
    assert len(set(opened)) == 3 and set(opened) <= train and not set(opened) & test
    record = load_flow(copy).meta["alpha_calibration"]
    assert record["data"]["dataset"] == "ucf101" and record["data"]["split"] == "train"
    assert record["data"]["videos"] == 3 and len(record["videos"]) == 3
    # VIDEO files and --dataset together: one line
    assert cli_main(["calibrate", "x.mp4", "--dataset", "ucf101", "--root", str(tiny_root), *CLIP]) == 2
    assert "give no VIDEO files" in capsys.readouterr().err


def test_synthetic_dataset_flags():
    """--dataset synthetic takes the synthetic flags (the set is built where --root says)."""
    args = _parser().parse_args(["--dataset", "synthetic", "--synthetic-train-per-class", "2",
                                 "--synthetic-test-per-class", "1"])
    assert (args.synthetic_train_per_class, args.synthetic_test_per_class) == (2, 1)


def test_decode_size_0_reads_frames_as_stored(tmp_path, flow_path, video, capsys):
    """`--decode-size 0`: the frames as stored (pretrain's default), what the alpha-clip note's
    command asks for when the run decodes as stored; a negative size is refused."""
    out = tmp_path / "f.pt"
    assert cli_main(["calibrate", str(video), "--flow", str(flow_path), "--frames", "4", "--stride", "2",
                     "--decode-size", "0", "--no-progress", "--write-to", str(out)]) == 0
    assert "decoded as stored" in capsys.readouterr().out
    assert load_flow(out).meta["alpha_calibration"]["size"] is None
    assert cli_main(["calibrate", str(video), "--flow", str(flow_path), "--decode-size", "-1", "--no-progress"]) == 2
    assert "--decode-size must be >= 0" in capsys.readouterr().err
