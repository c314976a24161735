"""One pretraining step, arm against arm on one config: MoCo, S²VC with keys made on the fly, and
S²VC with keys read from the set's mirror (``pretrain --keys``), plus the pixel arms.

Config (the reproduction's budget, docs/RESULTS.md): the synthetic set (6 classes, 8 training
videos each), clips of 16 frames every 2 at 64², small 3D CNN, batch 16, queue 64, decoded videos
cached in memory (as ``s2vc reproduce`` runs), the bundled flow. One call = one optimisation step
(data + key + backbone), after two warm-up steps. Read the ratios with ``--baseline moco``:
``python scripts/bench_table.py out.json --baseline moco``.
"""
from __future__ import annotations

import pytest

from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror
from s2vc.training.pretrain.loop import PretrainConfig, setup_run, time_steps
from s2vc.training.data.synthetic import SyntheticSet

SET = SyntheticSet(classes=6, train_per_class=8, test_per_class=1)
CLIP = dict(frames=16, stride=2)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_set")
    out = tmp_path_factory.mktemp("bench_mirror") / "s2vc"
    generate_mirror(MirrorConfig(dataset="synthetic", root=str(root / "set"), out=str(out), synthetic=SET,
                                 decode_size=None, progress=False, **CLIP))
    return root / "set", out


@pytest.mark.parametrize("variant", ["moco", "s2vc", "s2vc-keys", "tfd", "be", "fame"])
def test_pretrain_step(benchmark, variant, mirror, tmp_path):
    root, keys = mirror
    mode = variant.removesuffix("-keys")
    cfg = PretrainConfig(out=str(tmp_path / variant), mode=mode, dataset="synthetic", root=str(root), synthetic=SET,
                         size=64, batch_size=16, queue=64, moco_m=0.99, cache_videos=True, workers=0,
                         no_progress=True, device="cpu", keys=str(keys) if variant.endswith("-keys") else None,
                         **CLIP)
    run = setup_run(cfg)
    time_steps(run, 2)                                   # warm-up: allocator, oneDNN kernels
    benchmark.group = "pretrain step"
    records = []
    benchmark.pedantic(lambda: records.extend(time_steps(run, 1)), warmup_rounds=0, rounds=4, iterations=1)
    last = records[-4:]
    benchmark.extra_info.update(
        variant=variant, device="cpu", shape="synthetic 16x64² b16 small", items=16,
        t_data=sum(r["t_data"] for r in last) / len(last), t_gen=sum(r["t_gen"] for r in last) / len(last),
        t_model=sum(r["t_model"] for r in last) / len(last))
