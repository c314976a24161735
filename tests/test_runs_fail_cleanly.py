"""Issue 23's review: `--eval-only` on reproduce/ablate trains nothing, the set's fitted flow
included (a flow not cached yet is one line saying what to run first); a pretrain run that fails
before writing anything leaves no empty --out folder."""
from __future__ import annotations

import pytest

from s2vc.cli import main as cli_main


# -- F: --eval-only fits no flow ---------------------------------------------------------------

@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """The set's fitted flow is cached at ``tmp_path/cache/flow_fitted.pt`` (not there yet) and
    fitting one fails the test."""
    from s2vc.training.flow import fitted

    cached = tmp_path / "cache" / "flow_fitted.pt"
    monkeypatch.setattr(fitted, "fitted_flow_path", lambda synthetic=None, **kw: cached)

    def fit(*args, **kwargs):
        raise AssertionError("--eval-only fitted a flow")

    monkeypatch.setattr(fitted, "fitted_flow_for", fit)
    return cached


@pytest.mark.parametrize("command", [["reproduce", "--arms", "moco", "s2vc"], ["ablate", "alpha", "--values", "0.5"]])
def test_eval_only_stops_when_the_fitted_flow_is_missing(no_training, tmp_path, capsys, command):
    out = tmp_path / "exp"
    assert cli_main([*command, "--out", str(out), "--eval-only", "--seeds", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--eval-only trains nothing" in err[0], err
    assert str(no_training) in err[0] and "without --eval-only first" in err[0] and "--flow" in err[0]
    assert not out.exists()


def test_eval_only_uses_a_cached_fitted_flow(no_training):
    from s2vc.training.experiments.runner import ReproduceConfig, experiment_flow

    no_training.parent.mkdir(parents=True)
    no_training.write_bytes(b"cached")
    assert experiment_flow(ReproduceConfig(out="x", eval_only=True)) == str(no_training)
    # a named flow needs no fitted one, with or without --eval-only
    assert experiment_flow(ReproduceConfig(out="x", eval_only=True, flow="bundled")) is None
    assert experiment_flow(ReproduceConfig(out="x", eval_only=True, flow="f.pt")) == "f.pt"


# -- G: a failed pretrain leaves no empty folder -------------------------------------------------

PRETRAIN = ["pretrain", "--dataset", "synthetic", "--backbone", "small", "--max-steps", "1", "--batch-size", "2",
            "--queue", "4", "--frames", "4", "--no-progress"]


def test_pretrain_with_a_missing_flow_makes_no_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "r1"
    assert cli_main([*PRETRAIN, "--flow", str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "flow checkpoint not found" in err and "missing.pt" in err, err
    assert not (tmp_path / "runs").exists()
    assert cli_main([*PRETRAIN, "--mode", "tfd", "--keys", str(tmp_path / "nomirror"), "--out", str(out)]) == 1
    assert "nomirror: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_setup_failure_removes_the_folder_it_made(tmp_path, monkeypatch):
    from s2vc.training.pretrain import loop
    from s2vc.training.pretrain.config import PretrainConfig

    def fail(*args, **kwargs):
        raise ValueError("the data could not be read")

    monkeypatch.setattr(loop, "build_data", fail)
    made = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError, match="could not be read"):
        loop.pretrain(PretrainConfig(out=str(made), dataset="synthetic", mode="moco", backbone="small",
                                     batch_size=2, queue=4, frames=4, max_steps=1, no_progress=True))
    assert not (tmp_path / "a").exists()                      # every folder the run made, none other
    assert tmp_path.exists()
    # a folder that was there before stays, with what it held
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ValueError):
        loop.pretrain(PretrainConfig(out=str(kept / "run"), dataset="synthetic", mode="moco", backbone="small",
                                     batch_size=2, queue=4, frames=4, max_steps=1, no_progress=True))
    assert (kept / "notes.txt").read_text() == "mine" and not (kept / "run").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ValueError):
        loop.pretrain(PretrainConfig(out=str(existing), dataset="synthetic", mode="moco", backbone="small",
                                     batch_size=2, queue=4, frames=4, max_steps=1, no_progress=True))
    assert existing.is_dir()                                   # not made by the run: left as it was
