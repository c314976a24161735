"""Dataset layouts, clip sampling and bad-video handling on small fake UCF101/HMDB51/Kinetics trees.

The trees hold real videos written with PyAV (48x64, 24 frames; MPEG-4 Part 2 in AVI as UCF101
and HMDB51 ship, H.264 MP4 for Kinetics) whose frame i is flat grey 10 * i, so the brightness
of a decoded frame says which frame it is (to +-3 levels after coding, far below the spacing of
10): clip starts and strides are checked on the pixels, not only on the returned indices.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from s2vc.engine.video_io import write_video
from s2vc.training.data.datasets import (
    EvalWindows,
    SkipSample,
    Skipped,
    SkippedCounter,
    build_dataset,
    collate_clips,
    collate_windows,
    window_starts,
)
from s2vc.training.data.transforms import key_transform

H, W, N = 48, 64, 24


def _frames(n: int = N) -> np.ndarray:
    return np.stack([np.full((H, W, 3), 10 * i, np.uint8) for i in range(n)])


def write_avi(path: Path, n: int = N) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.bit_rate = 2_000_000
        for f in _frames(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Which frame each of a clip's frames is: clip float (C, T, H, W) in [0, 1]."""
    levels = clip.mean(dim=(0, 2, 3)) * 255
    ids = (levels / 10).round()
    assert torch.allclose(levels, ids * 10, atol=3), levels
    return ids.long().tolist()


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Biking\r\n")
    train, test = [], []
    for cls in ("ApplyEyeMakeup", "Biking"):
        for g, c in ((8, 1), (8, 2), (1, 1)):
            rel = f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"
            write_avi(root / "UCF-101" / rel)
            (train if g == 8 else test).append(rel)
    rel_bad, rel_short = "Biking/v_Biking_g09_c01.avi", "Biking/v_Biking_g09_c02.avi"
    write_corrupt(root / "UCF-101" / rel_bad)
    write_avi(root / "UCF-101" / rel_short, n=5)
    train += [rel_bad, rel_short]
    (lists / "trainlist01.txt").write_text("".join(f"{r} {1 + r.startswith('Biking')}\r\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\r\n" for r in test))
    return root


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hmdb")
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls in ("cartwheel", "brush_hair"):  # written unsorted: labels follow sorted names
        names = [f"{cls}_{k}.avi" for k in range(3)]
        for n in names:
            write_avi(root / cls / n)
        (splits / f"{cls}_test_split1.txt").write_text(f"{names[0]} 1 \n{names[1]} 2 \n{names[2]} 0 \n")
    return root


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k400")
    (root / "annotations").mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    train = [("abseiling", "aaaaaaaaaaa", 10, 20), ("air drumming", "bbbbbbbbbbb", 0, 10),
             ("air drumming", "ccccccccccc", 5, 15)]  # the last one is never downloaded
    val = [("air drumming", "ddddddddddd", 30, 40)]
    (root / "annotations" / "train.csv").write_text(header + "".join(f"{l},{y},{s},{e},train\n" for l, y, s, e in train))
    (root / "annotations" / "validate.csv").write_text(header + "".join(f"{l},{y},{s},{e},val\n" for l, y, s, e in val))
    for split, rows in (("train", train[:2]), ("validate", val)):
        for label, yid, s, e in rows:
            write_video(root / split / label / f"{yid}_{s:06d}_{e:06d}.mp4", _frames(), 25)
    return root


# --------------------------------------------------------------------------------------------
# layouts


def test_ucf101_records_labels_and_clips(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, stride=3, size=32, seed=0)
    assert ds.classes == ["ApplyEyeMakeup", "Biking"]
    assert len(ds) == 6 and ds.missing == []
    assert [r.label for r in ds.records] == [0, 0, 1, 1, 1, 1]
    assert ds.records[0].video_id == "v_ApplyEyeMakeup_g08_c01"
    item = ds[0]
    assert set(item) == {"q", "k", "label", "index", "start_q", "start_k"}
    for key in ("q", "k"):
        clip = item[key]
        assert clip.dtype == torch.float32 and clip.shape == (3, 4, 32, 43)  # shorter side 32
        assert 0.0 <= clip.min() and clip.max() <= 1.0
    assert frame_ids(item["q"]) == [item["start_q"] + 3 * j for j in range(4)]
    assert frame_ids(item["k"]) == [item["start_k"] + 3 * j for j in range(4)]
    assert 0 <= item["start_q"] <= N - ds.span and ds.span == 10
    test = build_dataset("ucf101", ucf, "test", frames=4, size=(24, 24), two_clips=False)
    assert len(test) == 2 and [r.label for r in test.records] == [0, 1]
    item = test[1]
    assert "k" not in item and item["q"].shape == (3, 4, 24, 24) and item["label"] == 1


