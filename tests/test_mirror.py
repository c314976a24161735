"""The motion-preserved mirror of a dataset (s2vc generate --dataset) and pretraining keys read
from it: windows, frame alignment, manifest checks and refusals, resume after kill -9, shards,
corrupt videos."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from s2vc.engine import video_io
from s2vc.training.data.datasets import SkipSample, build_dataset
from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror, generate_video, mirror_windows
from s2vc.training.data.mirror_manifest import MirrorMismatchError, load_manifest
from s2vc.training.data.synthetic import SyntheticSet

TINY = SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12)
CLIP = {"frames": 4, "stride": 2, "decode_size": None}


@pytest.mark.parametrize("n,frames,stride", [(12, 4, 2), (13, 4, 2), (7, 4, 1), (5, 4, 2), (4, 2, 2),
                                             (30, 16, 2), (3, 4, 1), (9, 3, 3)])
def test_windows_cover_every_frame_once_with_stride_apart_frames(n, frames, stride):
    windows = mirror_windows(n, frames, stride)
    covered = [i for w in windows for i in w]
    assert set(covered) == set(range(n))
    for w in windows:
        assert len(w) >= 2 and all(b - a == stride for a, b in zip(w, w[1:]))
        phase_len = len(range(w[0] % stride, n, stride))
        assert len(w) == min(frames, phase_len)
    # each frame's output comes from the first window that holds it: windows overlap only at a tail
    assert len(covered) - n <= stride * (frames - 1)


def test_windows_reject_what_has_no_temporal_std():
    assert mirror_windows(3, 4, 2) == []                     # phase 1 would hold one frame
    with pytest.raises(ValueError, match="frames >= 2"):
        mirror_windows(10, 1, 1)


def _cfg(tmp_path, out="mirror", **kw):
    return MirrorConfig(dataset="synthetic", root=str(tmp_path / "set"), out=str(tmp_path / out), synthetic=TINY,
                        progress=False, **{**CLIP, **kw})


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mirror")
    report = generate_mirror(_cfg(tmp))
    return tmp, report


def test_mirror_has_the_dataset_layout_and_a_manifest(mirrored):
    tmp, report = mirrored
    manifest = load_manifest(report.out)
    source = sorted(p.relative_to(tmp / "set").as_posix() for p in (tmp / "set" / "UCF-101").rglob("*.mp4"))
    train = [line.split()[0] for line in (tmp / "set" / "ucfTrainTestlist" / "trainlist01.txt").read_text().split("\n")
             if line]
    assert sorted(manifest["videos"]) == sorted(f"UCF-101/{p}" for p in train)
    assert set(manifest["videos"]) <= set(source)
    assert (report.out / "ucfTrainTestlist" / "trainlist01.txt").read_text() == \
        (tmp / "set" / "ucfTrainTestlist" / "trainlist01.txt").read_text()
    for rel, entry in manifest["videos"].items():
        assert (report.out / rel).is_file()
        assert entry["frames"] == 12 and entry["windows"] == len(mirror_windows(12, 4, 2))
        assert 0 <= entry["preserved"] <= 1
    s = manifest["settings"]
    assert (s["frames"], s["stride"], s["method"], s["dataset"]) == (4, 2, "s2vc", "synthetic")
    assert report.written == len(train) and not report.skipped


def test_mirror_frames_are_the_generator_output_on_its_windows(mirrored):
    """Lossless: on every window, the written frames are the generator's (8-bit) output exactly."""
    from s2vc.training.pretrain.mirror import mirror_generator
    tmp, report = mirrored
    gen, _, _ = mirror_generator(_cfg(tmp))
    rel = sorted(load_manifest(report.out)["videos"])[0]
    source = video_io.read_video(tmp / "set" / rel)
    written = video_io.read_video(report.out / rel)
    direct, _, _ = generate_video(gen, source, 4, 2, batch=8)
    assert torch.equal(written, direct)
    for window in mirror_windows(len(source), 4, 2)[:1] + mirror_windows(len(source), 4, 2)[2:3]:
        out, _ = gen(video_io.to_float_video(source[window])[None])      # a window no other overlaps
        assert torch.equal(written[window], video_io.to_uint8_frames(out)[0])


def test_pretraining_keys_come_from_the_mirror_at_the_key_clip_indices(mirrored):
    tmp, report = mirrored
    common = dict(root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, size=None, seed=5)
    plain = build_dataset("synthetic", **common)
    keyed = build_dataset("synthetic", keys={"path": report.out, "expect": {"frames": 4, "stride": 2}}, **common)
    assert len(keyed) == len(plain)
    for i in range(len(keyed)):
        a, b = plain[i], keyed[i]
        assert (a["start_q"], a["start_k"]) == (b["start_q"], b["start_k"])   # same draws
        assert torch.equal(a["q"], b["q"])                                     # the query is the original
        mirror_video = video_io.read_video(keyed.key_videos[i])
        want = video_io.to_float_video(mirror_video[b["start_k"]:b["start_k"] + keyed.span:2])
        assert torch.equal(b["k"], want) and not torch.equal(b["k"], a["k"])


