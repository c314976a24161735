"""`s2vc generate` / `s2vc demo`: outputs, window-by-window processing, bad files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2vc.cli import main as cli_main
from s2vc.engine import AdvFlow, FlowConfig, save_flow, video_io
from s2vc.engine.video_files import _windows

from conftest import randomize_


@pytest.fixture(scope="module")
def flow_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow") / "small.pt"
    flow = randomize_(AdvFlow(FlowConfig(resolution=16, high_blocks=1, low_blocks=1, fc_blocks=1,
                                         hidden=8, fc_hidden=8)), std=0.05)
    save_flow(flow, path, meta={"alpha": 0.05})
    return path


def _moving_video(path, t=21, h=40, w=56):
    frames = np.full((t, h, w, 3), 60, np.uint8)
    for i in range(t):
        frames[i, 10:22, 2 * i:2 * i + 12] = (230, 200, 30)
    video_io.write_video(path, frames, fps=10)
    return path


def test_windows_cover_every_frame_once():
    for n, clip in [(21, 8), (16, 8), (17, 8), (2, 8), (9, 4)]:
        frames = list(range(n))
        emitted = []
        for window, keep in _windows(iter(frames), clip):
            assert len(window) >= 2
            emitted += window[keep:]
        assert emitted == frames, (n, clip)
    with pytest.raises(video_io.VideoDecodeError, match="single frame"):
        list(_windows(iter([0]), 8))


def test_generate_writes_outputs_and_skips_bad_files(tmp_path, flow_path, capsys):
    good = _moving_video(tmp_path / "good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    code = cli_main(["generate", str(bad), str(good), str(empty), "--out", str(out), "--flow", str(flow_path),
                     "--frames", "8", "--decode-size", "40", "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    assert "bad.mp4" in captured.err and "empty.mp4" in captured.err
    assert "2 of 3 files failed" in captured.err
    assert "good.mp4: 21 frames" in captured.out
    for name in ("good_s2vc.mp4", "good_side_by_side.mp4", "good_sheet.png"):
        assert (out / name).stat().st_size > 0
    mp = video_io.read_video(out / "good_s2vc.mp4")
    side = video_io.read_video(out / "good_side_by_side.mp4")
    assert mp.shape == (21, 40, 56, 3)
    assert side.shape == (21, 40, 3 * 56, 3)
    assert not list(out.glob(".*"))                      # no temp files left behind


def test_generate_is_the_generator_window_by_window(tmp_path, flow_path):
    """The written video equals the generator run on each window of the decoded frames."""
    from s2vc.engine import load_flow
    from s2vc.engine.generator import MotionPreservingGenerator
    good = _moving_video(tmp_path / "g.mp4", t=16)
    out = tmp_path / "o"
    assert cli_main(["generate", str(good), "--out", str(out), "--flow", str(flow_path), "--frames", "8",
                     "--decode-size", "40", "--no-progress", "--batch-size", "1"]) == 0
    frames = video_io.read_video(good, size=40)
    gen = MotionPreservingGenerator(load_flow(flow_path), alpha=0.05)
    windows = [video_io.to_float_video(frames[i:i + 8])[None] for i in (0, 8)]
    expected = torch.cat([gen(w)[0][0] for w in windows], dim=1)
    written = video_io.to_float_video(video_io.read_video(out / "g_s2vc.mp4"))
    assert (written - expected.clamp(0, 1)).abs().mean() < 4 / 255          # H.264 at crf 18


def test_generate_with_no_video_uses_the_sample_videos(tmp_path, flow_path, monkeypatch):
    from s2vc.engine import video_files as generate
    seen = []
    monkeypatch.setattr(generate, "generate_file", lambda p, *a, **k: seen.append(p.name) or
                        generate.FileResult(p, 2, 1.0, 0.5, []))
    assert cli_main(["generate", "--out", str(tmp_path), "--flow", str(flow_path), "--no-progress"]) == 0
    assert set(seen) == {"bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"}


def test_generate_files_is_a_library_call(tmp_path, flow_path):
    """What the demo calls: a generator (alpha None -> the checkpoint's), then generate_files."""
    from s2vc.engine import load_flow
    from s2vc.engine.video_files import build_generator, generate_files
    good = _moving_video(tmp_path / "lib.mp4", t=10)
    gen = build_generator(load_flow(flow_path), alpha=None)
    assert gen.alpha == 0.05
    done = []
    results = generate_files([good], tmp_path / "o", gen, clip_len=8, size=40, progress=False, on_done=done.append)
    assert [r.path.name for r in results] == ["lib.mp4"] and done == results
    assert results[0].frames == 10 and 0 <= results[0].preserved <= 1
    assert all(p.stat().st_size > 0 for p in results[0].outputs)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):         # no on_error: the error is raised
        generate_files([tmp_path / "missing.mp4"], tmp_path / "o", gen, progress=False)