def test_two_clips_have_independent_starts(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, stride=2, size=16)
    draws = [ds[1] for _ in range(12)]
    starts = [(d["start_q"], d["start_k"]) for d in draws]
    assert sum(q != k for q, k in starts) >= 6, starts            # not one start for both clips
    assert len({q for q, _ in starts}) >= 4 and len({k for _, k in starts}) >= 4, starts
    for d in draws:  # each clip shows its own frames, both from one decoding pass
        assert frame_ids(d["q"]) == [d["start_q"] + 2 * j for j in range(4)]
        assert frame_ids(d["k"]) == [d["start_k"] + 2 * j for j in range(4)]


def test_cached_videos_give_the_same_clips(ucf):
    plain = build_dataset("ucf101", ucf, "train", frames=4, stride=3, size=32, seed=5)
    cached = build_dataset("ucf101", ucf, "train", frames=4, stride=3, size=32, seed=5, cache_videos=True)
    kinds = []
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        if not isinstance(a, dict):                    # the fixture's corrupt and short videos
            assert not isinstance(b, dict) and a.reason.split(":")[0] == b.reason.split(":")[0]
            kinds.append(a.reason.split(":")[0])
            continue
        assert (a["start_q"], a["start_k"]) == (b["start_q"], b["start_k"])
        assert torch.equal(a["q"], b["q"]) and torch.equal(a["k"], b["k"])
    assert sorted(kinds) == ["cannot decode", "too short"]
    assert len(cached.video_cache) == len(plain) - 1      # all but the one that cannot be decoded
    windows = cached.eval_clips(0, 3, 0.5)
    assert torch.equal(windows["clips"], plain.eval_clips(0, 3, 0.5)["clips"])


def test_seeded_starts_repeat_per_epoch(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, stride=2, size=16, seed=3)
    first = [(ds[i]["start_q"], ds[i]["start_k"]) for i in range(4)]
    assert first == [(ds[i]["start_q"], ds[i]["start_k"]) for i in range(4)]
    ds.set_epoch(1)
    assert first != [(ds[i]["start_q"], ds[i]["start_k"]) for i in range(4)]


def test_hmdb51_split_codes(hmdb):
    train = build_dataset("hmdb51", hmdb, "train", frames=2, size=16)
    test = build_dataset("hmdb51", hmdb, "test", frames=2, size=16)
    assert train.classes == ["brush_hair", "cartwheel"]
    assert [(r.video_id, r.label) for r in train.records] == [("brush_hair_0", 0), ("cartwheel_0", 1)]
    assert [r.video_id for r in test.records] == ["brush_hair_1", "cartwheel_1"]  # code 0 = unused
    assert train[1]["q"].shape == (3, 2, 16, 21)


def test_kinetics_annotations_folders_and_missing(kinetics, caplog):
    with caplog.at_level("WARNING"):
        train = build_dataset("kinetics", kinetics, "train", frames=4, size=16)
    assert train.classes == ["abseiling", "air drumming"]
    assert [(r.video_id, r.label) for r in train.records] == [("aaaaaaaaaaa_000010_000020", 0),
                                                            ("bbbbbbbbbbb_000000_000010", 1)]
    assert [p.name for p in train.missing] == ["ccccccccccc_000005_000015.mp4"]
    assert "1 of 3 listed videos are not on disk" in caplog.text
    val = build_dataset("kinetics", kinetics, "val", frames=4, size=16)  # validate.csv, validate/
    assert len(val) == 1 and val.records[0].label == 1
    item = val[0]
    assert frame_ids(item["q"]) == [item["start_q"] + 2 * j for j in range(4)]


def test_folder_is_unlabelled_and_recursive(tmp_path):
    write_avi(tmp_path / "a" / "one.avi")
    write_video(tmp_path / "two.mp4", _frames(), 25)
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / ".hidden.mp4.part").write_bytes(b"")
    ds = build_dataset("folder", tmp_path, frames=3, size=16)
    assert [r.video_id for r in ds.records] == ["a/one", "two"] and ds.classes == []
    assert ds[0]["label"] == -1


@pytest.mark.parametrize("args, expected", [
    (("kinetics600", "x"), "unknown dataset 'kinetics600'"),
    (("ucf101", "ROOT", "train", 2), "trainlist02.txt"),
    (("ucf101", "ROOT", "val"), "ucf101 val split 1: expected .*vallist01.txt"),
    (("ucf101", "ROOT", "validation"), "unknown split 'validation'"),
    (("hmdb51", "ROOT", "train", 1), "testTrainMulti_7030_splits"),
    (("kinetics", "ROOT", "train"), "annotations/train.csv"),
    (("folder", "ROOT/nowhere"), "nowhere"),
    (("ucf101", None), "root folder is required"),
])
def test_configuration_errors_name_what_is_expected(ucf, args, expected):
    args = tuple(str(ucf) + a[4:] if isinstance(a, str) and a.startswith("ROOT") else a for a in args)
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        build_dataset(*args)