def test_keys_refused_when_the_mirror_does_not_match(mirrored, tmp_path):
    tmp, report = mirrored
    common = dict(root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, size=None)
    with pytest.raises(MirrorMismatchError, match="stride=2.*stride=3|generated with stride"):
        build_dataset("synthetic", keys={"path": report.out, "expect": {"stride": 3}}, **common)
    with pytest.raises(MirrorMismatchError, match="alpha"):
        build_dataset("synthetic", keys={"path": report.out, "expect": {"alpha": 0.123}}, **common)
    with pytest.raises(MirrorMismatchError, match="no mirror manifest"):
        build_dataset("synthetic", keys={"path": tmp_path, "expect": {}}, **common)
    with pytest.raises(MirrorMismatchError, match="lacks"):               # the test split is not mirrored
        build_dataset("synthetic", split="test", keys={"path": report.out, "expect": {}}, **common)


def test_rerun_with_other_settings_is_refused_and_same_settings_reuse(mirrored):
    tmp, report = mirrored
    with pytest.raises(MirrorMismatchError, match="alpha"):
        generate_mirror(_cfg(tmp, alpha=0.3))
    again = generate_mirror(_cfg(tmp))
    assert again.written == 0 and again.reused == report.written and again.manifest is not None


def _video_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "UCF-101").rglob("*.mp4"))}


def test_sharded_generation_equals_unsharded(mirrored):
    tmp, report = mirrored
    first = generate_mirror(_cfg(tmp, out="sharded", shard=(1, 2)))
    assert first.manifest is None                                  # shard 0 has not run yet
    second = generate_mirror(_cfg(tmp, out="sharded", shard=(0, 2)))
    assert second.manifest is not None and first.written + second.written == report.written
    assert _video_bytes(tmp / "sharded") == _video_bytes(report.out)
    merged, whole = load_manifest(tmp / "sharded"), load_manifest(report.out)
    assert {k: v["preserved"] for k, v in merged["videos"].items()} == \
        {k: v["preserved"] for k, v in whole["videos"].items()}


SLOW_RUN = """
import sys, time
import s2vc.training.pretrain.mirror as m
one = m._mirror_one
def slow(*a, **k):
    entry = one(*a, **k)
    time.sleep(1.0)           # time for the test to kill this process between two videos
    return entry
m._mirror_one = slow
from s2vc.training.data.synthetic import SyntheticSet
m.generate_mirror(m.MirrorConfig(dataset="synthetic", root=sys.argv[1], out=sys.argv[2],
                  synthetic=SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12),
                  frames=4, stride=2, decode_size=None, progress=False))
"""


def test_resume_after_kill_gives_the_same_mirror(mirrored):
    tmp, report = mirrored
    out = tmp / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(tmp / "set"), str(out)])
    part = out / ".parts" / "part-0000-of-0001.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if part.exists() and part.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "manifest.json").exists()
    resumed = generate_mirror(_cfg(tmp, out="killed"))
    assert resumed.reused >= 1 and resumed.written == report.written - resumed.reused
    assert _video_bytes(out) == _video_bytes(report.out)


def test_corrupt_video_is_skipped_listed_and_counted(tmp_path):
    cfg = _cfg(tmp_path)
    from s2vc.training.data.datasets import dataset_root
    root = dataset_root("synthetic", cfg.root, synthetic=TINY)
    victim = sorted((root / "UCF-101").rglob("*_g02_c01.mp4"))[0]
    victim.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"broken" * 50)
    report = generate_mirror(cfg)
    rel = victim.relative_to(root).as_posix()
    assert list(report.skipped) == [rel] and "cannot decode" in report.skipped[rel]
    manifest = load_manifest(report.out)
    assert rel in manifest["skipped"] and rel not in manifest["videos"]
    assert not (report.out / rel).exists()
    keyed = build_dataset("synthetic", root=cfg.root, synthetic=TINY, frames=4, stride=2, size=None,
                          keys={"path": report.out, "expect": {}}, seed=3)
    plain = build_dataset("synthetic", root=cfg.root, synthetic=TINY, frames=4, stride=2, size=None, seed=3)
    # the skipped video stays in the list (every arm's sampler shuffles the same length, so an arm on
    # the mirror draws the clips an arm without it draws) and gives a Skipped item in both
    assert [r.path for r in keyed.records] == [r.path for r in plain.records]
    k = [r.path for r in keyed.records].index(victim)
    assert "cannot decode" in keyed[k].reason and keyed[k].reason == report.skipped[rel]
    assert "cannot decode" in plain[k].reason
    other = (k + 1) % len(keyed)
    assert keyed[other]["start_q"] == plain[other]["start_q"] and keyed[other]["start_k"] == plain[other]["start_k"]
    strict = build_dataset("synthetic", root=cfg.root, synthetic=TINY, frames=4, stride=2, size=None,
                           keys={"path": report.out, "expect": {}}, strict=True)
    with pytest.raises(SkipSample, match="cannot decode"):
        strict[k]
    assert json.loads((report.out / "mirror.json").read_text())["dataset"] == "synthetic"