@pytest.mark.parametrize("flags, expected", [
    (["--alpha", "-1"], "alpha must be a positive number .* got -1.0"),
    (["--flow", "NOT_A_CKPT"], "could not read flow checkpoint .*clip.mp4: it is not .*torch.save archive"),
    (["--flow", "MISSING"], "flow checkpoint not found: .*missing.pt"),
    (["--preserve", "1.5"], r"preserved fraction must be in \(0, 1\), got 1.5"),
])
def test_generate_bad_input_is_one_line(tmp_path, flow_path, capsys, flags, expected):
    import re
    video = _moving_video(tmp_path / "clip.mp4", t=4)
    flags = [{"NOT_A_CKPT": str(video), "MISSING": str(tmp_path / "missing.pt")}.get(f, f) for f in flags]
    code = cli_main(["generate", str(video), "--out", str(tmp_path / "o"), "--no-progress", *flags]
                    + ([] if "--flow" in flags else ["--flow", str(flow_path)]))
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("s2vc generate: error: ") and re.search(expected, err[0]), err


def test_generate_missing_video_names_the_file(tmp_path, flow_path, capsys):
    assert cli_main(["generate", str(tmp_path / "nope.avi"), "--out", str(tmp_path / "o"), "--flow",
                     str(flow_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"s2vc generate: error: no such video file: {tmp_path / 'nope.avi'}"]   # before any work


def test_export_commands(tmp_path, flow_path):
    pytest.importorskip("onnx", reason="onnx is not installed (the [export] extra: pip install -e \".[export]\")")
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (the [export] extra: pip install -e \".[export]\")")
    from s2vc.engine.exported_meta import read_onnx_metadata
    assert cli_main(["export", "onnx", "--out", str(tmp_path / "g.onnx"), "--flow", str(flow_path), "--height", "24",
                     "--width", "20", "--exporter", "torchscript"]) == 0
    meta = read_onnx_metadata(tmp_path / "g.onnx")
    assert meta["alpha"] == 0.05 and meta["height"] == 24 and meta["strategy"] == "zero"
    # the exported file runs as a generate backend: --model reaches the generator
    import argparse

    from s2vc.commands import generate
    p = argparse.ArgumentParser()
    generate.add_arguments(p)
    args = p.parse_args(["--flow", str(flow_path), "--backend", "onnxruntime", "--model", str(tmp_path / "g.onnx")])
    gen = generate.generator_from_args(args, [])
    out, _ = gen(torch.rand(1, 3, 4, 24, 20))
    assert gen.last_backend == "onnxruntime" and out.shape == (1, 3, 4, 24, 20)
    assert cli_main(["export", "torchscript", "--out", str(tmp_path / "g.pt"), "--flow", str(flow_path),
                     "--height", "24", "--width", "20"]) == 0
    assert (tmp_path / "g.pt").stat().st_size > 0


def test_bench_prints_the_backend_table(capsys):
    assert cli_main(["bench", "--backends", "eager", "ext", "torchscript", "--frames", "2", "--decode-size", "32",
                     "--batch-size", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "clips/s" in out and "eager" in out and "torchscript" in out
    assert "max |out - eager|" in out


def test_bench_precision_reaches_the_generator(capsys, monkeypatch):
    from s2vc.engine import generator
    seen = []
    real = generator.MotionPreservingGenerator.__init__

    def init(self, *args, **kwargs):
        seen.append(kwargs.get("precision"))
        real(self, *args, **kwargs)
    monkeypatch.setattr(generator.MotionPreservingGenerator, "__init__", init)
    assert cli_main(["bench", "--backends", "eager", "--frames", "2", "--decode-size", "32", "--batch-size", "1",
                     "--repeats", "1", "--precision", "bf16", "--device", "cpu"]) == 0
    assert "precision bf16" in capsys.readouterr().out and "bf16" in seen


def test_calibrate_writes_the_alpha_that_keeps_the_fraction(tmp_path, flow_path, capsys):
    import shutil
    import torch
    from s2vc.engine import load_flow
    from s2vc.engine.calibrate import latent_stds, preserved_fraction
    ckpt = tmp_path / "f.pt"
    shutil.copy(flow_path, ckpt)
    video = _moving_video(tmp_path / "m.mp4", t=32)
    # --stride 1: generate on video files takes windows of consecutive frames
    assert cli_main(["calibrate", str(video), "--flow", str(ckpt), "--preserve", "0.3", "--frames", "8",
                     "--stride", "1", "--decode-size", "40", "--write"]) == 0
    out = capsys.readouterr().out
    assert "alpha   preserved" in out and "preserves 30.0%" in out
    flow = load_flow(ckpt)
    stds = latent_stds(flow, [video], clip_len=8, size=40)
    assert preserved_fraction(stds, flow.meta["alpha"]) == pytest.approx(0.3, abs=0.01)
    assert flow.sha256 == load_flow(flow_path).sha256            # weights untouched
    # generate --preserve picks the same alpha on the same video
    assert cli_main(["generate", str(video), "--out", str(tmp_path / "o"), "--flow", str(flow_path),
                     "--preserve", "0.3", "--frames", "8", "--decode-size", "40", "--no-progress"]) == 0
    assert f"alpha = {flow.meta['alpha']:.4f}" in capsys.readouterr().out
    assert torch.isfinite(stds).all()


def test_demo_writes_its_outputs_and_explains_them(tmp_path, capsys):
    from s2vc.cli import main as cli_main
    assert cli_main(["demo", "--out", str(tmp_path / "demo"), "--no-compare", "--max-frames", "16"]) == 0
    out = capsys.readouterr().out
    assert "What you are looking at" in out and "latents were kept" in out
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"bikes_s2vc.mp4", "bikes_side_by_side.mp4", "bikes_sheet.png"} <= names


def test_generate_topk_without_keep_fraction_takes_the_flows(tmp_path, flow_path, capsys):
    """`s2vc generate VIDEO --strategy topk` runs without --keep-fraction: the generator keeps the
    fraction the flow's alpha was calibrated for (here none recorded: the paper's 22.7%)."""
    from s2vc.commands import generate
    from s2vc.engine.defaults import DEFAULT_PRESERVE
    video = _moving_video(tmp_path / "k.mp4", t=8)
    assert cli_main(["generate", str(video), "--out", str(tmp_path / "o"), "--flow", str(flow_path),
                     "--strategy", "topk", "--frames", "8", "--decode-size", "40", "--no-progress"]) == 0
    assert (tmp_path / "o" / "k_s2vc.mp4").stat().st_size > 0
    import argparse
    p = argparse.ArgumentParser()
    generate.add_arguments(p)
    gen = generate.generator_from_args(p.parse_args(["--flow", str(flow_path), "--strategy", "topk"]), [])
    assert gen.keep_fraction == DEFAULT_PRESERVE
    text = " ".join(p.format_help().split())
    assert "(0, 1]" in text and "shuffle_frame:" in text


def test_a_dataset_mirror_with_preserve_calibrates_on_the_training_split(tmp_path, flow_path, capsys, monkeypatch):
    """`generate --dataset ... --preserve P` reads alpha off the training split's windows at the
    mirror's own clip (frames, stride), says so in one line, and the mirror is made with it: its
    keys keep about P of the latents."""
    import json
    from s2vc.engine import load_flow
    from s2vc.training.data.synthetic import SyntheticSet
    from s2vc.training.flow.alpha_clip import alphas_on_training_split
    monkeypatch.setenv("S2VC_CACHE", str(tmp_path / "cache"))
    small = ["--synthetic-train-per-class", "2", "--synthetic-test-per-class", "1"]
    out = tmp_path / "mirror"
    assert cli_main(["generate", "--dataset", "synthetic", "--root", str(tmp_path / "set"), *small,
                     "--flow", str(flow_path), "--preserve", "0.3", "--frames", "4", "--stride", "2",
                     "--out", str(out), "--no-progress", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    want, windows = alphas_on_training_split(
        load_flow(flow_path), "synthetic", str(tmp_path / "set"), fractions=[0.3], frames=4, stride=2, size=None,
        synthetic=SyntheticSet(train_per_class=2, test_per_class=1))
    assert f"alpha = {want[0.3]!r} keeps 30.0% of the latents on {windows} windows of 4 frames 2 apart" in err
    assert f"pretrain on this mirror with --alpha {want[0.3]!r}" in err   # in full: pretrain --keys checks it
    assert "so it keeps another share" not in err                       # alpha was read at this clip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["alpha"] == pytest.approx(want[0.3])
    kept = [v["preserved"] for v in manifest["videos"].values()]
    assert np.mean(kept) == pytest.approx(0.3, abs=0.1)
    # the printed alpha given back, pretraining takes the mirror's keys (its setup checks them)
    assert cli_main(["pretrain", "--mode", "s2vc", "--keys", str(out), "--flow", str(flow_path), "--alpha",
                     repr(want[0.3]), "--root", str(tmp_path / "set"), *small, "--frames", "4", "--stride", "2",
                     "--crop-size", "32", "--batch-size", "4", "--queue", "8", "--max-steps", "0", "--no-progress",
                     "--out", str(tmp_path / "run")]) == 0
    assert cli_main(["pretrain", "--mode", "s2vc", "--keys", str(out), "--flow", str(flow_path), "--alpha",
                     f"{want[0.3]:.4f}", "--root", str(tmp_path / "set"), *small, "--frames", "4", "--stride", "2",
                     "--crop-size", "32", "--batch-size", "4", "--queue", "8", "--max-steps", "0", "--no-progress",
                     "--out", str(tmp_path / "run4")]) != 0                   # rounded: not the mirror's alpha
    # refused: TFD has no alpha to choose, topk reads none, and shards must share one alpha
    for more, message in ((["--mode", "tfd"], "--mode tfd has none"),
                          (["--strategy", "topk"], "give that fraction as --keep-fraction"),
                          (["--shard", "0/2"], "calibrate once first")):
        assert cli_main(["generate", "--dataset", "synthetic", "--root", str(tmp_path / "set"), *small, *more,
                         "--preserve", "0.3", "--out", str(tmp_path / "t"), "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
