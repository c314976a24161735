"""ONNX / TorchScript export of the generator and the flow, run by ONNX Runtime against the eager
reference (``MotionPreservingGenerator``), and the TensorRT op check.

Exports are made once per module. The default exporter (dynamo) costs ~15 s per generator of the
bundled flow on two cores (~6 s for a tiny flow), the legacy TorchScript one ~2 s; so the bundled
flow's graphs go through the legacy exporter and the default one is tested on a tiny flow with the
same layer types. Both share the clean-up, metadata and checks. S2VC_FULL_EXPORT_TESTS=1 adds the
bundled flow through the default exporter for every strategy and fp16 (about a minute more).
"""
from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="onnx is not installed (the [export] extra: pip install -e \".[export]\")")
pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (the [export] extra: pip install -e \".[export]\")")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from conftest import randomize_  # noqa: E402
from s2vc.engine import AdvFlow, FlowConfig, load_flow  # noqa: E402
from s2vc.engine.exported_meta import MetadataMismatchError, load_torchscript, read_onnx_metadata  # noqa: E402
from s2vc.engine.generator import MotionPreservingGenerator  # noqa: E402
from s2vc.engine.graph import GeneratorGraph  # noqa: E402
from s2vc.engine.runtime_onnx import OnnxRuntimeGenerator  # noqa: E402
from s2vc.export.onnx_export import (  # noqa: E402
    check_tensorrt_ops,
    export_flow_onnx,
    export_generator_onnx,
    list_onnx_ops,
    load_op_table,
)
from s2vc.export.torchscript_export import export_torchscript  # noqa: E402

H = W = 64
FULL = os.environ.get("S2VC_FULL_EXPORT_TESTS") == "1"
CASES = [("zero", "torchscript"), ("noise", "torchscript"), ("shuffle_clip", "torchscript")]
CASES += [("zero", "dynamo"), ("noise", "dynamo"), ("shuffle_clip", "dynamo")] if FULL else []


@pytest.fixture(scope="module")
def flow():
    return load_flow()


@pytest.fixture(scope="module")
def exports(flow, tmp_path_factory):
    """``get(strategy, exporter, fp16) -> path``, each export made once."""
    root = tmp_path_factory.mktemp("onnx")
    made = {}

    def get(strategy: str, exporter: str = "torchscript", fp16: bool = False):
        key = (strategy, exporter, fp16)
        if key not in made:
            made[key] = export_generator_onnx(
                flow, root / f"{strategy}_{exporter}_{'fp16' if fp16 else 'fp32'}.onnx", alpha=flow.meta["alpha"],
                strategy=strategy, height=H, width=W, fp16=fp16, exporter=exporter)
        return made[key]

    return get


@pytest.fixture(scope="module")
def real_clips(real_frames):
    """Two clips of 8 real frames (2, 3, 8, 64, 64): static background, so some latents are suppressed
    (random videos move everywhere and keep nearly all of them)."""
    return torch.stack([real_frames[0:8], real_frames[20:28]]).transpose(1, 2).contiguous()


def assert_matches_eager(out, mask, ref, stats, alpha):
    """Masks may differ only where the eager STD is within 1e-5 of alpha; outputs of clips whose
    masks agree within 1e-4."""
    flips = mask != stats.mask
    assert torch.all((stats.z_std[flips] - alpha).abs() < 1e-5), "masks differ away from the threshold"
    same = ~flips.any(dim=1)
    assert same.any(), "every clip has a flipped latent"
    torch.testing.assert_close(out[same], ref[same], rtol=1e-4, atol=1e-4)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / ((a.float() - b.float()) ** 2).mean().item())


@pytest.mark.parametrize("strategy,exporter", CASES)
def test_generator_export_runs_like_eager(flow, exports, real_clips, strategy, exporter):
    alpha = flow.meta["alpha"]
    path = exports(strategy, exporter)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert check_tensorrt_ops(model) == []
    ops = list_onnx_ops(model)
    assert not ops & {"Inverse", "Det", "com.microsoft::Inverse"}, "a matrix inverse/determinant was exported"
    extra = {"zero": [], "noise": ["noise"], "shuffle_clip": ["order"]}[strategy]
    assert [i.name for i in model.graph.input] == ["video"] + extra
    assert [o.name for o in model.graph.output] == ["out", "mask"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "frames", H, W]
    assert ("GatherElements" in ops) == (strategy == "shuffle_clip")

    gen = OnnxRuntimeGenerator(path, flow, alpha=alpha, strategy=strategy)
    eager = MotionPreservingGenerator(flow, alpha=alpha, strategy=strategy, backend="eager", seed=7)
    videos = [torch.rand(1, 3, 2, H, W), torch.rand(3, 3, 7, H, W), real_clips]
    for video in videos:
        ref, stats = eager(video)
        out, mask = gen(video, generator=torch.Generator().manual_seed(7))
        assert out.shape == video.shape and out.dtype == torch.float32
        assert mask.shape == (video.shape[0], flow.config.dims) and mask.dtype == torch.bool
        assert_matches_eager(out, mask, ref, stats, alpha)
    assert 0 < mask.float().mean() < 1, "the real clips should suppress some latents and keep others"