def test_pretrain_on_keys_from_the_mirror(mirrored):
    """s2vc pretrain --keys: the key clips come from the mirror (no generator runs), and a mirror
    that does not match the run is refused before training."""
    from s2vc.training.pretrain.loop import PretrainConfig, pretrain
    tmp, report = mirrored
    base = dict(dataset="synthetic", root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, size=32,
                batch_size=4, queue=16, max_steps=2, no_progress=True, threads=2)
    result = pretrain(PretrainConfig(out=str(tmp / "run_keys"), mode="s2vc", keys=str(report.out), **base))
    history = result["history"]
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    ckpt = torch.load(tmp / "run_keys" / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["keys"] == str(report.out)
    with pytest.raises(ValueError, match="modes \\('s2vc', 'tfd'\\)"):
        pretrain(PretrainConfig(out=str(tmp / "run_moco"), mode="moco", keys=str(report.out), **base))
    with pytest.raises(MirrorMismatchError, match="stride"):
        pretrain(PretrainConfig(out=str(tmp / "run_bad"), mode="s2vc", keys=str(report.out),
                                **{**base, "stride": 1}))
    with pytest.raises(MirrorMismatchError, match="method"):       # an s2vc mirror is no tfd key
        pretrain(PretrainConfig(out=str(tmp / "run_tfd"), mode="tfd", keys=str(report.out), **base))


def test_torchrun_ranks_pick_the_shard(monkeypatch, tmp_path):
    """Under torchrun (RANK / WORLD_SIZE set) each process takes its shard; --shard wins over them."""
    from s2vc.training.pretrain.mirror import _shard
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert _shard(_cfg(tmp_path)) == (1, 3)
    assert _shard(_cfg(tmp_path, shard=(0, 2))) == (0, 2)
    with pytest.raises(ValueError, match="0 <= I < N"):
        _shard(_cfg(tmp_path, shard=(2, 2)))


def _folder_of_two(tmp: Path, tmp_path: Path) -> Path:
    """Two of the mirrored set's videos copied into tmp_path/videos/clips (a ``folder`` dataset
    rooted at tmp_path/videos); returns the clips folder."""
    import shutil

    folder = tmp_path / "videos" / "clips"
    folder.mkdir(parents=True)
    for src in sorted((tmp / "set" / "UCF-101").rglob("*.mp4"))[:2]:
        shutil.copy(src, folder / src.name)
    return folder


def test_generate_dataset_command(mirrored, tmp_path, capsys):
    """``s2vc generate --dataset folder``: the command over generate_mirror, its closing report,
    and one-line refusals of a bad --shard and of VIDEO files beside --dataset."""
    from s2vc.cli import main
    tmp, _ = mirrored
    folder = _folder_of_two(tmp, tmp_path)
    out = tmp_path / "mirror"
    assert main(["generate", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 "--frames", "4", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "2 videos written" in report and "frames/s" in report and "clips/s" in report
    assert sorted(load_manifest(out)["videos"]) == sorted(f"clips/{p.name}" for p in folder.iterdir())
    assert main(["generate", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 "--shard", "2/2"]) == 2
    assert main(["generate", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 str(folder / "x.mp4")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("s2vc generate")]
    assert len(err) == 2 and "I/N" in err[0] and "no VIDEO" in err[1]


# ---------------------------------------------------------------------------------------------
# the pipeline (--workers N) and the storage choice (--storage)
# ---------------------------------------------------------------------------------------------
class _WindowMean:
    """A stand-in generator whose output for a window depends on that window only: each frame
    minus the window's temporal mean plus a constant; preserved = the window's mean value."""

    last_backend, seed = "fake", None

    def __call__(self, video):                                        # (B, 3, T, H, W) in [0, 1]
        from types import SimpleNamespace
        out = video - video.mean(dim=2, keepdim=True) + 0.5
        return out, SimpleNamespace(preserved=video.mean(dim=(1, 2, 3, 4)))


@pytest.mark.parametrize("batch,max_pending", [(1, 32), (3, 32), (5, 2), (64, 32)])
def test_window_batcher_across_videos_equals_one_video_at_a_time(batch, max_pending):
    """Windows of several videos (other sizes, lengths, a skipped one between) share calls, and
    each video comes out, in order, with the frames and preserved fraction it has alone."""
    from s2vc.training.pretrain.mirror_pipeline import WindowBatcher
    torch.manual_seed(0)
    videos = [torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)
              for n, h, w in [(12, 8, 10), (7, 8, 10), (30, 6, 9), (5, 8, 10), (13, 8, 10)]]
    items = [{"entry": {"path": f"v{i}"}, "video": v} for i, v in enumerate(videos)]
    items.insert(2, {"entry": {"path": "bad", "skipped": "cannot decode"}})
    gen = _WindowMean()
    got = list(WindowBatcher(gen, 4, 2, batch, max_pending=max_pending)(items))
    assert [g["entry"]["path"] for g in got] == [i["entry"]["path"] for i in items]
    assert "out" not in got[2] and "video" not in got[0]
    for g, v in zip([g for g in got if "out" in g], videos):
        alone, preserved, windows = generate_video(gen, v, 4, 2, batch=1)
        assert torch.equal(g["out"], alone) and g["preserved"] == pytest.approx(preserved, abs=1e-12)
        assert g["windows"] == windows == len(mirror_windows(len(v), 4, 2))


def test_pipeline_writes_the_serial_mirror(mirrored):
    """--workers 2 (2 decode processes, 2 writer threads) with windows of several videos per call
    (batch 3; a video has 4): the same files, byte for byte, and the same manifest entries as the
    serial loop."""
    tmp, report = mirrored
    piped = generate_mirror(_cfg(tmp, out="piped", workers=2, batch=3))
    assert piped.written == report.written and not piped.skipped and piped.manifest is not None
    assert _video_bytes(tmp / "piped") == _video_bytes(report.out)
    a, b = load_manifest(tmp / "piped"), load_manifest(report.out)
    drop = ("written_at", "source_mtime")
    assert {k: {f: x for f, x in v.items() if f not in drop} for k, v in a["videos"].items()} == \
        {k: {f: x for f, x in v.items() if f not in drop} for k, v in b["videos"].items()}
    assert a["shards"][0]["workers"] == 2 and a["storage"]["name"] == "lossless"


SLOW_PIPELINE = """
import sys, time
import s2vc.training.pretrain.mirror_pipeline as mp
import s2vc.training.pretrain.mirror as m
one = mp.write_one
def slow(*a, **k):
    fields = one(*a, **k)
    time.sleep(1.0)           # time for the test to kill this process between two videos
    return fields
mp.write_one = slow
from s2vc.training.data.synthetic import SyntheticSet
m.generate_mirror(m.MirrorConfig(dataset="synthetic", root=sys.argv[1], out=sys.argv[2],
                  synthetic=SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12),
                  frames=4, stride=2, decode_size=None, progress=False, workers=1, batch=3,
                  storage=sys.argv[3]))
"""


@pytest.mark.parametrize("storage", ["lossless", "residual"])
def test_pipeline_killed_mid_run_resumes_to_the_same_bytes(mirrored, storage, request):
    """kill -9 of a pipelined run (decode worker, generator and writer all busy) after its first
    video: the next run does the rest, and the files equal the uninterrupted serial mirror's."""
    tmp, report = mirrored
    files = _video_bytes
    if storage == "residual":
        report, files = request.getfixturevalue("residual_mirrored"), _residual_bytes
    out = tmp / f"piped_killed_{storage}"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PIPELINE, str(tmp / "set"), str(out), storage])
    part = out / ".parts" / "part-0000-of-0001.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if part.exists() and part.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "manifest.json").exists()
    resumed = generate_mirror(_cfg(tmp, out=out.name, workers=1, batch=3, storage=storage))
    assert 1 <= resumed.reused < report.written and resumed.written == report.written - resumed.reused
    assert files(out) == files(report.out)


@pytest.mark.parametrize("storage", ["lossless", "residual"])
def test_pipeline_skips_a_corrupt_video_like_the_serial_loop(tmp_path, storage):
    cfg = _cfg(tmp_path, workers=1, batch=3, storage=storage)
    from s2vc.training.data.datasets import dataset_root
    root = dataset_root("synthetic", cfg.root, synthetic=TINY)
    victim = sorted((root / "UCF-101").rglob("*_g02_c01.mp4"))[-1]
    victim.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"broken" * 50)
    report = generate_mirror(cfg)
    rel = victim.relative_to(root).as_posix()
    assert list(report.skipped) == [rel] and "cannot decode" in report.skipped[rel]
    manifest = load_manifest(report.out)
    assert rel in manifest["skipped"] and len(manifest["videos"]) == report.written == 3
    assert manifest["storage"]["name"] == storage


