"""TensorRT: ``export/build_trt.py``'s argument handling and its answer where TensorRT or a GPU is
missing, the engine metadata checks (pure functions, run anywhere), and the real build and run
against the eager reference, which run unchanged where TensorRT and a CUDA GPU exist and skip
(with the reason) elsewhere.
"""
from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

# build_trt reads an export's metadata with onnx, and the tests write stand-in exports with it
onnx = pytest.importorskip("onnx", reason="onnx is not installed (the [export] extra: pip install -e \".[export]\")")
from onnx import TensorProto, helper  # noqa: E402

from s2vc.engine import load_flow  # noqa: E402
from s2vc.engine.exported_meta import MetadataMismatchError, check_metadata, metadata_to_props, read_engine_metadata  # noqa: E402
from s2vc.engine.runtime_trt import TensorRTGenerator, check_profile, check_tensorrt_build  # noqa: E402
from s2vc.export import build_trt, trt_builder  # noqa: E402
from s2vc.export.onnx_export import generator_metadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "export" / "build_trt.py"
H = W = 64


@pytest.fixture(scope="module")
def flow():
    return load_flow()


@pytest.fixture
def stub_onnx(flow, tmp_path):
    """``make(**meta_changes) -> path``: a one-node ONNX model carrying generator metadata, for the
    checks that read only the metadata (no export needed)."""

    def make(name="stub.onnx", metadata=True, **changes):
        x = helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", 3, "frames", H, W])
        y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, "frames", H, W])
        model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["video"], ["out"])], "g", [x], [y]),
                                  opset_imports=[helper.make_opsetid("", 18)])
        if metadata:
            meta = generator_metadata(flow, alpha=flow.meta["alpha"], strategy="zero", height=H, width=W)
            meta.update(changes)
            for key, value in metadata_to_props(meta).items():
                model.metadata_props.add(key=key, value=value)
        path = tmp_path / name
        onnx.save(model, str(path))
        return path

    return make