def test_default_exporter_on_a_small_flow(tmp_path):
    """The dynamo exporter (the default) on a tiny flow, at a non-square frame size, with the
    strategy that has the most graph inputs."""
    tiny = randomize_(AdvFlow(FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8,
                                         fc_hidden=8)), std=0.05, seed=2).eval()
    h, w = 24, 16
    videos = [torch.rand(1, 3, 2, h, w), torch.rand(3, 3, 7, h, w)]
    # alpha at the median temporal STD of these clips, so about half of the latents are suppressed
    _, stats = MotionPreservingGenerator(tiny, alpha=0.5, backend="eager")(videos[1])
    alpha = stats.z_std.median().item()
    path = export_generator_onnx(tiny, tmp_path / "tiny.onnx", alpha=alpha, strategy="shuffle_clip", height=h, width=w)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert check_tensorrt_ops(model) == []
    assert not list_onnx_ops(model) & {"Inverse", "Det"}
    assert [i.name for i in model.graph.input] == ["video", "order"]
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input] == \
        [["batch", 3, "frames", h, w], ["batch", "frames", tiny.config.dims]]
    assert read_onnx_metadata(path)["exporter"] == "dynamo"
    gen = OnnxRuntimeGenerator(path, tiny, alpha=alpha, strategy="shuffle_clip")
    eager = MotionPreservingGenerator(tiny, alpha=alpha, strategy="shuffle_clip", backend="eager", seed=3)
    for video in videos:
        ref, stats = eager(video)
        out, mask = gen(video, generator=torch.Generator().manual_seed(3))
        assert_matches_eager(out, mask, ref, stats, alpha)
    assert 0.2 < mask.float().mean() < 0.8


def test_metadata_in_the_model_and_beside_it(flow, exports):
    path = exports("zero")
    meta = read_onnx_metadata(path)
    assert meta == json.loads(path.with_suffix(".json").read_text())
    assert meta["flow_sha256"] == flow.sha256
    assert meta["alpha"] == flow.meta["alpha"]
    assert (meta["strategy"], meta["height"], meta["width"]) == ("zero", H, W)
    assert (meta["upsample"], meta["clamp"]) == ("nearest", False)
    assert (meta["precision"], meta["kind"], meta["exporter"]) == ("fp32", "generator", "torchscript")
    assert (meta["flow_resolution"], meta["flow_dims"]) == (32, 3072)
    assert meta["inputs"] == ["video"] and meta["outputs"] == ["out", "mask"]
    assert meta["opset"] >= 18 and meta["s2vc_version"]


@pytest.mark.parametrize("exporter", ["torchscript"] + (["dynamo"] if FULL else []))
def test_fp16_export(flow, exports, real_clips, exporter):
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    path = exports("zero", exporter, fp16=True)
    # exporting fp16 must not turn the caller's flow (whose weights the prepared flow shares) to half
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in flow.state_dict().items())
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert all(t.data_type != TensorProto.FLOAT for t in model.graph.initializer if t.dims and len(t.dims) > 1)
    assert check_tensorrt_ops(model) == []
    assert read_onnx_metadata(path)["precision"] == "fp16"

    alpha = flow.meta["alpha"]
    gen = OnnxRuntimeGenerator(path, flow, alpha=alpha, strategy="zero")
    eager = MotionPreservingGenerator(flow, alpha=alpha, strategy="zero", backend="eager")
    ref, stats = eager(real_clips)
    out, mask = gen(real_clips)                  # a float32 video, cast to half for the model
    assert out.dtype == torch.float16 and mask.shape == stats.mask.shape
    assert (mask == stats.mask).float().mean() >= 0.995
    assert psnr(out, ref) >= 35
    out_half, mask_half = gen(real_clips[:1].half())
    torch.testing.assert_close(out_half, out[:1])
    assert torch.equal(mask_half, mask[:1])