def test_compact_storage_records_its_psnr_and_size_and_reads_as_keys(mirrored):
    """--storage compact: near-lossless files the dataset reads as keys (within the storage's
    loss of the lossless mirror's), the manifest's PSNR against the 8-bit frames and size ratio
    measured, and a lossless run into the same folder refused."""
    tmp, report = mirrored
    compact = generate_mirror(_cfg(tmp, out="compact", workers=1, storage="compact"))
    manifest = load_manifest(compact.out)
    storage = manifest["storage"]
    assert manifest["settings"]["storage"] == "compact" and storage["name"] == "compact"
    assert storage["sampled"] == 1 and storage["psnr_db"] > 40 and storage["size_ratio"] > 1
    assert storage["bytes"] == sum((compact.out / rel).stat().st_size for rel in manifest["videos"])
    rel = sorted(manifest["videos"])[0]
    lossy, exact = video_io.read_video(compact.out / rel), video_io.read_video(report.out / rel)
    mse = ((lossy.double() - exact.double()) ** 2).mean().item()
    if "psnr_db" in manifest["videos"][rel]:
        assert 10 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item() == pytest.approx(
            manifest["videos"][rel]["psnr_db"], abs=1e-2)
    common = dict(root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, size=None, seed=5)
    a = build_dataset("synthetic", keys={"path": report.out, "expect": {}}, **common)[0]["k"]
    b = build_dataset("synthetic", keys={"path": compact.out, "expect": {}}, **common)[0]["k"]
    assert (a - b).abs().mean() < 2 / 255 and not torch.equal(a, b)
    with pytest.raises(MirrorMismatchError, match="storage"):
        generate_mirror(_cfg(tmp, out="compact"))


