"""``s2vc.MotionPreserve``: the generator as a video transform (issue 22).

Every layout and dtype against ``MotionPreservingGenerator`` on the same clips (the reference),
normalisation round trips, per-clip use in DataLoader workers inside torchvision's Compose,
pickling, one-line errors, and the Lightning example trained for a few steps."""
from __future__ import annotations

import copy
import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import s2vc
from s2vc import MotionPreserve, MotionPreservingGenerator, load_flow

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny clips run faster on one thread than on a contended pool (the CI has 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def flow():
    return load_flow()


@pytest.fixture(scope="module")
def reference(flow):
    """The generator on float (B, C, T, H, W) in [0, 1]: what every form must equal."""
    gen = MotionPreservingGenerator(flow, seed=0)
    return lambda clips: gen(clips)[0]


def _clips(b=2, t=3, h=34, w=33, seed=0) -> torch.Tensor:
    """float (B, 3, T, H, W) in [0, 1]: a moving square on a textured background (odd sizes)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 1, h, w, generator=g).expand(b, 3, t, h, w).clone() * 0.6
    for i in range(t):
        x[:, :, i, 4 + 3 * i:14 + 3 * i, 5:15] = 0.9
    return x


def _to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """float (B, C, T, H, W) -> layout (one-clip layouts take the first clip)."""
    return {"BCTHW": x, "BTCHW": x.transpose(1, 2), "CTHW": x[0], "TCHW": x[0].transpose(0, 1)}[layout].contiguous()


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("layout", ["BCTHW", "BTCHW", "CTHW", "TCHW"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_equals_the_generator_in_every_layout_and_dtype(flow, reference, layout, dtype):
    x = _clips()
    if layout in ("CTHW", "TCHW"):
        x = x[:1]
    if dtype == torch.uint8:
        x8 = _as_uint8(x)
        video, expected = _to_layout(x8, layout), _as_uint8(reference(x8.float() / 255))
    else:
        video = _to_layout(x.to(dtype), layout)
        expected = reference(x.to(dtype))
    out = MotionPreserve(flow, layout=layout, seed=0)(video)
    assert out.dtype == video.dtype and out.shape == video.shape and out.is_contiguous()
    assert torch.equal(out, _to_layout(expected, layout))


def test_uint8_btchw_batch_comes_back_uint8_btchw(flow, reference):
    """VideoMAE / HuggingFace hold uint8 (B, T, C, H, W): the key comes back so, rounded to the
    nearest level and clamped (the paper's residual leaves [0, 1] at edges)."""
    x8 = _as_uint8(_clips(b=3, t=4))
    transform = MotionPreserve(flow, layout="BTCHW", seed=0)
    out = transform(x8.transpose(1, 2))
    raw = reference(x8.float() / 255)
    assert out.dtype == torch.uint8 and out.shape == (3, 4, 3, 34, 33)
    assert torch.equal(out.transpose(1, 2), (raw * 255).round().clamp(0, 255).to(torch.uint8))
    assert not torch.equal(out, x8.transpose(1, 2))                 # it did transform
    assert transform.stats.preserved.shape == (3,) and transform.stats.mask.dtype == torch.bool


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalised_bcthw_round_trip(flow, reference, dtype):
    """Normalised float in: un-normalised, transformed, normalised again = normalise(generator)."""
    x = _clips().to(dtype)
    mean, std = torch.tensor(MEAN, dtype=dtype).view(1, 3, 1, 1, 1), torch.tensor(STD, dtype=dtype).view(1, 3, 1, 1, 1)
    out = MotionPreserve(flow, mean=MEAN, std=STD, seed=0)((x - mean) / std)
    assert out.dtype == dtype and out.shape == x.shape
    expected = (reference(x) - mean) / std
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out * std + mean, reference(x), atol=1e-5, rtol=1e-5)


def test_one_number_normalisation_and_a_per_channel_one_agree(flow):
    x = _clips(b=1)
    a = MotionPreserve(flow, mean=0.5, std=0.25, seed=0)((x - 0.5) / 0.25)
    b = MotionPreserve(flow, mean=[0.5] * 3, std=torch.full((3,), 0.25), seed=0)((x - 0.5) / 0.25)
    assert torch.equal(a, b)


def test_non_contiguous_and_channels_last_inputs(flow, reference):
    x = _clips(b=2, t=3)
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    out = MotionPreserve(flow, seed=0)(cl)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(out, reference(cl))
    # the pooling sums in another order in channels-last: float rounding apart, the same clip
    torch.testing.assert_close(out, reference(x), atol=1e-5, rtol=1e-5)
    wide = torch.cat([x, x], dim=-1)[..., ::2]                      # a strided view, every other column
    torch.testing.assert_close(MotionPreserve(flow, seed=0)(wide), reference(wide.contiguous()), atol=1e-6, rtol=1e-6)


def test_preserve_calibrates_alpha_on_the_first_batch(flow):
    x = _clips(b=2, t=4)
    lazy = MotionPreserve(flow, preserve=0.3, seed=0)
    assert lazy.alpha is None
    lazy(x)
    explicit = MotionPreserve(flow, seed=0)
    assert explicit.calibrate(x, preserve=0.3) == pytest.approx(lazy.alpha)
    assert float(lazy.stats.preserved.mean()) == pytest.approx(0.3, abs=0.02)
    assert torch.equal(explicit(x), MotionPreservingGenerator(flow, alpha=lazy.alpha, seed=0)(x)[0])
    with pytest.raises(ValueError, match="alpha or preserve"):
        MotionPreserve(flow, alpha=0.5, preserve=0.3)


def test_topk_takes_preserve_as_its_fraction(flow):
    x = _clips(b=2, t=4)
    out = MotionPreserve(flow, strategy="topk", preserve=0.25)
    out(x)
    assert out.stats.preserved.tolist() == pytest.approx([0.25, 0.25], abs=1.0 / flow.config.dims)


def test_the_callers_flow_is_left_as_it_was(flow):
    training = copy.deepcopy(flow).train()                            # e.g. a flow being fitted
    transform = MotionPreserve(training)
    assert training.training and not transform.flow.training and transform.flow is not training
    assert MotionPreserve(flow).flow is flow                          # in eval mode on the CPU: shared


def test_pickles_without_device_state_and_is_no_parameter(flow):
    x = _clips(b=1)
    transform = MotionPreserve(flow, layout="BCTHW", seed=0)
    first = transform(x)
    clone = pickle.loads(pickle.dumps(transform))
    assert clone._generators == {} and clone.stats is None
    assert torch.equal(clone(x), first)
    # a model holding the transform neither trains nor saves the flow
    holder = torch.nn.Sequential(torch.nn.Linear(2, 2))
    holder.key = transform
    assert len(list(holder.parameters())) == 2 and all(k.startswith("0.") for k in holder.state_dict())


class _Clips(torch.utils.data.Dataset):
    """Four uint8 clips (C, T, H, W); the transform runs in the worker that loads each."""

    def __init__(self, transform):
        self.clips = _as_uint8(_clips(b=4, t=3))
        self.transform = transform

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return self.transform(self.clips[i]), torch.get_num_threads()


def test_dataloader_workers_apply_it_per_clip_inside_compose(flow, reference):
    from torchvision.transforms import v2
    transform = v2.Compose([MotionPreserve(flow, layout="CTHW", seed=0), v2.Lambda(lambda c: c.flip(-1))])
    data = _Clips(transform)
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    batches = list(loader)
    got = torch.cat([b[0] for b in batches])
    expected = torch.stack([_as_uint8(reference(c[None].float() / 255))[0] for c in data.clips]).flip(-1)
    assert got.dtype == torch.uint8 and torch.equal(got, expected)
    assert all(int(n) == 1 for b in batches for n in b[1])           # one thread per worker


def _many_threads(worker_id):
    torch.set_num_threads(8)                  # a worker_init_fn that oversubscribes the cores


def test_workers_keep_to_their_share_of_the_cores(flow):
    data = _Clips(MotionPreserve(flow, layout="CTHW", seed=0))
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2, worker_init_fn=_many_threads)
    share = max(1, (os.cpu_count() or 1) // 2)
    assert all(int(n) == min(8, share) for b in loader for n in b[1])


def test_import_s2vc_does_not_import_torch():
    """The command's start and a plain ``import s2vc`` stay light; the names load on first use."""
    code = "import sys, s2vc; assert 'torch' not in sys.modules; s2vc.MotionPreserve; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("video, layout, message", [
    (torch.rand(3, 3, 33, 33), "BCTHW", "expects a 5-D tensor"),
    (torch.rand(2, 3, 4, 33, 33), "BTCHW", "expects C = 3 channels at dim 2"),
    (torch.rand(4, 3, 33, 33), "CTHW", "expects C = 3 channels at dim 0"),
    (torch.full((1, 3, 3, 33, 33), float("nan")), "BCTHW", "NaN/Inf"),
    (torch.randint(0, 255, (1, 3, 3, 33, 33), dtype=torch.int32), "BCTHW", "got torch.int32"),
    (torch.rand(1, 3, 3, 33, 33) * 10 - 5, "BCTHW", "values must be in [0, 1]"),
    (torch.rand(1, 3, 1, 33, 33), "BCTHW", "T >= 2 frames"),
    (torch.rand(1, 3, 3, 20, 33), "BCTHW", "smaller than the flow's"),
    ([[0.0]], "BCTHW", "got list"),
])
def test_bad_input_is_one_line(flow, video, layout, message):
    with pytest.raises((ValueError, TypeError)) as info:
        MotionPreserve(flow, layout=layout)(video)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"layout": "THWC"}, "layout must be one of"),
    ({"mean": MEAN}, "mean and std go together"),
    ({"mean": (0.5, 0.5), "std": (1, 1)}, "3 finite numbers"),
    ({"mean": 0.5, "std": 0}, "non-zero"),
    ({"preserve": 1.5}, "in (0, 1)"),
    ({"backend": "nope"}, "not available"),
    ({"flow": 3}, "flow must be a checkpoint path"),
])
def test_bad_settings_fail_at_construction(flow, kwargs, message):
    kwargs = {"flow": flow, **kwargs}
    with pytest.raises((ValueError, TypeError)) as info:
        MotionPreserve(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_are_checked_on_the_cpu_and_not_on_a_device_unless_asked(flow):
    assert MotionPreserve(flow)._generators["cpu"].validate is True
    assert MotionPreserve(flow, validate=False)._generators["cpu"].validate is False
    on_a_device = copy.deepcopy(flow).to("meta")                     # where a CUDA generator's flow would be
    assert MotionPreserve(flow)._validating(on_a_device) is False
    assert MotionPreserve(flow, validate=True)._validating(on_a_device) is True
    with pytest.raises(ValueError, match="NaN"):                      # the calibration's own check
        MotionPreserve(flow, preserve=0.3)(torch.full((1, 3, 3, 33, 33), float("nan")))


def test_uint8_with_mean_is_refused(flow):
    with pytest.raises(TypeError, match="normalised video is floating point"):
        MotionPreserve(flow, mean=0.5, std=0.25)(torch.zeros(1, 3, 2, 33, 33, dtype=torch.uint8))


def test_the_package_exports_the_user_facing_names():
    from s2vc.engine import suppression
    assert s2vc.temporal_std_mask is suppression.temporal_std_mask
    assert {"MotionPreserve", "load_flow", "MotionPreservingGenerator", "temporal_std_mask"} <= set(s2vc.__all__)
    with pytest.raises(AttributeError):
        s2vc.not_a_name  # noqa: B018


def _example():
    spec = importlib.util.spec_from_file_location("lightning_moco", ROOT / "examples" / "lightning_moco.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


class _Pairs(torch.utils.data.Dataset):
    """Normalised clip pairs {"q", "k"} float (3, T, H, W), as another pipeline would give them."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = _clips(b=2, t=4, h=32, w=32, seed=i)
        mean, std = torch.tensor(MEAN).view(3, 1, 1, 1), torch.tensor(STD).view(3, 1, 1, 1)
        return {"q": (x[0] - mean) / std, "k": (x[1] - mean) / std}


def test_lightning_example_trains_a_few_steps(flow):
    pytest.importorskip("lightning")
    import lightning as L
    example = _example()
    model = example.S2VCMoCo(example.MoCoSettings(queue=16, seed=0))
    before = [p.detach().clone() for p in model.moco.encoder_q.parameters()]
    trainer = L.Trainer(max_steps=3, accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False,
                        logger=False, enable_model_summary=False)
    trainer.fit(model, torch.utils.data.DataLoader(_Pairs(), batch_size=2))
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert 0 < float(trainer.callback_metrics["train/preserved"]) < 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.moco.encoder_q.parameters()))
    assert int(model.moco.queue_ptr) == 6                             # 3 steps x 2 keys enqueued
