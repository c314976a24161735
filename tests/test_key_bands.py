"""``s2vc eval key-bands``: the Laplacian bands a key is split into, their features, and the
probes of each arm's key end to end on a tiny synthetic set."""
from __future__ import annotations

import json

import pytest
import torch

from s2vc.cli import build_parser
from s2vc.training.experiments.key_bands import band_features, band_pyramid


def test_bands_sum_to_the_clip_and_separate_scales():
    torch.manual_seed(0)
    clips = torch.rand(2, 3, 5, 32, 32, dtype=torch.float64)
    bands = band_pyramid(clips)
    assert list(bands) == ["<=4", "4-8", "8-16", "16-32"]
    assert torch.allclose(sum(bands.values()), clips, atol=1e-12)
    # a flat frame lives in the coarse band only
    flat = torch.full((1, 3, 2, 32, 32), 0.3, dtype=torch.float64)
    for name, band in band_pyramid(flat).items():
        assert torch.allclose(band, flat if name == "<=4" else torch.zeros_like(flat), atol=1e-12), name
    # a one-pixel checkerboard averages away at every coarser side: only the finest band keeps it
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).double() - 0.5
    fine = checker.expand(1, 3, 2, 32, 32)
    got = band_pyramid(fine)
    assert torch.allclose(got["16-32"], fine, atol=1e-12)
    assert all(got[k].abs().max() < 1e-12 for k in ("<=4", "4-8", "8-16"))
    # a non-contiguous view gives the same bands
    wide = torch.rand(1, 5, 3, 32, 32, dtype=torch.float64).transpose(1, 2)
    assert torch.allclose(band_pyramid(wide)["8-16"], band_pyramid(wide.contiguous())["8-16"])
    with pytest.raises(ValueError, match="divisible by 8"):
        band_pyramid(torch.rand(1, 3, 2, 36, 36))


def test_band_features_read_colour_and_motion():
    clip = torch.zeros(2, 3, 4, 16, 16)
    clip[0, 0] = 1.0                                  # video 0: red and still
    clip[1, :, 1::2, :, :8] = 1.0                       # video 1: grey, its left half flickers
    look, motion = band_features(clip, grid=4)
    assert look.shape == (2, (2 * 3 + 2) * 16) and motion.shape == (2, 3 * 16)
    assert motion[0].abs().max() == 0 and motion[1].view(3, 4, 4)[:, :, :2].min() > 0
    assert motion[1].view(3, 4, 4)[:, :, 2:].abs().max() == 0      # the right half does not move
    assert look[0, :16].min() == 1 and look[0, 16:48].abs().max() == 0    # red channel mean only
    assert look[0, 96:].abs().max() == 0                                   # a flat frame: no gradient
    stripes = torch.zeros(1, 3, 2, 16, 16)
    stripes[..., ::2] = 1.0                                                # vertical stripes
    look, _ = band_features(stripes, grid=4)
    assert look[0, 96:112].min() > 0 and look[0, 112:].abs().max() == 0     # x-gradient energy only


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    from s2vc.training.data.synthetic import cache_name, make_static_bias_set
    params = {"train_per_class": 3, "test_per_class": 6, "frames": 16}
    make_static_bias_set(cache / "synthetic" / cache_name(**params), **params)
    return cache


def test_key_bands_end_to_end(tiny_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("S2VC_CACHE", str(tiny_cache))
    argv = ["eval", "key-bands", "--arms", "moco", "oracle", "s2vc", "--flow", "bundled", "--frames", "4",
            "--synthetic-train-per-class", "3", "--synthetic-test-per-class", "6", "--probe-steps", "30", "--no-progress",
            "--detail", "dynamic", "--out", str(tmp_path / "kb.json")]
    args = build_parser().parse_args(argv)
    args.argv = argv
    res = args.run(args)
    assert list(res["arms"]) == ["moco", "oracle", "s2vc"] and res["videos"] == 36 and res["detail"] == "dynamic"
    assert list(res["arms"]["moco"]) == ["<=8", "8-16", "16-32", "32-64", "all"]
    for by_band in res["arms"].values():
        for cells in by_band.values():
            assert set(cells) == {"scene", "shape", "colour", "motion"}
            assert all(0.0 <= v <= 1.0 for v in cells.values())
    assert res["chance"]["motion"] == pytest.approx(1 / 6)
    assert json.loads((tmp_path / "kb.json").read_text())["arms"] == res["arms"]
    assert (tmp_path / "kb.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| oracle | 32-64 |" in out and "| chance |" in out
    with pytest.raises(SystemExit):                        # an unknown arm is refused by the parser
        build_parser().parse_args(["eval", "key-bands", "--arms", "blur"])


def test_key_bands_detail_reaches_the_s2vc_key():
    """--detail dynamic: the s2vc key of a still textured clip loses its band finer than the flow
    (its static part), which the paper's residual keeps; other arms ignore the option."""
    from types import SimpleNamespace

    from s2vc.engine import load_flow
    from s2vc.training.experiments.key_bands import KeyBandSettings, _keys, band_pyramid
    flow = load_flow(None)                                  # 32x32: the 32-64 band is finer than it
    torch.manual_seed(0)
    still = torch.rand(2, 3, 1, 64, 64).expand(2, 3, 4, 64, 64).contiguous()
    bank, masks = SimpleNamespace(clips=still), torch.ones(2, 1, 4, 64, 64)
    fine = {d: band_pyramid(_keys("s2vc", bank, masks, flow, KeyBandSettings(detail=d, batch_size=2)))["32-64"]
            for d in ("keep", "dynamic")}
    assert fine["keep"].abs().mean() > 0.05
    assert fine["dynamic"].abs().mean() < 0.1 * fine["keep"].abs().mean()
    moco = [_keys("moco", bank, masks, flow, KeyBandSettings(detail=d, batch_size=2)) for d in ("keep", "dynamic")]
    assert torch.equal(*moco)