def test_a_mirror_without_the_storage_setting_reads_as_lossless(mirrored, tmp_path):
    """Mirrors written before --storage existed: no storage field in mirror.json or the manifest."""
    import shutil

    from s2vc.training.data.mirror_manifest import MirrorSettings, pin_settings
    tmp, report = mirrored
    old = tmp_path / "old"
    shutil.copytree(report.out, old)
    for name in ("mirror.json", "manifest.json"):
        data = json.loads((old / name).read_text())
        settings = data if name == "mirror.json" else data["settings"]
        del settings["storage"]
        data.pop("storage", None)
        (old / name).write_text(json.dumps(data))
    manifest = load_manifest(old)
    assert manifest["settings"]["storage"] == "lossless" and manifest["storage"] == {"name": "lossless"}
    pin_settings(old, MirrorSettings.from_json(json.loads((report.out / "mirror.json").read_text())))
    with pytest.raises(MirrorMismatchError, match="storage"):
        pin_settings(old, MirrorSettings.from_json({**json.loads((report.out / "mirror.json").read_text()),
                                                    "storage": "compact"}))


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_compact_writer_is_near_lossless_deterministic_and_refuses_what_it_cannot(tmp_path, suffix):
    from s2vc.engine.video_io import VideoWriter
    from s2vc.training.pretrain.mirror_pipeline import psnr_db
    y, x = torch.meshgrid(torch.arange(33), torch.arange(47), indexing="ij")
    frames = torch.stack([(x * 5 + y * 3 + 7 * t) % 256 for t in range(6)])[..., None].repeat(1, 1, 1, 3)
    frames[..., 1] = 255 - frames[..., 1]
    frames = frames.to(torch.uint8)                                  # odd sizes, smooth ramps
    paths = [tmp_path / f"{i}{suffix}" for i in range(2)]
    for path in paths:
        with VideoWriter(path, fps=25, storage="compact", deterministic=True) as w:
            w.write(frames)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    back = video_io.read_video(paths[0])
    assert back.shape == frames.shape
    assert psnr_db(((back.double() - frames.double()) ** 2).mean().item()) > 40
    with pytest.raises(ValueError, match="storage 'compact' writes"):
        VideoWriter(tmp_path / "x.webm", fps=25, storage="compact")
    with pytest.raises(ValueError, match="unknown storage"):
        VideoWriter(tmp_path / "x.mp4", fps=25, storage="tiny")


def test_keys_made_on_the_fly_equal_keys_read_from_the_mirror(mirrored):
    """The same key either way: pretraining's on-the-fly key (KeyMaker, clipped to [0, 1] by
    default) of a mirror window's clip equals the mirror's frames up to 8-bit rounding; unclipped
    (--no-clamp-key) it does not, where the generator leaves [0, 1]."""
    from s2vc.training.pretrain.keys import KeyMaker
    from s2vc.training.pretrain.mirror import mirror_generator
    tmp, report = mirrored
    settings = load_manifest(report.out)["settings"]
    worst = {True: 0.0, False: 0.0}
    outside = 0
    for rel in sorted(load_manifest(report.out)["videos"]):
        source, written = video_io.read_video(tmp / "set" / rel), video_io.read_video(report.out / rel)
        window = mirror_windows(len(source), 4, 2)[0]                  # no earlier window overlaps it
        clip = video_io.to_float_video(source[window])[None]          # (1, 3, T, H, W) in [0, 1]
        mirror_key = video_io.to_float_video(written[window])[None]
        for clamp in (True, False):
            keys = KeyMaker("s2vc", alpha=settings["alpha"], **({} if clamp else {"clamp": False}))  # default: clip
            key, _ = keys(clip, {}, step=0)
            worst[clamp] = max(worst[clamp], (key - mirror_key).abs().max().item())
        raw, _ = mirror_generator(_cfg(tmp))[0](clip)
        outside += int(((raw < 0) | (raw > 1)).sum())
    assert worst[True] <= 0.5 / 255 + 1e-6                           # rounding to 256 levels only
    assert outside > 0 and worst[False] > 1 / 255                   # what clipping changes


def test_generate_dataset_workers_and_storage_flags(mirrored, tmp_path, capsys):
    """``--workers N --storage compact`` reach the pass (the shard's record, the manifest); the
    default is the serial loop with the generator on the CPU, half the cores with a GPU."""
    from s2vc.cli import main
    from s2vc.training.pretrain.mirror_pipeline import default_workers
    tmp, _ = mirrored
    folder = _folder_of_two(tmp, tmp_path)
    out = tmp_path / "mirror"
    assert main(["generate", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 "--frames", "4", "--workers", "1", "--storage", "compact", "--no-progress"]) == 0
    manifest = load_manifest(out)
    assert manifest["shards"][0]["workers"] == 1 and manifest["storage"]["name"] == "compact"
    assert manifest["storage"]["psnr_db"] > 40 and len(manifest["videos"]) == 2
    assert main(["generate", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 "--workers", "-1"]) == 2
    assert "--workers must be >= 0" in capsys.readouterr().err
    assert default_workers("cpu") == 0 and 1 <= default_workers("cuda") <= 8


# ---------------------------------------------------------------------------------------------
# the residual storage (--storage residual): the generator's change at the flow's resolution
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def residual_mirrored(mirrored):
    tmp, report = mirrored
    return generate_mirror(_cfg(tmp, out="residual", storage="residual"))


def _residual_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "UCF-101").rglob("*.residual"))}