def test_flow_export_runs_like_the_prepared_flow(flow, tmp_path):
    import onnxruntime as ort
    paths = export_flow_onnx(flow, tmp_path, exporter="torchscript")
    prepared = flow.prepare()
    r, d = flow.config.resolution, flow.config.dims
    for kind, path in paths.items():
        assert path == tmp_path / f"{kind}.onnx" and path.with_suffix(".json").is_file()
        onnx.checker.check_model(str(path), full_check=True)
        assert check_tensorrt_ops(path) == []
        meta = read_onnx_metadata(path)
        assert (meta["kind"], meta["flow_sha256"], meta["precision"]) == (kind, flow.sha256, "fp32")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n in (1, 5):
            if kind == "encoder":
                x = torch.rand(n, 3, r, r)
                ref = prepared.encode(x)
            else:
                x = torch.randn(n, d) * 0.8
                ref = prepared.decode(x)
            (got,) = session.run(None, {meta["inputs"][0]: x.numpy()})
            torch.testing.assert_close(torch.from_numpy(got), ref, rtol=1e-4, atol=1e-4)


def test_mismatched_model_is_refused(flow, exports):
    path = exports("zero")
    alpha = flow.meta["alpha"]
    with pytest.raises(MetadataMismatchError, match=rf"alpha = {alpha}.*alpha = 0.5"):
        OnnxRuntimeGenerator(path, flow, alpha=0.5)
    with pytest.raises(MetadataMismatchError, match="strategy 'zero'.*strategy 'noise'"):
        OnnxRuntimeGenerator(path, flow, strategy="noise")
    other = copy.deepcopy(flow)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    other.sha256 = None                      # a flow trained further: its hash is computed from the weights
    with pytest.raises(MetadataMismatchError, match=rf"sha256 {flow.sha256[:12]}.*has [0-9a-f]{{12}}"):
        OnnxRuntimeGenerator(path, other)