def test_no_listed_video_on_disk(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 Run\n")
    (lists / "trainlist01.txt").write_text("Run/v_Run_g01_c01.avi 1\n")
    with pytest.raises(ValueError, match="no video found .*v_Run_g01_c01.avi"):
        build_dataset("ucf101", tmp_path)


# --------------------------------------------------------------------------------------------
# bad videos


def test_bad_videos_are_skipped_and_counted_through_workers(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, stride=2, size=16)
    assert isinstance(ds[4], Skipped) and "cannot decode" in ds[4].reason
    assert isinstance(ds[5], Skipped) and ds[5].reason.startswith("too short: 5 frames")
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_clips)
    counter = SkippedCounter()
    for epoch in range(2):
        counter.reset()
        seen = []
        for batch in loader:
            counter.update(batch)
            seen += batch["index"].tolist()
            assert batch["q"].shape == (len(batch["index"]), 3, 4, 16, 21) == batch["k"].shape
        assert seen == [0, 1, 2, 3]  # nothing padded, nothing replaced
        assert counter.total == 2 and counter.by_kind() == {"cannot decode": 1, "too short": 1}
    report = counter.report()
    assert "skipped videos: 2" in report
    assert "v_Biking_g09_c01.avi: cannot decode" in report and "v_Biking_g09_c02.avi: too short" in report


def test_all_skipped_batch_is_empty(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, size=16)
    batch = collate_clips([ds[4], ds[5]])
    assert batch["label"].numel() == 0 and batch["q"].numel() == 0 and len(batch["skipped"]) == 2


def test_strict_mode_raises_with_file_and_reason(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, size=16, strict=True)
    with pytest.raises(SkipSample, match=r"v_Biking_g09_c02\.avi: too short"):
        ds[5]
    with pytest.raises(SkipSample, match=r"v_Biking_g09_c01\.avi: cannot decode"):
        next(iter(DataLoader(torch.utils.data.Subset(ds, [4]), batch_size=1, collate_fn=collate_clips)))
    long_clip = build_dataset("ucf101", ucf, "train", frames=13, stride=2, size=16, strict=True)
    with pytest.raises(SkipSample, match="too short: 24 frames, a clip needs 25"):
        long_clip[0]


def test_vanished_file_is_skipped_as_missing(tmp_path):
    write_avi(tmp_path / "v.avi")
    ds = build_dataset("folder", tmp_path, frames=2, size=16)
    (tmp_path / "v.avi").unlink()
    assert isinstance(ds[0], Skipped) and ds[0].reason.startswith("missing")


# --------------------------------------------------------------------------------------------
# evaluation windows and transforms


def test_window_starts():
    assert window_starts(24, 8) == [0, 4, 8, 12, 16]            # half-overlapping
    assert window_starts(24, 8, overlap=0.0) == [0, 8, 16]
    assert window_starts(24, 8, num_clips=3) == [0, 8, 16]       # spread over the video
    assert window_starts(24, 8, num_clips=10) == [0, 4, 8, 12, 16]
    assert window_starts(7, 8) == []


def test_eval_clips_and_collate(ucf):
    ds = build_dataset("ucf101", ucf, "test", frames=4, stride=2, size=16)
    out = ds.eval_clips(0, num_clips=None)
    assert out["starts"] == [0, 4, 8, 12, 16] and out["clips"].shape == (5, 3, 4, 16, 21)
    for start, clip in zip(out["starts"], out["clips"]):
        assert frame_ids(clip) == [start + 2 * j for j in range(4)]
    windows = EvalWindows(ds, num_clips=3, transform=key_transform(12))
    batch = collate_windows([windows[0], windows[1]])
    assert batch["clips"].shape == (6, 3, 4, 12, 12)
    assert batch["video"].tolist() == [0, 0, 0, 1, 1, 1] and batch["label"].tolist() == [0, 1]
    bad = EvalWindows(build_dataset("ucf101", ucf, "train", frames=4, size=16))
    batch = collate_windows([bad[4], bad[0]])
    assert batch["index"].tolist() == [0] and len(batch["skipped"]) == 1
    assert "v_Biking_g09_c01.avi: cannot decode" in batch["skipped"][0]


def test_transforms_plug_in(ucf):
    ds = build_dataset("ucf101", ucf, "train", frames=4, size=32, transform_q=key_transform(24),
                       transform_k=key_transform(20))
    item = ds[0]
    assert item["q"].shape == (3, 4, 24, 24) and item["k"].shape == (3, 4, 20, 20)