def test_residual_mirror_rebuilds_the_lossless_frames_and_records_its_psnr(mirrored, residual_mirrored):
    """Each video's <rel>.residual composed with its source gives the lossless mirror's 8-bit frames
    (up to one level where 255 d falls on a half level within float rounding); the manifest records
    the storage, the sampled PSNR (>= 45 dB) and the size ratio, and no video file is written."""
    from s2vc.training.data.mirror_residual import compose, read_residual, residual_path
    tmp, report = mirrored
    manifest = load_manifest(residual_mirrored.out)
    storage = manifest["storage"]
    assert manifest["settings"]["storage"] == "residual" and storage["name"] == "residual"
    assert storage["sampled"] == 1 and storage["psnr_db"] >= 45 and storage["size_ratio"] > 1
    assert storage["bytes"] == sum(residual_path(residual_mirrored.out, rel).stat().st_size
                                   for rel in manifest["videos"])
    assert not list((residual_mirrored.out / "UCF-101").rglob("*.mp4"))
    differ = total = 0
    for rel, entry in manifest["videos"].items():
        q, header = read_residual(residual_path(residual_mirrored.out, rel))
        assert q.shape == (entry["frames"], 3, 32, 32) and q.dtype == torch.int16
        assert (header["frames"], header["height"], header["width"]) == (12, 64, 64)
        assert header["flow_sha256"] == manifest["settings"]["flow_sha256"]
        key = compose(video_io.read_video(tmp / "set" / rel), q)
        exact = video_io.read_video(report.out / rel)
        assert (key.int() - exact.int()).abs().max() <= 1
        differ, total = differ + int((key != exact).sum()), total + key.numel()
    assert differ <= 1e-3 * total


def test_residual_pipeline_resume_and_reuse(mirrored, residual_mirrored):
    """--workers 2 with cross-video batches writes the serial residual files byte for byte; a rerun
    reuses them, and a removed file is generated again (alone)."""
    from s2vc.training.data.mirror_residual import residual_path
    tmp, _ = mirrored
    piped = generate_mirror(_cfg(tmp, out="residual_piped", storage="residual", workers=2, batch=3))
    assert piped.written == residual_mirrored.written and piped.manifest is not None
    assert _residual_bytes(tmp / "residual_piped") == _residual_bytes(residual_mirrored.out)
    # the same entries: the same video sampled (its PSNR and lossless size), sizes without the frames
    drop = ("written_at", "source_mtime")
    a, b = load_manifest(piped.out)["videos"], load_manifest(residual_mirrored.out)["videos"]
    assert {k: {f: x for f, x in v.items() if f not in drop} for k, v in a.items()} == \
        {k: {f: x for f, x in v.items() if f not in drop} for k, v in b.items()}
    assert sum("psnr_db" in v for v in a.values()) == 1 and all(v["height"] == 64 for v in a.values())
    rel = sorted(load_manifest(piped.out)["videos"])[1]
    residual_path(piped.out, rel).unlink()
    again = generate_mirror(_cfg(tmp, out="residual_piped", storage="residual", workers=2, batch=3))
    assert again.written == 1 and again.reused == piped.written - 1
    assert _residual_bytes(tmp / "residual_piped") == _residual_bytes(residual_mirrored.out)
    with pytest.raises(MirrorMismatchError, match="storage"):
        generate_mirror(_cfg(tmp, out="residual_piped"))


def test_keys_read_from_a_residual_mirror_equal_the_lossless_mirrors_and_on_the_fly_keys(mirrored, residual_mirrored):
    """build_dataset(keys=residual mirror) composes the key clip from the source at the key's draw:
    the same item as from the lossless mirror (up to a level at float ties), and the on-the-fly key
    (KeyMaker, clipped) of a mirror window within rounding, at >= 45 dB."""
    from s2vc.training.data.mirror_residual import compose, read_residual, residual_path
    from s2vc.training.pretrain.keys import KeyMaker
    from s2vc.training.pretrain.mirror_pipeline import psnr_db
    tmp, report = mirrored
    common = dict(root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, size=None, seed=5)
    lossless = build_dataset("synthetic", keys={"path": report.out, "expect": {}}, **common)
    residual = build_dataset("synthetic", keys={"path": residual_mirrored.out, "expect": {}}, **common)
    cached = build_dataset("synthetic", keys={"path": residual_mirrored.out, "expect": {}}, cache_videos=True,
                           **common)
    assert residual.key_residual is not None and cached.key_cache is None
    for i in range(len(residual)):
        a, b, c = lossless[i], residual[i], cached[i]
        assert (a["start_q"], a["start_k"]) == (b["start_q"], b["start_k"]) == (c["start_q"], c["start_k"])
        assert torch.equal(a["q"], b["q"]) and torch.equal(b["k"], c["k"])
        assert (a["k"] - b["k"]).abs().max() <= 1 / 255 + 1e-6
    settings = load_manifest(residual_mirrored.out)["settings"]
    keys = KeyMaker("s2vc", alpha=settings["alpha"])
    sq, n, worst = 0.0, 0, 0.0
    for rel in sorted(load_manifest(residual_mirrored.out)["videos"]):
        source = video_io.read_video(tmp / "set" / rel)
        window = mirror_windows(len(source), 4, 2)[0]
        q, _ = read_residual(residual_path(residual_mirrored.out, rel))
        stored = video_io.to_float_video(compose(source[window], q[window]))[None]
        fly, _ = keys(video_io.to_float_video(source[window])[None], {}, step=0)
        sq, n = sq + float(((stored - fly) * 255).double().pow(2).sum()), n + stored.numel()
        worst = max(worst, (stored - fly).abs().max().item())
    assert worst <= 1.5 / 255 + 1e-6 and psnr_db(sq / n) >= 45