def test_wrong_inputs_are_refused(flow, exports):
    gen = OnnxRuntimeGenerator(exports("zero"), flow)
    with pytest.raises(MetadataMismatchError, match=r"64x64 frames but got 48x64"):
        gen(torch.rand(1, 3, 4, 48, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        gen(torch.rand(1, 1, 4, H, W))
    with pytest.raises(ValueError, match="T >= 2"):
        gen(torch.rand(1, 3, 1, H, W))
    with pytest.raises(ValueError, match="takes no noise"):
        gen(torch.rand(1, 3, 2, H, W), noise=torch.randn(1, 3072))
    noise_gen = OnnxRuntimeGenerator(exports("noise", "torchscript"), flow)
    with pytest.raises(ValueError, match=r"noise float \(B, D\) = \(2, 3072\)"):
        noise_gen(torch.rand(2, 3, 3, H, W), noise=torch.randn(1, 3072))
    with pytest.raises(FileNotFoundError):
        OnnxRuntimeGenerator(exports("zero").with_name("missing.onnx"))


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")
def test_torchscript_export_round_trip(flow, tmp_path, real_clips):
    alpha = flow.meta["alpha"]
    path = export_torchscript(flow, tmp_path / "gen.pt", alpha=alpha, strategy="shuffle_clip", height=H, width=W)
    module, meta = load_torchscript(path, flow, alpha=alpha, strategy="shuffle_clip")
    assert (meta["strategy"], meta["flow_sha256"], meta["height"]) == ("shuffle_clip", flow.sha256, H)
    order = torch.rand(2, 8, flow.config.dims).argsort(dim=1)
    graph = GeneratorGraph(flow.prepare(), alpha, "shuffle_clip", H, W)
    with torch.no_grad():
        out, mask = module(real_clips, None, order)
        ref, ref_mask = graph(real_clips, None, order)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(mask, ref_mask)
    with pytest.raises(MetadataMismatchError, match="alpha"):
        load_torchscript(path, flow, alpha=0.5)


# -- the TensorRT op check ------------------------------------------------------------------

def _model(nodes, inputs, outputs, initializers=(), functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", 18)] + [helper.make_opsetid(f.domain, 1) for f in functions]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _vi(name, elem=TensorProto.FLOAT, shape=(2, 4)):
    return helper.make_tensor_value_info(name, elem, list(shape))


def test_tensorrt_op_check_passes_a_good_model():
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    m = _model([helper.make_node("ReduceMean", ["x", "axes"], ["m"]),
                helper.make_node("TopK", ["x", "k"], ["v", "i"])],
               [_vi("x")], [_vi("m", shape=(2, 1)), _vi("v", shape=(2, 2)), _vi("i", TensorProto.INT64, (2, 2))],
               [axes, k])
    onnx.checker.check_model(m)
    assert check_tensorrt_ops(m) == []


@pytest.mark.parametrize("case", ["runtime_axes", "unsupported_op", "unknown_op", "big_topk", "runtime_k",
                                  "unsorted_topk", "double", "custom_domain", "in_function", "in_subgraph",
                                  "resize_mode"])
def test_tensorrt_op_check_flags_bad_models(case):
    x, y = _vi("x"), _vi("y")
    init = []
    nodes, inputs, outputs, functions = [], [x], [y], []
    if case == "runtime_axes":          # axes as a graph input: TensorRT needs an initializer
        nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"])]
        inputs.append(_vi("axes", TensorProto.INT64, (1,)))
        expect = "axes 'axes' is not an initializer"
    elif case == "unsupported_op":
        nodes = [helper.make_node("Det", ["x"], ["y"])]
        expect = "not supported by TensorRT"
    elif case == "unknown_op":
        nodes = [helper.make_node("Inverse", ["x"], ["y"])]
        expect = "not in TensorRT's ONNX op table"
    elif case in ("big_topk", "unsorted_topk"):
        init = [numpy_helper.from_array(np.array([4000 if case == "big_topk" else 2], np.int64), "k")]
        nodes = [helper.make_node("TopK", ["x", "k"], ["y", "i"], **({"sorted": 0} if case == "unsorted_topk" else {}))]
        outputs.append(_vi("i", TensorProto.INT64))
        expect = "K = 4000 but TensorRT's TopK needs K < 3840" if case == "big_topk" else "sorted = 0"
    elif case == "runtime_k":
        nodes = [helper.make_node("TopK", ["x", "k"], ["y", "i"])]
        inputs.append(_vi("k", TensorProto.INT64, (1,)))
        outputs.append(_vi("i", TensorProto.INT64))
        expect = "K 'k' is not an initializer"
    elif case == "double":
        inputs, outputs = [_vi("x", TensorProto.DOUBLE)], [_vi("y", TensorProto.DOUBLE)]
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
        expect = "input 'x' is DOUBLE"
    elif case == "custom_domain":
        nodes = [helper.make_node("Inverse", ["x"], ["y"], domain="com.microsoft")]
        expect = "outside the ONNX domain"
    elif case == "in_function":          # a model-local function whose body holds an unsupported op
        functions = [helper.make_function("local", "Wrapped", ["a"], ["b"], [helper.make_node("Det", ["a"], ["b"])],
                                          [helper.make_opsetid("", 18)])]
        nodes = [helper.make_node("Wrapped", ["x"], ["y"], domain="local")]
        expect = "(Det): not supported"
    elif case == "in_subgraph":          # an If branch holding an unsupported op
        branch = helper.make_graph([helper.make_node("Det", ["x"], ["z"])], "b", [], [_vi("z")])
        nodes = [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)]
        inputs.append(_vi("c", TensorProto.BOOL, ()))
        expect = "(Det): not supported"
    elif case == "resize_mode":
        nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")]
        init = [numpy_helper.from_array(np.array([1, 1], np.float32), "scales")]
        expect = "mode = 'cubic'"
    model = _model(nodes, inputs, outputs, init, functions)
    problems = check_tensorrt_ops(model)
    assert any(expect in p for p in problems), problems
    if case in ("in_function", "in_subgraph"):
        assert "Det" in list_onnx_ops(model)


def test_op_table_reads_restrictions():
    table = load_op_table()
    assert table["Conv"].supported and TensorProto.FLOAT16 in table["Conv"].types
    assert not table["Det"].supported
    assert "axes must be an initializer" in table["ReduceMean"].notes
    assert TensorProto.BOOL in table["Where"].types and TensorProto.INT64 in table["GatherElements"].types


def test_export_is_atomic_and_moves_external_data_with_the_model(monkeypatch, tmp_path):
    """A model stored with external data moves into place with its data; an export killed before
    its renames leaves the earlier export whole and no temporary file behind."""
    import s2vc.export.onnx_export as onnx_export
    tiny = randomize_(AdvFlow(FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8,
                                         fc_hidden=8)), std=0.05, seed=2).eval()
    monkeypatch.setattr(onnx_export, "_EXTERNAL_DATA_BYTES", 0)         # every model takes external data
    paths = export_flow_onnx(tiny, tmp_path, exporter="torchscript")
    enc = paths["encoder"]
    assert (tmp_path / "encoder.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{k}{s}" for k in ("encoder", "decoder") for s in (".onnx", ".onnx.data", ".json"))
    import onnxruntime as ort
    x = torch.rand(2, 3, 8, 8)
    (got,) = ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"]).run(
        None, {read_onnx_metadata(enc)["inputs"][0]: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), tiny.prepare().encode(x), rtol=1e-4, atol=1e-4)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export.os, "fsync", killed)                 # killed after writing, before renaming
    with pytest.raises(KeyboardInterrupt):
        export_flow_onnx(randomize_(copy.deepcopy(tiny), std=0.05, seed=5), tmp_path, exporter="torchscript")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    # a re-export small enough for one file leaves no stale data file beside it
    export_flow_onnx(tiny, tmp_path, exporter="torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.json", "decoder.onnx", "encoder.json", "encoder.onnx"]
    with pytest.raises(ValueError, match="another suffix than .json"):
        export_generator_onnx(tiny, tmp_path / "gen.json", alpha=0.3, strategy="zero", height=8, width=8)
