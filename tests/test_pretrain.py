"""`s2vc pretrain` on a tiny synthetic set: every mode, exact resume, atomic checkpoints, errors,
and a two-process torchrun (gloo) run."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest
import torch

from s2vc.cli import main as cli_main
from s2vc.training.pretrain.loop import PretrainConfig, pretrain
from s2vc.training.data.synthetic import SyntheticSet

CLIPS = ["--frames", "4", "--stride", "2", "--crop-size", "32", "--batch-size", "4", "--queue", "16"]
TINY = [*CLIPS, "--epochs", "1", "--no-progress", "--threads", "2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    os.environ["S2VC_CACHE"] = str(path)
    yield path
    os.environ.pop("S2VC_CACHE", None)


def _history(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["history"]


@pytest.mark.parametrize("mode", ["moco", "s2vc", "tfd", "oracle", "be", "fame"])
def test_every_mode_trains(cache, tmp_path, mode):
    run = tmp_path / mode
    assert cli_main(["pretrain", "--mode", mode, "--out", str(run), "--max-steps", "3", *TINY]) == 0
    hist = _history(run)
    assert len(hist) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    if mode == "s2vc":
        assert all(0 < h["preserved"] < 1 for h in hist)
    assert (run / "logs").is_dir()


def test_snapshots_and_a_finished_run_is_not_extended(cache, tmp_path, capsys):
    from s2vc.training.evaluation.frozen import load_backbone
    from s2vc.training.pretrain.loop import snapshots
    run = tmp_path / "snap"
    argv = ["pretrain", "--mode", "moco", "--out", str(run), "--max-steps", "4", "--snapshot-every", "2", *TINY]
    assert cli_main(argv) == 0
    snaps = snapshots(run)
    assert list(snaps) == [0, 2, 4]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    last = torch.load(snaps[4], weights_only=True)
    assert last["step"] == 4 and all(torch.equal(v, ckpt["model"][k]) for k, v in last["model"].items())
    assert load_backbone(snaps[0]).backbone_name == "small"         # what the evaluations read
    first = torch.load(snaps[0], weights_only=True)["model"]
    assert not all(torch.equal(v, first[k]) for k, v in last["model"].items() if v.is_floating_point())
    # resumed at its --max-steps, the run trains nothing more
    capsys.readouterr()
    assert cli_main([*argv, "--resume"]) == 0
    assert "already run 4" in capsys.readouterr().err
    assert len(_history(run)) == 4 and list(snapshots(run)) == [0, 2, 4]
    # resuming with other settings would mix two runs: refused (one line, exit 1)
    capsys.readouterr()
    assert cli_main([*argv, "--resume", "--max-steps", "6", "--lr", "1e-2"]) == 1
    err = capsys.readouterr().err
    assert "other settings than asked" in err and "lr 0.001 -> 0.01" in err and len(err.splitlines()) == 1
    # the last step gets a snapshot even off the cadence
    run5 = tmp_path / "snap5"
    assert cli_main(["pretrain", "--mode", "moco", "--out", str(run5), "--max-steps", "3", "--snapshot-every", "2",
                     "--cache-videos", *TINY]) == 0
    assert list(snapshots(run5)) == [0, 2, 3]


def test_contrastive_loss_on_fixed_pairs_decreases(cache, tmp_path):
    """The MoCo training loss itself is too noisy over a few dozen steps at this scale (the queue
    fills with real keys and each batch brings new crops), so the loss is measured on fixed data:
    two crops of 24 fixed videos, in-batch negatives, before and after 30 training steps.
    Observed: 3.18 (= ln 24, chance) -> 2.96 / 3.06 / 3.01 (moco seeds 0, 1; s2vc seed 0)."""
    import torch.nn.functional as F
    from s2vc.training.data.datasets import build_dataset
    from s2vc.training.models import Encoder
    from s2vc.training.pretrain.moco import MoCo
    from s2vc.training.data.transforms import key_transform, normalize_clip
    run = tmp_path / "curve"
    assert cli_main(["pretrain", "--mode", "moco", "--out", str(run), "--max-steps", "30", "--warmup-epochs", "0",
                     "--epochs", "10", *CLIPS, "--no-progress"]) == 0
    torch.manual_seed(0)
    ds = build_dataset("synthetic", None, frames=4, stride=2, size=None, transform_q=key_transform(32),
                       transform_k=key_transform(32), seed=1, synthetic=SyntheticSet(bias="strong", seed=0))
    items = [ds[i] for i in range(0, len(ds), len(ds) // 24)][:24]
    q = normalize_clip(torch.stack([it["q"] for it in items]))
    k = normalize_clip(torch.stack([it["k"] for it in items]))

    def infonce(encoder):
        encoder.eval()
        with torch.no_grad():
            a, b = F.normalize(encoder(q), dim=1), F.normalize(encoder(k), dim=1)
        return F.cross_entropy(a @ b.T / 0.2, torch.arange(len(a))).item()

    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    trained = MoCo(Encoder("small"), K=16)
    trained.load_state_dict(ckpt["model"])
    torch.manual_seed(0)
    initial = MoCo(Encoder("small"), K=16)
    before, after = infonce(initial.encoder_q), infonce(trained.encoder_q)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in ckpt["history"])
    assert after < before - 0.05, (before, after)


def test_resume_continues_exactly(cache, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--mode", "s2vc", "--strategy", "noise", "--ckpt-every", "2", *TINY]
    assert cli_main(["pretrain", "--out", str(full), "--max-steps", "6", *args]) == 0
    assert cli_main(["pretrain", "--out", str(part), "--max-steps", "3", *args]) == 0
    assert cli_main(["pretrain", "--out", str(part), "--max-steps", "6", "--resume", *args]) == 0
    a, b = _history(full), _history(part)
    assert [h["step"] for h in b] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6), (x, y)


def test_kill_9_then_resume_matches_an_uninterrupted_run(cache, tmp_path):
    import signal
    import time
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = ["--mode", "s2vc", "--ckpt-every", "2", *TINY]
    assert cli_main(["pretrain", "--out", str(full), "--max-steps", "8", *args]) == 0
    cmd = [sys.executable, "-m", "s2vc.cli", "pretrain", "--out", str(killed), "--max-steps", "1000", *args]
    proc = subprocess.Popen(cmd, env={**os.environ, "S2VC_CACHE": str(cache)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            path = killed / "checkpoint.pt"
            if path.exists():
                try:
                    if torch.load(path, weights_only=True)["step"] >= 2:
                        break
                except Exception:
                    pass
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)           # no chance to clean up or save
    finally:
        proc.wait()
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= stopped_at < 8
    assert cli_main(["pretrain", "--out", str(killed), "--max-steps", "8", "--resume", *args]) == 0
    a, b = _history(full), _history(killed)
    assert [h["step"] for h in b] == list(range(1, 9))
    for x, y in zip(a[stopped_at:], b[stopped_at:]):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6), (x, y)


def test_interrupted_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    from s2vc.engine.checkpoint import atomic_torch_save
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt          # killed while writing
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_bad_configs(cache, tmp_path, capsys):
    with pytest.raises(SystemExit):                                        # argparse: not a choice
        cli_main(["pretrain", "--dataset", "imagenet", "--out", str(tmp_path / "a")])

    def error(argv):
        """The one line a failed command prints (exit status 1 or 2)."""
        capsys.readouterr()
        assert cli_main(argv) in (1, 2)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err
    assert "multiple of the global batch" in error(["pretrain", "--out", str(tmp_path / "b"), "--batch-size", "6",
                                                    "--queue", "16"])
    (tmp_path / "ucf" / "UCF-101").mkdir(parents=True)
    assert re.search("trainlist01.txt|ucfTrainTestlist", error(
        ["pretrain", "--dataset", "ucf101", "--mode", "moco", "--root", str(tmp_path / "ucf"), "--out", str(tmp_path / "c"),
         *TINY]))
    assert "oracle" in error(["pretrain", "--mode", "oracle", "--dataset", "folder", "--root", str(tmp_path),
                              "--out", str(tmp_path / "d")])
    cfg = tmp_path / "bad.toml"
    cfg.write_text('backbone = "small"\nlearning_rate = 1\n')
    err = error(["pretrain", "--config", str(cfg), "--out", str(tmp_path / "e")])
    assert "unknown keys" in err and "learning_rate" in err
    with pytest.raises(ValueError, match="max-steps >= 0"):
        pretrain(PretrainConfig(out=str(tmp_path / "f"), max_steps=-1))


def test_toml_config_and_flags_over_it(tmp_path):
    """configs/*.toml load; a flag given on the command line wins over the file, the file over
    the defaults."""
    from pathlib import Path

    from s2vc.cli import build_parser
    from s2vc.commands.common import parse_command_line
    from s2vc.commands.pretrain import settings
    repo = Path(__file__).resolve().parents[1]
    argv = ["pretrain", "--config", str(repo / "configs" / "recipe" / "ucf101" / "3_pretrain_r3d18.toml"),
            "--out", str(tmp_path), "--lr", "0.01", "--synthetic-bias", "mild"]
    cfg = settings(parse_command_line(build_parser(), argv))
    assert (cfg.dataset, cfg.backbone, cfg.frames, cfg.lr_steps, cfg.amp) == ("ucf101", "r3d_18", 16, (400, 450), True)
    assert cfg.lr == 0.01 and cfg.synthetic.bias == "mild" and cfg.dim == 128 and cfg.out == str(tmp_path)
    assert cfg.size == 112   # the file says crop_size (the flag's name); the field is size
    assert (cfg.flow, cfg.keys) == ("runs/ucf101/flow64.pt", "runs/ucf101/mirror_r3d18")
    for path in sorted((repo / "configs").rglob("*pretrain*.toml")) + [repo / "configs" / "cpu_synthetic.toml"]:
        settings(parse_command_line(build_parser(), ["pretrain", "--config", str(path), "--out", str(tmp_path)])).check()


def test_an_old_checkpoint_resumes(cache, tmp_path):
    """A checkpoint of the command-line code (its config = every flag, the synthetic set as
    synthetic_*, the parsed Namespace's other entries too) resumes; other settings are refused."""
    run = tmp_path / "old"
    args = ["--mode", "moco", "--out", str(run), *TINY]
    assert cli_main(["pretrain", "--max-steps", "2", *args]) == 0
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    old = dict(ckpt["config"], config=None, command="pretrain", argv=["pretrain", "--out", str(run)])
    torch.save({**ckpt, "config": old}, run / "checkpoint.pt")
    assert PretrainConfig.from_dict(old) == PretrainConfig.from_dict(ckpt["config"])
    assert cli_main(["pretrain", "--max-steps", "3", "--resume", *args]) == 0
    assert [h["step"] for h in _history(run)] == [1, 2, 3]
    with pytest.raises(ValueError, match="synthetic_train_per_class 20 -> 3"):
        pretrain(dataclasses.replace(PretrainConfig.from_dict(old), resume=True, max_steps=4,
                                     synthetic=SyntheticSet(train_per_class=3)))


def test_two_process_torchrun_gloo(cache, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           "-m", "s2vc.cli", "pretrain", "--mode", "moco", "--out", str(run), "--max-steps", "2",
           "--device", "cpu", *CLIPS, "--epochs", "1", "--no-progress", "--threads", "1"]
    env = {**os.environ, "S2VC_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and len(ckpt["rng"]) == 2
    assert int(ckpt["model"]["queue_ptr"]) == 16 % 16      # 2 steps x 2 processes x 4 clips, K = 16


def test_detail_is_an_option_of_the_s2vc_generator_only(tmp_path):
    from s2vc.training.pretrain.config import PretrainConfig
    PretrainConfig(out=str(tmp_path), mode="s2vc", detail="dynamic").check()
    with pytest.raises(ValueError, match="detail must be one of"):
        PretrainConfig(out=str(tmp_path), mode="s2vc", detail="blur").check()
    with pytest.raises(ValueError, match="got mode 'moco'"):
        PretrainConfig(out=str(tmp_path), mode="moco", detail="dynamic").check()
    with pytest.raises(ValueError, match="with --keys"):
        PretrainConfig(out=str(tmp_path), mode="s2vc", detail="dynamic", keys=str(tmp_path)).check()
    # a run recorded before the option existed (no "detail" in its config) still resumes as "keep"
    assert PretrainConfig(out=str(tmp_path)).changed_from({"mode": "s2vc"}) == {}
    assert "detail" in PretrainConfig(out=str(tmp_path), detail="dynamic").changed_from({"detail": "keep"})
    # an alpha measured again elsewhere (ablate preserve) that differs in its last digits is the same setting
    assert PretrainConfig(out=str(tmp_path), alpha=0.36000000000000004).changed_from({"alpha": 0.36}) == {}
    assert PretrainConfig(out=str(tmp_path), alpha=0.3600001).changed_from({"alpha": 0.36}) == {}
    assert set(PretrainConfig(out=str(tmp_path), alpha=0.361).changed_from({"alpha": 0.36})) == {"alpha"}
    assert set(PretrainConfig(out=str(tmp_path), keep_fraction=0.3).changed_from({"keep_fraction": 0.2})) \
        == {"keep_fraction"}


@pytest.mark.parametrize("strategy", ["shuffle_clip", "shuffle_frame", "topk"])
def test_every_suppression_strategy_trains(cache, tmp_path, strategy):
    """Every strategy of Table 4 runs in pretraining (topk used to stop at setup: it had no fraction)."""
    import json
    run = tmp_path / strategy
    assert cli_main(["pretrain", "--mode", "s2vc", "--strategy", strategy, "--out", str(run), "--max-steps", "2",
                     *TINY]) == 0
    hist = _history(run)
    assert len(hist) == 2 and all(0 < h["preserved"] < 1 for h in hist)
    recorded = json.loads((run / "config.json").read_text())
    if strategy == "topk":      # the bundled flow's calibrated fraction, kept exactly (up to one latent)
        from s2vc.engine import load_flow
        flow = load_flow(None)
        want = flow.meta["alpha_calibration"]["preserve"]
        d = 3 * flow.config.resolution ** 2
        assert recorded["keep_fraction"] == pytest.approx(want)
        assert all(h["preserved"] == pytest.approx(want, abs=1.0 / d) for h in hist)
    else:
        assert recorded["keep_fraction"] is None


def test_topk_keeps_the_fraction_asked_and_resume_must_match_it(cache, tmp_path):
    run = tmp_path / "topk"
    args = ["--mode", "s2vc", "--strategy", "topk", "--keep-fraction", "0.1", "--out", str(run), *TINY]
    assert cli_main(["pretrain", "--max-steps", "2", *args]) == 0
    assert all(h["preserved"] == pytest.approx(0.1, abs=1e-3) for h in _history(run))
    with pytest.raises(ValueError, match="keep_fraction 0.1 -> 0.3"):
        pretrain(dataclasses.replace(PretrainConfig(out=str(run), mode="s2vc", strategy="topk", keep_fraction=0.3,
                                                    frames=4, size=32, batch_size=4, queue=16, epochs=1,
                                                    no_progress=True, threads=2), resume=True, max_steps=4))


def test_keep_fraction_is_an_option_of_topk_only(tmp_path):
    PretrainConfig(out=str(tmp_path), mode="s2vc", strategy="topk", keep_fraction=0.5).check()
    with pytest.raises(ValueError, match="--keep-fraction"):
        PretrainConfig(out=str(tmp_path), mode="s2vc", strategy="zero", keep_fraction=0.5).check()
    with pytest.raises(ValueError, match="--keep-fraction"):
        PretrainConfig(out=str(tmp_path), mode="s2vc", strategy="topk", keep_fraction=0.0).check()


def _first_batch(run):
    """The first training batch of a run made by ``setup_run`` (epoch 0, as the loop draws it)."""
    run.sampler.set_epoch(0, 0)
    run.ds.set_epoch(0)
    return next(iter(run.loader))


def test_every_mode_starts_from_the_same_state(cache, tmp_path):
    """Issue 21: for one seed every arm has bitwise-equal initial encoders and queue, the same
    first clips and the same augmentations (the query clip equal bit for bit, the key clip too
    before the arm's key is made; the oracle's key is masked after the same crop), and the
    global streams stand at the same place after setup, whatever the arm loaded."""
    from s2vc.training.pretrain.loop import setup_run
    starts = {}
    for mode in ("moco", "s2vc", "tfd", "oracle", "be", "fame"):
        cfg = PretrainConfig(out=str(tmp_path / mode), mode=mode, frames=4, stride=2, size=32, batch_size=4,
                             queue=16, max_steps=1, no_progress=True, threads=2, seed=3)
        run = setup_run(cfg)
        state = {k: v.clone() for k, v in run.moco.state_dict().items()}
        rng = torch.get_rng_state()
        batch = _first_batch(run)
        starts[mode] = (state, rng, batch)
        run.writer.close()
    state0, rng0, batch0 = starts["moco"]
    assert any(k.startswith("encoder_q.") for k in state0) and "queue" in state0
    for mode, (state, rng, batch) in starts.items():
        assert state.keys() == state0.keys()
        assert all(torch.equal(state[k], state0[k]) for k in state0), mode
        assert torch.equal(rng, rng0), mode
        for key in ("index", "label", "start_q", "start_k", "q"):
            assert torch.equal(batch[key], batch0[key]), (mode, key)
        if mode != "oracle":
            assert torch.equal(batch["k"], batch0["k"]), mode
    other_seed = setup_run(PretrainConfig(out=str(tmp_path / "seed4"), mode="moco", frames=4, stride=2, size=32,
                                          batch_size=4, queue=16, max_steps=1, no_progress=True, seed=4))
    other_seed.writer.close()
    assert not torch.equal(other_seed.moco.state_dict()["queue"], state0["queue"])


def test_max_steps_zero_writes_the_shared_initial_checkpoint(cache, tmp_path, capsys):
    """`s2vc pretrain --max-steps 0` writes the initial state: identical encoder_q / encoder_k /
    queue for moco, s2vc and tfd with one seed, and no step taken; s2vc also with a flow of its
    own of another architecture (as a fitted flow is: building it draws other random numbers),
    calibrated at this clip (no note), where the bundled flow (calibrated on consecutive frames)
    gets the one-line note that its alpha keeps another share of these stride-2 clips."""
    from conftest import randomize_
    from s2vc.engine import AdvFlow, FlowConfig
    from s2vc.engine.checkpoint import save_flow
    own = tmp_path / "own_flow.pt"
    save_flow(randomize_(AdvFlow(FlowConfig(resolution=8, high_blocks=2, low_blocks=2, fc_blocks=2, hidden=8,
                                            fc_hidden=8)), std=0.05, seed=4),
              own, meta={"alpha": 0.3, "alpha_calibration": {"preserve": 0.227}, "alpha_frames": 4,
                         "alpha_stride": 2})
    models, notes = {}, {}
    for mode, extra in (("moco", []), ("s2vc", []), ("tfd", []), ("s2vc-own", ["--flow", str(own)])):
        run = tmp_path / mode
        capsys.readouterr()
        assert cli_main(["pretrain", "--mode", mode.removesuffix("-own"), "--out", str(run), "--max-steps", "0",
                         *TINY, *extra]) == 0
        notes[mode] = "so it keeps another share" in capsys.readouterr().err
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        assert ckpt["step"] == 0 and ckpt["history"] == []
        models[mode] = ckpt["model"]
    for mode in ("s2vc", "tfd", "s2vc-own"):
        assert all(torch.equal(v, models["moco"][k]) for k, v in models[mode].items()), mode
    assert notes == {"moco": False, "s2vc": True, "tfd": False, "s2vc-own": False}


def test_an_arm_on_a_mirrors_keys_starts_like_moco(tmp_path, monkeypatch):
    """The *-keys arms (s2vc and tfd read from a mirror) start as moco does for the same seed:
    the same weights and queue, the same clips and query augmentation."""
    from s2vc.training.pretrain.loop import setup_run
    from s2vc.training.pretrain.mirror import MirrorConfig, generate_mirror
    monkeypatch.setenv("S2VC_CACHE", str(tmp_path / "cache"))
    small = SyntheticSet(classes=2, train_per_class=4, test_per_class=1, frames=12, size=32)
    common = dict(frames=4, stride=2, size=32, batch_size=4, queue=8, max_steps=1, no_progress=True, seed=5,
                  synthetic=small, decode_size=None)
    starts = {}
    for arm in ("moco", "s2vc-keys", "tfd-keys"):
        mode, keys = arm.removesuffix("-keys"), None
        if arm.endswith("-keys"):
            keys = str(tmp_path / f"mirror_{mode}")
            generate_mirror(MirrorConfig(dataset="synthetic", out=keys, synthetic=small, frames=4, stride=2,
                                         decode_size=None, method=mode, progress=False))
        run = setup_run(PretrainConfig(out=str(tmp_path / arm), mode=mode, keys=keys, **common))
        starts[arm] = ({k: v.clone() for k, v in run.moco.state_dict().items()}, torch.get_rng_state(),
                       _first_batch(run))
        run.writer.close()
    state0, rng0, batch0 = starts["moco"]
    for arm, (state, rng, batch) in starts.items():
        assert all(torch.equal(state[k], state0[k]) for k in state0), arm
        assert torch.equal(rng, rng0), arm
        for key in ("index", "start_q", "start_k", "q"):
            assert torch.equal(batch[key], batch0[key]), (arm, key)
