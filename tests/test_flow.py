"""The flow: invertibility, log-det, AdvFlow compatibility, likelihood training, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2vc.engine import AdvFlow, FlowConfig
from s2vc.engine.layers import depth_to_space, seeded_permutation, space_to_depth

from conftest import randomize_

CONFIGS = [
    FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8, fc_hidden=8),
    FlowConfig(resolution=16, high_blocks=4, low_blocks=6, fc_blocks=6, hidden=16, fc_hidden=32),
    FlowConfig(resolution=32, high_blocks=1, low_blocks=3, fc_blocks=0, hidden=32, fc_hidden=64),
    FlowConfig(resolution=6, channels=2, high_blocks=1, low_blocks=1, fc_blocks=1, hidden=4, fc_hidden=4),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"r{c.resolution}c{c.channels}")
def test_round_trip(cfg):
    flow = randomize_(AdvFlow(cfg), std=0.05, seed=cfg.resolution)
    x = torch.rand(5, cfg.channels, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        z, ld = flow(x)
        x_back, ld_inv = flow.inverse(z)
    assert z.shape == (5, cfg.dims)
    assert (x_back - x).abs().max().item() <= 1e-5
    assert torch.allclose(ld, -ld_inv, rtol=1e-5, atol=1e-4)
    assert ld.abs().max() > 1e-3          # random weights: the map is not volume-preserving


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"r{c.resolution}c{c.channels}")
def test_prepared_form_matches_flow(cfg):
    flow = randomize_(AdvFlow(cfg), std=0.05, seed=1).eval()
    prepared = flow.prepare()
    x = torch.rand(3, cfg.channels, cfg.resolution, cfg.resolution)
    z = torch.randn(3, cfg.dims)
    with torch.no_grad():
        torch.testing.assert_close(prepared.encode(x), flow.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prepared.decode(z), flow.decode(z), rtol=1e-5, atol=1e-5)
    # folding removed the permutations next to the 1x1 convs
    n_gather = sum(type(m).__name__ == "Gather" for m in prepared.decoder.image_steps)
    n_perm = cfg.high_blocks + cfg.low_blocks
    assert n_gather < n_perm or cfg.low_blocks == 0


def test_prepared_form_scripts():
    cfg = CONFIGS[0]
    flow = randomize_(AdvFlow(cfg), std=0.05).eval()
    prepared = flow.prepare()
    enc, dec = torch.jit.script(prepared.encoder), torch.jit.script(prepared.decoder)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), prepared.encode(x))
        torch.testing.assert_close(dec(enc(x)), x, rtol=1e-5, atol=1e-5)


def test_logdet_matches_autograd_jacobian():
    cfg = FlowConfig(resolution=4, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=4, fc_hidden=6)
    flow = randomize_(AdvFlow(cfg), std=0.2, seed=3).double()
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    _, logdet = flow(x)
    # FrEIA's convention (ADVFLOW_SPEC 7): a fixed 1x1 conv adds its logDetM once per sample, not
    # once per pixel. Its matrices are orthogonal (|log det| ~ 1e-7), so this is round-off; undo
    # it here to compare with the exact Jacobian.
    from s2vc.engine.layers import Fixed1x1Conv
    pixels = (cfg.resolution // 2) ** 2
    convention = sum(pixels * torch.linalg.slogdet(m.M[:, :, 0, 0])[1] - m.logDetM
                     for m in flow.modules() if isinstance(m, Fixed1x1Conv))
    logdet = logdet + convention
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v.reshape(1, 3, 4, 4))[0][0], x[i].reshape(-1))
        sign, expected = torch.linalg.slogdet(jac)
        assert sign != 0
        assert logdet[i].item() == pytest.approx(expected.item(), abs=1e-9, rel=1e-9)
    assert logdet.abs().max() > 0.1


def test_space_to_depth_is_irevnet_order_not_pixel_unshuffle():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = space_to_depth(x)
    expected = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]], 1)
    assert torch.equal(y, expected)
    assert not torch.equal(y, F.pixel_unshuffle(x, 2))
    assert torch.equal(depth_to_space(y), x)


def test_permutations_match_spec_reference_values():
    assert seeded_permutation(3, 0).tolist() == [2, 1, 0]
    assert seeded_permutation(3, 3).tolist() == [1, 0, 2]
    assert seeded_permutation(12, 0).tolist() == [6, 11, 4, 10, 2, 8, 1, 7, 9, 3, 0, 5]
    assert seeded_permutation(12, 5).tolist() == [7, 5, 2, 9, 11, 4, 8, 1, 0, 10, 6, 3]
    assert seeded_permutation(3072, 1)[:8].tolist() == [906, 6, 2957, 45, 1855, 2938, 933, 3068]


def test_state_dict_keys_are_advflows(compat):
    assert list(AdvFlow().state_dict().keys()) == compat["keys"]


def _check_compat(flow, compat):
    x = torch.from_numpy(compat["x"])
    with torch.no_grad():
        z, logdet = flow(x)
        x_rec = flow.decode(torch.from_numpy(compat["z_test"]))
        prepared = flow.prepare()
        z_p = prepared.encode(x)
        x_p = prepared.decode(torch.from_numpy(compat["z_test"]))
    ref_ld = torch.from_numpy(compat["logdet"])
    assert (z - torch.from_numpy(compat["z"])).abs().max().item() < 1e-4
    assert (x_rec - torch.from_numpy(compat["x_from_z_test"])).abs().max().item() < 1e-4
    assert ((logdet.double() - ref_ld).abs() / ref_ld.abs()).max().item() < 1e-3
    assert (logdet.double() - ref_ld).abs().max().item() < 0.01     # catches a 2/pi clamp (0.66 off)
    assert (z_p - torch.from_numpy(compat["z"])).abs().max().item() < 1e-4
    assert (x_p - torch.from_numpy(compat["x_from_z_test"])).abs().max().item() < 1e-4


def test_advflow_compatibility_vector(compat, tmp_path):
    from s2vc.engine import load_flow
    path = tmp_path / "advflow.pt"
    torch.save(compat["state_dict"], path)
    flow = load_flow(path)
    assert flow.config == FlowConfig()          # ImageNet-64 architecture read off the shapes
    _check_compat(flow, compat)


def test_advflow_loader_strips_prefix_and_tmp_vars(compat, tmp_path):
    from s2vc.engine import load_flow
    sd = {f"model.{k}": v for k, v in compat["state_dict"].items()}
    sd["model.module_list.1.tmp_var_0"] = torch.zeros(3)
    sd["model.module_list.28.tmp_var_5"] = torch.zeros(7)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    _check_compat(load_flow(path), compat)


def test_project_checkpoint_round_trip(tmp_path):
    from s2vc.engine import load_flow, save_flow
    flow = randomize_(AdvFlow(CONFIGS[1]), seed=5)
    save_flow(flow, tmp_path / "f.pt", meta={"alpha": 0.7})
    loaded = load_flow(tmp_path / "f.pt")
    assert loaded.config == flow.config and loaded.meta["alpha"] == 0.7
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), flow.encode(x))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_bits_per_dim_decreases_on_real_frames(real_frames):
    torch.manual_seed(0)
    cfg = FlowConfig(resolution=16, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=16, fc_hidden=32)
    flow = AdvFlow(cfg)
    frames = F.adaptive_avg_pool2d(real_frames, 16)
    train, held = frames[:36], frames[40:]
    noise = torch.rand(held.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = flow.nll_bits_per_dim(held, noise=noise).mean().item()
    opt = torch.optim.Adam(flow.parameters(), lr=2e-3)
    for _ in range(30):
        loss = flow.bits_per_dim(train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = flow.nll_bits_per_dim(held, noise=noise).mean().item()
    assert after < before - 0.5, (before, after)


def test_bits_per_dim_is_discrete_likelihood():
    # the identity-initialised flow: z = x, logdet ~ 0 (orthogonal 1x1s), so the value is analytic
    flow = AdvFlow(CONFIGS[0])
    frames = torch.full((1, 3, 8, 8), 0.5)
    noise = torch.full_like(frames, 0.5)
    bpd = flow.nll_bits_per_dim(frames, noise=noise).item()
    x = (torch.round(frames * 255) + noise) / 256
    with torch.no_grad():
        z, ld = flow(x)
    nll = 0.5 * (z.pow(2).sum() + z.numel() * np.log(2 * np.pi)) - ld.sum()
    assert bpd == pytest.approx((nll.item() / 192 + np.log(256)) / np.log(2), rel=1e-5)


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,match", [
    ((2, 1, 8, 8), r"\(N, 3, 8, 8\).*\(2, 1, 8, 8\)"),
    ((2, 3, 16, 16), r"\(N, 3, 8, 8\).*\(2, 3, 16, 16\)"),
    ((3, 8, 8), r"\(N, 3, 8, 8\).*\(3, 8, 8\)"),
])
def test_encode_rejects_wrong_shapes(tiny_config, shape, match):
    with pytest.raises(ValueError, match=match):
        AdvFlow(tiny_config).encode(torch.rand(shape))


def test_encode_rejects_nan_inf_and_integer_frames(tiny_config):
    flow = AdvFlow(tiny_config)
    x = torch.rand(2, 3, 8, 8)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        flow.encode(x)
    x[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN/Inf"):
        flow.encode(x)
    with pytest.raises(TypeError, match="floating-point.*uint8"):
        flow.encode(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_decode_rejects_wrong_latent_size(tiny_config):
    with pytest.raises(ValueError, match=r"\(N, 192\).*\(2, 191\)"):
        AdvFlow(tiny_config).decode(torch.randn(2, 191))


def test_bits_per_dim_rejects_out_of_range(tiny_config):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AdvFlow(tiny_config).bits_per_dim(torch.rand(2, 3, 8, 8) * 255)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="resolution"):
        FlowConfig(resolution=7)
    with pytest.raises(ValueError, match="clamp"):
        FlowConfig(clamp=float("nan"))
    with pytest.raises(ValueError, match="unknown flow config keys"):
        FlowConfig.from_dict({"resolution": 8, "depth": 3})