def test_a_residual_that_does_not_fit_its_source_is_a_one_line_error(mirrored, residual_mirrored, tmp_path):
    """Another decode size, fewer frames than the source, another flow: ResidualMismatchError on
    one line naming what differs."""
    import shutil

    from s2vc.training.data.mirror_residual import (ResidualMismatchError, read_residual, residual_path,
                                                    write_residual)
    tmp, _ = mirrored
    common = dict(root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, seed=5)
    with pytest.raises(ResidualMismatchError, match="64x64, the source decodes to 32x32") as info:
        build_dataset("synthetic", keys={"path": residual_mirrored.out, "expect": {}}, size=32, **common)[0]
    assert "\n" not in str(info.value)
    broken = tmp_path / "broken"
    shutil.copytree(residual_mirrored.out, broken)
    rels = sorted(load_manifest(broken)["videos"])
    for rel, change in zip(rels, ({"frames": 5}, {"flow_sha256": "0" * 64})):
        q, header = read_residual(residual_path(broken, rel))
        header = {k: v for k, v in header.items() if k not in ("format", "frames", "resolution")}
        write_residual(residual_path(broken, rel), q[:change.get("frames", len(q))],
                       {**header, **{k: v for k, v in change.items() if k != "frames"}})
    ds = build_dataset("synthetic", keys={"path": broken, "expect": {}}, size=None, **common)
    index = {r.path.relative_to(tmp / "set").as_posix(): k for k, r in enumerate(ds.records)}
    with pytest.raises(ResidualMismatchError, match="holds 5 frames"):
        for _ in range(20):                       # until a draw reaches past frame 4
            ds.set_epoch(ds.epoch + 1)
            ds[index[rels[0]]]
    with pytest.raises(ResidualMismatchError, match="made with flow 000000000000"):
        ds[index[rels[1]]]
    residual_path(broken, rels[2]).write_bytes(b"not a residual")
    assert ds[index[rels[2]]].reason                # unreadable: skipped, as a broken mirror video


def test_residual_storage_through_the_cli_and_pretrain(mirrored, residual_mirrored, tmp_path, capsys):
    """``s2vc generate --dataset ... --storage residual`` and ``pretrain --keys`` on such a mirror."""
    from s2vc.cli import main
    from s2vc.engine.video_io import VideoWriter
    from s2vc.training.pretrain.loop import PretrainConfig, pretrain
    tmp, _ = mirrored
    folder = _folder_of_two(tmp, tmp_path)
    out = tmp_path / "mirror"
    assert main(["generate", "--dataset", "folder", "--root", str(tmp_path / "videos"), "--out", str(out),
                 "--frames", "4", "--storage", "residual", "--no-progress"]) == 0
    manifest = load_manifest(out)
    assert manifest["storage"]["name"] == "residual" and manifest["storage"]["psnr_db"] >= 45
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(f"{p.name}.residual" for p in folder.iterdir())
    base = dict(dataset="synthetic", root=str(tmp / "set"), synthetic=TINY, frames=4, stride=2, size=32,
                batch_size=4, queue=16, max_steps=1, no_progress=True, threads=2)
    result = pretrain(PretrainConfig(out=str(tmp_path / "run"), mode="s2vc", keys=str(residual_mirrored.out), **base))
    assert len(result["history"]) == 1 and torch.isfinite(torch.tensor(result["history"][0]["loss"]))
    with pytest.raises(ValueError, match="holds no frames"):
        VideoWriter(tmp_path / "x.mp4", fps=25, storage="residual")


def test_window_batcher_makes_frames_only_for_the_videos_asked():
    """keep_frames: a video whose frames are not asked for comes out with its shape, windows,
    preserved fraction and residual (equal to a run that keeps every video's frames) but no frames."""
    from s2vc.training.pretrain.mirror_pipeline import WindowBatcher
    from s2vc.engine import MotionPreservingGenerator, load_flow
    gen = MotionPreservingGenerator(load_flow(), backend="eager")
    torch.manual_seed(3)
    items = [{"video": torch.randint(0, 256, (n, 40, 36, 3), dtype=torch.uint8), "i": i}
             for i, n in enumerate((9, 12, 7))]
    every = list(WindowBatcher(gen, 4, 2, 3, residual=32)([dict(x) for x in items]))
    some = list(WindowBatcher(gen, 4, 2, 3, residual=32, keep_frames=lambda item: item["i"] == 1)(
        [dict(x) for x in items]))
    assert [("out" in x) for x in some] == [False, True, False]
    for a, b, item in zip(every, some, items):
        assert b["shape"] == tuple(item["video"].shape[:3]) and b["windows"] == a["windows"]
        assert b["preserved"] == a["preserved"] and torch.equal(a["residual"], b["residual"])
    assert torch.equal(some[1]["out"], every[1]["out"])


def test_residual_of_reads_the_generators_low_resolution_change_and_refuses_another():
    """residual_of recovers round(255 d) from out = frames + upsample_nearest(d) at any frame size,
    clips it to +-255, and refuses a change that is not constant on the nearest blocks."""
    import torch.nn.functional as F

    from s2vc.training.data.mirror_residual import compose, residual_of
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 5, 37, 45, 3), dtype=torch.uint8)
    video = video_io.to_float_video(frames)                                   # (2, 3, 5, 37, 45)
    d = torch.randn(2 * 5, 3, 8, 8) * 0.3
    d[0, 0, 0, 0] = 1.7                                                        # beyond what any key can use
    up = F.interpolate(d, size=(37, 45), mode="nearest").reshape(2, 5, 3, 37, 45).transpose(1, 2)
    out = video + up
    q = residual_of(out, video, 8)
    assert q.shape == (2, 5, 3, 8, 8) and q.dtype == torch.int16
    assert torch.equal(q.reshape(10, 3, 8, 8), (d * 255).round().clamp(-255, 255).to(torch.int16))
    for b in range(2):
        assert torch.equal(compose(frames[b], q[b]), video_io.to_uint8_frames(out[b]))
    with pytest.raises(ValueError, match="not constant"):
        residual_of(out + 0.01 * torch.rand_like(out), video, 8)