# -- build_trt.py: arguments and missing TensorRT / GPU ---------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--out", "x.engine"], "the following arguments are required: --onnx"),
    (["--onnx", "missing.onnx", "--out", "x.engine"], "file not found"),
    (["--batch", "1,x,3"], "expected N or MIN,OPT,MAX"),
    (["--batch", "8,4,16"], "need MIN <= OPT <= MAX, got 8,4,16"),
    (["--frames", "1,8,16"], "needs at least 2 frames"),
    (["--batch", "0,1,2"], "sizes must be >= 1"),
    (["--fp16-check"], "is an fp32 export"),
    (["--workspace-gb", "0"], "--workspace-gb must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_argument_errors_exit_2_before_tensorrt(stub_onnx, tmp_path, monkeypatch, capsys, args, message):
    def no_tensorrt():
        raise AssertionError("TensorRT was reached before the arguments were checked")
    monkeypatch.setattr(trt_builder, "require_tensorrt", no_tensorrt)
    monkeypatch.chdir(tmp_path)
    base = [] if "--onnx" in args or "--out" in args else ["--onnx", str(stub_onnx()), "--out", "x.engine"]
    assert build_trt.main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: build_trt.py") and message in err


@pytest.mark.parametrize("args,batch", [
    ([], (1, 8, 16)),                                   # the default profile
    (["--batch-size", "32"], (1, 32, 32)),              # pretraining's batch: OPT, MAX widened
    (["--batch", "2,8,16", "--batch-size", "1"], (1, 1, 16)),
    (["--batch", "4", "--batch-size", "4"], (4, 4, 4)),
])
def test_profile_opt_is_the_batch_served(stub_onnx, tmp_path, monkeypatch, args, batch):
    """TensorRT chooses kernels for the profile's OPT shape: --batch-size makes it the batch the
    runtime will serve; --tf32 reaches the builder."""
    seen = {}
    monkeypatch.setattr(build_trt, "build_engine", lambda onnx, out, **kw: seen.update(kw) or out)
    assert build_trt.main(["--onnx", str(stub_onnx()), "--out", str(tmp_path / "g.engine"), "--tf32", *args]) == 0
    assert tuple(seen["batch"]) == batch and seen["tf32"] is True
    assert trt_builder.serving_profile((1, 8, 16), None) == (1, 8, 16)


def test_onnx_without_s2vc_metadata_is_refused(stub_onnx, capsys):
    path = stub_onnx(metadata=False)
    assert build_trt.main(["--onnx", str(path), "--out", str(path.with_suffix(".engine"))]) == 2
    assert "carries no s2vc metadata" in capsys.readouterr().err


def _run_script(args, tmp_path, block_tensorrt=True):
    env = dict(os.environ)
    if block_tensorrt:
        # an importable "tensorrt" that fails like a missing one, even where TensorRT is installed
        blocker = tmp_path / "blocker" / "tensorrt"
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'tensorrt'\")\n")
        env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, str(SCRIPT)] + args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_script_without_tensorrt_says_what_is_missing(stub_onnx, tmp_path):
    engine = tmp_path / "gen.engine"
    result = _run_script(["--onnx", str(stub_onnx()), "--out", str(engine)], tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "TensorRT is not installed" in lines[0] and "pip install tensorrt" in lines[0]
    assert "NVIDIA GPU" in lines[0]
    assert not engine.exists()


def test_script_argument_error(tmp_path):
    result = _run_script(["--onnx", str(tmp_path / "none.onnx"), "--out", "x.engine"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: --onnx: file not found" in result.stderr


# -- s2vc export trt: the same flags and builder as build_trt.py, the s2vc command's errors -------

def test_s2vc_export_trt_help_answers_without_tensorrt(tmp_path):
    blocker = tmp_path / "blocker" / "tensorrt"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'tensorrt'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-m", "s2vc.cli", "export", "trt", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    flags = {a for a in build_trt.get_args_parser()._option_string_actions if a.startswith("--")}
    assert result.stdout.startswith("usage: s2vc export trt") and all(f in result.stdout for f in flags)


def test_s2vc_export_trt_calls_the_scripts_builder(stub_onnx, tmp_path, monkeypatch, capsys):
    from s2vc.cli import main as cli_main
    seen = {}
    monkeypatch.setattr(build_trt, "build_engine", lambda onnx, out, **kw: seen.update(onnx=onnx, out=out, **kw) or out)
    engine = tmp_path / "g.engine"
    assert cli_main(["export", "trt", "--onnx", str(stub_onnx()), "--out", str(engine), "--batch-size", "32",
                     "--frames", "2,8,16", "--tf32", "--workspace-gb", "2"]) == 0
    assert seen["out"] == engine and tuple(seen["batch"]) == (1, 32, 32) and tuple(seen["frames"]) == (2, 8, 16)
    assert seen["tf32"] is True and seen["workspace_gb"] == 2 and seen["timing_cache"] is None
    assert f"wrote {engine}" in capsys.readouterr().out


@pytest.mark.parametrize("args,code,message", [
    (["--batch-size", "0"], 2, "--batch-size must be >= 1, got 0"),
    (["--fp16-check"], 2, "is an fp32 export"),
    ([], 1, "TensorRT is not installed"),
])
def test_s2vc_export_trt_errors_are_one_line(stub_onnx, tmp_path, monkeypatch, capsys, args, code, message):
    from s2vc.cli import main as cli_main
    monkeypatch.setitem(sys.modules, "tensorrt", None)      # import tensorrt raises ImportError
    engine = tmp_path / "g.engine"
    assert cli_main(["export", "trt", "--onnx", str(stub_onnx()), "--out", str(engine), *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("s2vc export: error: ") and message in err[0], err
    assert not engine.exists()


@pytest.mark.parametrize("version,cuda,message", [
    ("10.13.0", False, "no CUDA GPU is visible"),
    ("8.6.1", True, "TensorRT 8.6.1 is too old"),
])
def test_without_a_gpu_or_with_an_old_tensorrt(stub_onnx, monkeypatch, capsys, version, cuda, message):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    path = stub_onnx()
    assert build_trt.main(["--onnx", str(path), "--out", str(path.with_suffix(".engine"))]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_profile_shapes(flow):
    meta = generator_metadata(flow, alpha=0.5, strategy="shuffle_clip", height=48, width=80)
    shapes = trt_builder.profile_shapes(meta, (1, 4, 8), (2, 16, 32))
    assert shapes == {"video": ((1, 3, 2, 48, 80), (4, 3, 16, 48, 80), (8, 3, 32, 48, 80)),
                      "order": ((1, 2, 3072), (4, 16, 3072), (8, 32, 3072))}
    assert build_trt.parse_range("4") == (4, 4, 4)


# -- the builder's checks and writes, with a stand-in for TensorRT ------------------------------

def test_timing_cache_refusal_is_an_error():
    trt_builder.check_timing_cache_accepted(True, True, Path("c.cache"))
    with pytest.raises(trt_builder.EngineBuildError, match="refused: it was made on another GPU.*Nothing was built"):
        trt_builder.check_timing_cache_accepted(True, False, Path("c.cache"), ["cache mismatch"])
    with pytest.raises(trt_builder.EngineBuildError, match="c.cache is not a TensorRT timing cache"):
        trt_builder.check_timing_cache_accepted(False, None, Path("c.cache"))


def test_precision_and_metadata_checks(flow):
    assert trt_builder.network_precision("DataType.HALF") == "fp16"
    assert trt_builder.network_precision("DataType.FLOAT") == "fp32"
    with pytest.raises(trt_builder.EngineBuildError, match="HALF or FLOAT, got DataType.INT8"):
        trt_builder.network_precision("DataType.INT8")
    meta = generator_metadata(flow, alpha=0.5, strategy="zero", height=H, width=W)
    good = dict(meta, tensorrt_version="10.13", precision="fp32", gpu="G", compute_capability="9.0",
                profile={"video": {"min": [1, 3, 2, H, W], "opt": [2, 3, 8, H, W], "max": [4, 3, 16, H, W]}})
    trt_builder.validate_engine_metadata(good, meta)
    for change, message in [({"precision": "fp16"}, "inputs are fp16 but the ONNX metadata says fp32"),
                            ({"profile": {}}, "lacks \\['profile'\\]"),
                            ({"profile": {"noise": good["profile"]["video"]}}, "no shapes for the inputs \\['video'\\]"),
                            ({"profile": {"video": {"min": [2], "opt": [1], "max": [4]}}}, "min <= opt <= max"),
                            ({"gpu": object()}, "not JSON-serialisable")]:
        with pytest.raises(trt_builder.EngineBuildError, match=message):
            trt_builder.validate_engine_metadata(dict(good, **change), meta)


def test_write_atomically_replaces_both_files_or_neither(tmp_path):
    engine, meta = tmp_path / "g.engine", tmp_path / "g.engine.json"
    trt_builder.write_atomically({engine: b"new engine", meta: b"{}"})
    assert engine.read_bytes() == b"new engine" and meta.read_bytes() == b"{}"
    (tmp_path / "blocked").write_text("a file, not a folder")
    with pytest.raises(OSError):
        trt_builder.write_atomically({engine: b"newer", tmp_path / "blocked" / "x.json": b"{}"})
    assert engine.read_bytes() == b"new engine"                 # untouched: the failure came first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "g.engine", "g.engine.json"]


@pytest.fixture
def fake_builder(monkeypatch):
    """``make(accept_cache=True, dtype="DataType.FLOAT") -> class``: an ``EngineBuilder`` whose
    TensorRT is a stand-in (no GPU, no TensorRT), so build_engine's order of checks and writes runs."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))

    def make(accept_cache=True, dtype="DataType.FLOAT"):
        class FakeConfig:
            def create_timing_cache(self, data):
                return types.SimpleNamespace(data=data)

            def set_timing_cache(self, cache, ignore_mismatch):
                assert ignore_mismatch is False
                return accept_cache

            def get_timing_cache(self):
                return types.SimpleNamespace(serialize=lambda: b"new cache")

        class FakeBuilder(trt_builder.EngineBuilder):
            built = 0

            def __init__(self, **kwargs):
                self.trt = types.SimpleNamespace(__version__="10.13.0.35")
                self.logger = types.SimpleNamespace(errors=[])
                self.config, self.tf32, self.strongly_typed, self.profile_shapes = FakeConfig(), False, True, {}

            def create_network(self, onnx_path):
                pass

            def add_profile(self, shapes):
                self.profile_shapes = {name: tuple(s) for name, s in shapes.items()}

            def input_dtypes(self):
                return {"video": dtype}

            def create_engine(self):
                FakeBuilder.built += 1
                return b"engine bytes"

        monkeypatch.setattr(trt_builder, "EngineBuilder", FakeBuilder)
        return FakeBuilder

    return make


def test_build_writes_engine_metadata_and_cache(stub_onnx, fake_builder, tmp_path):
    fake_builder()
    engine, cache = tmp_path / "out" / "g.engine", tmp_path / "t.cache"
    trt_builder.build_engine(stub_onnx(), engine, batch=(1, 2, 4), frames=(2, 8, 16), timing_cache=cache)
    meta = json.loads((tmp_path / "out" / "g.engine.json").read_text())
    assert engine.read_bytes() == b"engine bytes" and cache.read_bytes() == b"new cache"
    assert meta["precision"] == "fp32" and meta["gpu"] == "Fake GPU" and meta["compute_capability"] == "9.0"
    assert meta["profile"]["video"]["max"] == [4, 3, 16, H, W]
    assert sorted(p.name for p in engine.parent.iterdir()) == ["g.engine", "g.engine.json"]   # no temporaries


@pytest.mark.parametrize("accept_cache,dtype,message", [
    (False, "DataType.FLOAT", "was refused: it was made on another GPU"),
    (True, "DataType.HALF", "inputs are fp16 but the ONNX metadata says fp32"),
])
def test_build_refuses_before_building_or_writing(stub_onnx, fake_builder, tmp_path, capsys,
                                                  accept_cache, dtype, message):
    builder = fake_builder(accept_cache, dtype)
    engine, cache = tmp_path / "g.engine", tmp_path / "t.cache"
    cache.write_bytes(b"a cache from another GPU")
    args = ["--onnx", str(stub_onnx()), "--out", str(engine), "--timing-cache", str(cache)]
    assert build_trt.main(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert builder.built == 0 and not engine.exists() and not engine.with_name("g.engine.json").exists()
    assert cache.read_bytes() == b"a cache from another GPU"


# -- engine metadata (pure) -------------------------------------------------------------------

@pytest.fixture
def engine_file(flow, tmp_path):
    """A stand-in engine file with the metadata build_trt.py writes beside it."""
    meta = generator_metadata(flow, alpha=flow.meta["alpha"], strategy="zero", height=H, width=W)
    meta.update({"tensorrt_version": "10.13.0.35", "compute_capability": "9.0", "gpu": "NVIDIA H100",
                 "profile": {"video": {"min": [1, 3, 2, H, W], "opt": [4, 3, 16, H, W], "max": [8, 3, 32, H, W]}}})
    path = tmp_path / "gen.engine"
    path.write_bytes(b"not an engine")
    path.with_name("gen.engine.json").write_text(json.dumps(meta))
    return path


def test_engine_metadata_checks(flow, engine_file):
    meta = read_engine_metadata(engine_file)
    alpha = flow.meta["alpha"]
    check_metadata(meta, flow, alpha, "zero", H, W)                     # fits: no error
    other = copy.deepcopy(flow)
    other.sha256 = "0" * 64
    for kwargs, message in [(dict(flow=other), "sha256 42e860f9e732.*has 000000000000"),
                            (dict(alpha=0.5), f"alpha = {alpha} but alpha = 0.5"),
                            (dict(strategy="noise"), "strategy 'zero' but strategy 'noise'"),
                            (dict(height=32, width=32), "64x64 frames but got 32x32")]:
        with pytest.raises(MetadataMismatchError, match=message):
            check_metadata(meta, **kwargs)
    check_tensorrt_build(meta, "10.13.0.35", "9.0")
    with pytest.raises(MetadataMismatchError, match="built with TensorRT 10.13.0.35 but TensorRT 10.14.1 is installed"):
        check_tensorrt_build(meta, "10.14.1", "9.0")
    with pytest.raises(MetadataMismatchError, match="compute capability 9.0 .* has 8.0"):
        check_tensorrt_build(meta, "10.13.0.35", "8.0")
    check_profile(meta, 8, 2)
    with pytest.raises(ValueError, match="batches of 1..8 clips of 2..32 frames, got 9 clips"):
        check_profile(meta, 9, 16)
    with pytest.raises(ValueError, match="got 4 clips of 33 frames"):
        check_profile(meta, 4, 33)


def test_engine_without_metadata_is_refused(engine_file):
    engine_file.with_name("gen.engine.json").unlink()
    with pytest.raises(FileNotFoundError, match="no metadata file gen.engine.json"):
        TensorRTGenerator(engine_file)


def test_tensorrt_generator_checks_before_loading(flow, engine_file):
    # the metadata is checked first, so a mismatch is reported even where TensorRT is missing
    with pytest.raises(MetadataMismatchError, match="alpha = 0.5"):
        TensorRTGenerator(engine_file, flow, alpha=0.5)


def test_tensorrt_generator_without_tensorrt(flow, engine_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)      # import tensorrt raises ImportError
    with pytest.raises(RuntimeError, match="TensorRT, which is not installed: pip install tensorrt"):
        TensorRTGenerator(engine_file, flow, alpha=flow.meta["alpha"], strategy="zero")


# -- real TensorRT: build and run (GPU machines with TensorRT) -----------------------------------

@pytest.fixture(scope="module")
def trt_env():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt on a machine "
                                                 "with an NVIDIA GPU)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA GPU")
    return trt


@pytest.fixture(scope="module")
def engines(trt_env, flow, tmp_path_factory):
    """``get(strategy, fp16) -> engine path``, exported and built once each, one timing cache."""
    from s2vc.export.onnx_export import export_generator_onnx
    root = tmp_path_factory.mktemp("trt")
    built = {}

    def get(strategy: str, fp16: bool = False):
        key = (strategy, fp16)
        if key not in built:
            name = f"{strategy}_{'fp16' if fp16 else 'fp32'}"
            exporter = "dynamo" if (strategy, fp16) == ("zero", False) else "torchscript"     # default + fast
            onnx_path = export_generator_onnx(flow, root / f"{name}.onnx", alpha=flow.meta["alpha"],
                                              strategy=strategy, height=H, width=W, fp16=fp16, exporter=exporter)
            args = ["--onnx", str(onnx_path), "--out", str(root / f"{name}.engine"), "--batch", "1,2,4",
                    "--frames", "2,8,16", "--timing-cache", str(root / "timing.cache")]
            args += ["--fp16-check"] if fp16 else []
            assert build_trt.main(args) == 0
            built[key] = root / f"{name}.engine"
        return built[key]

    return get


@pytest.fixture(scope="module")
def cuda_eager(flow):
    """The eager reference on the GPU in true fp32 (cuDNN and cuBLAS would use TF32 by default)."""
    from s2vc.engine.generator import MotionPreservingGenerator
    gpu_flow = copy.deepcopy(flow).cuda()

    def run(video, strategy, seed):
        conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            gen = MotionPreservingGenerator(gpu_flow, alpha=flow.meta["alpha"], strategy=strategy, backend="eager",
                                            seed=seed)
            return gen(video)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm

    return run


def _videos(real_frames):
    real = torch.stack([real_frames[0:8], real_frames[20:28]]).transpose(1, 2).contiguous()
    return [v.cuda() for v in (torch.rand(1, 3, 2, H, W), torch.rand(3, 3, 7, H, W), real)]


@pytest.mark.parametrize("strategy", ["zero", "noise", "shuffle_clip"])
def test_engine_runs_like_eager(trt_env, flow, engines, cuda_eager, real_frames, strategy):
    path = engines(strategy)
    meta = read_engine_metadata(path)
    assert meta["tensorrt_version"] == trt_env.__version__ and meta["precision"] == "fp32"
    assert meta["profile"]["video"]["max"] == [4, 3, 16, H, W]
    gen = TensorRTGenerator(path, flow, alpha=flow.meta["alpha"], strategy=strategy)
    alpha = flow.meta["alpha"]
    for video in _videos(real_frames):
        ref, stats = cuda_eager(video, strategy, 11)
        out, mask = gen(video, generator=torch.Generator(device="cuda").manual_seed(11))
        flips = mask != stats.mask
        assert torch.all((stats.z_std[flips] - alpha).abs() < 1e-5)
        same = ~flips.any(dim=1)
        assert same.any(), "every clip has a flipped latent: nothing was compared"
        torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)


def test_fp16_engine(trt_env, flow, engines, cuda_eager, real_frames):
    path = engines("zero", fp16=True)
    assert read_engine_metadata(path)["precision"] == "fp16"
    gen = TensorRTGenerator(path, flow)
    video = _videos(real_frames)[2]
    ref, stats = cuda_eager(video, "zero", 0)
    out, mask = gen(video)
    assert out.dtype == torch.float16
    assert (mask == stats.mask).float().mean() >= 0.995
    assert 10 * math.log10(1 / ((out.float() - ref) ** 2).mean().item()) >= 35


def test_engine_streams_and_profile(trt_env, flow, engines, real_frames):
    gen = TensorRTGenerator(engines("zero"), flow)
    video = _videos(real_frames)[2]
    out, mask = gen(video)                                  # on the default stream: an own stream inside
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):                           # on the caller's non-default stream
        out_side, mask_side = gen(video)
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(out_side, out, rtol=0, atol=0)
    assert torch.equal(mask_side, mask)
    with pytest.raises(ValueError, match="got 5 clips"):
        gen(torch.rand(5, 3, 2, H, W, device="cuda"))
    with pytest.raises(MetadataMismatchError, match="strategy 'zero' but strategy 'noise'"):
        TensorRTGenerator(engines("zero"), flow, strategy="noise")