def test_residual_storage_of_the_tfd_baseline(mirrored, tmp_path):
    """method tfd (pixel-level suppression at the flow's resolution) composes the same way; its
    changes are averages of 2x2 8-bit pixels, so exact half levels (float ties) are common: keys
    within one level of the generator's 8-bit frames, the sampled PSNR still >= 45 dB."""
    from s2vc.training.data.mirror_residual import compose, read_residual, residual_path
    from s2vc.training.pretrain.mirror import mirror_generator
    tmp, _ = mirrored
    cfg = _cfg(tmp, out=str(tmp_path / "tfd"), method="tfd", storage="residual")
    report = generate_mirror(cfg)
    manifest = load_manifest(report.out)
    assert manifest["storage"]["psnr_db"] >= 45
    gen, _, _ = mirror_generator(cfg)
    rel = sorted(manifest["videos"])[0]
    source = video_io.read_video(tmp / "set" / rel)
    direct, _, _ = generate_video(gen, source, 4, 2, batch=8)
    key = compose(source, read_residual(residual_path(report.out, rel))[0])
    assert (key.int() - direct.int()).abs().max() <= 1


def test_read_residual_decodes_a_range_from_the_key_frame_before_it(tmp_path):
    """A range of a residual file (what a key clip needs) equals the same frames of the whole file,
    wherever it starts relative to FFV1's key frames; past the end it is shorter."""
    from s2vc.training.data.mirror_residual import read_residual, write_residual
    torch.manual_seed(0)
    q = (torch.randn(40, 3, 8, 8) * 60).round().clamp(-255, 255).to(torch.int16)
    write_residual(tmp_path / "v.residual", q, {"height": 8, "width": 8})
    whole, header = read_residual(tmp_path / "v.residual")
    assert torch.equal(whole, q) and header["frames"] == 40 and header["resolution"] == 8
    for first, last in [(0, 0), (0, 15), (5, 30), (12, 12), (13, 39), (30, None), (39, 39)]:
        part, _ = read_residual(tmp_path / "v.residual", first, last)
        assert torch.equal(part, q[first:None if last is None else last + 1])
    assert len(read_residual(tmp_path / "v.residual", 35, 50)[0]) == 5


def test_pipeline_main_threads_leave_the_workers_their_cores(monkeypatch):
    """With the generator on the CPU the main process keeps its intra-op threads (the generator
    needs them); on a GPU it gets the cores the decode processes and writer threads leave, >= 1."""
    from s2vc.training.pretrain import mirror_pipeline
    monkeypatch.setattr(mirror_pipeline.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    main_threads = mirror_pipeline.main_threads
    assert main_threads("cpu", 2, 8) == 8 and main_threads(torch.device("cpu"), 6, 4) == 4
    assert main_threads("cuda", 2, 8) == 6 and main_threads("cuda:1", 3, 4) == 4
    assert main_threads("cuda", 8, 8) == 1 and main_threads("cuda", 12, 2) == 1


@pytest.mark.parametrize("fail", [False, True])
def test_pipeline_restores_the_intra_op_threads(mirrored, monkeypatch, fail):
    """The pass sets ``main_threads``' count (here 1, as a GPU generator beside 2 workers on 2
    cores gets) and gives torch its own count back after it, also when a writer fails."""
    from s2vc.training.pretrain import mirror_pipeline
    tmp, _ = mirrored
    calls, real_set = [], torch.set_num_threads
    monkeypatch.setattr(mirror_pipeline, "main_threads", lambda device, workers, n: 1)
    monkeypatch.setattr(mirror_pipeline.torch, "set_num_threads", lambda n: calls.append(n))
    monkeypatch.setattr(mirror_pipeline.torch, "get_num_threads", lambda: 7)
    if fail:
        def write_one(*args, **kwargs):
            raise OSError("No space left on device")
        monkeypatch.setattr(mirror_pipeline, "write_one", write_one)
    cfg = _cfg(tmp, out=f"threads-{fail}", workers=1, batch=3)
    try:
        if fail:
            with pytest.raises(OSError, match="No space"):
                generate_mirror(cfg)
        else:
            generate_mirror(cfg)
    finally:
        monkeypatch.undo()
    assert calls == [1, 7]
    assert real_set is torch.set_num_threads


def test_the_mirrors_fit_check_reads_the_training_split_in_list_order(tmp_path, monkeypatch):
    """generate --dataset checks the flow on the training split in its list's order, the videos
    train-flow's own figure and pretrain's check read (the mirror's records are sorted by path:
    evenly spaced picks over another order are other videos)."""
    from s2vc.training.flow import fit_check
    from s2vc.training.flow.data import training_videos
    seen = []
    real = fit_check.check_flow_fits

    def spy(flow, videos, **kwargs):
        seen.append(list(videos))
        return real(flow, videos, **kwargs)

    monkeypatch.setattr(fit_check, "check_flow_fits", spy)
    generate_mirror(_cfg(tmp_path))
    _, listed = training_videos("synthetic", tmp_path / "set", 1, TINY)
    assert seen == [listed]
