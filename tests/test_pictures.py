"""The pictures the commands leave where people look: the retrieval grid beside ``eval retrieval
--out``'s JSON, a pretraining run's ``curves.png`` and its query/key clips in TensorBoard, the
reproduction's ``keys.png`` (redrawn when the arms change) and ``calibrate``'s plot of α against
the fraction kept. Each is checked to be a PNG that decodes, and what it is drawn from is checked
against the computation it pictures."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from s2vc.cli import main as cli_main
from s2vc.training.data.synthetic import SyntheticSet, make_static_bias_set

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_SET = SyntheticSet(train_per_class=2, test_per_class=2, classes=3, frames=8, size=32)


def assert_png(path, min_size=(100, 100)) -> tuple[int, int]:
    """``path`` is a complete PNG that decodes, at least ``min_size`` (w, h); returns its size."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(io.BytesIO(data)) as im:
        im.load()                                   # decodes every row: a truncated file fails here
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1], im.size
        return im.size


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The synthetic sets of this module are built in a cache of their own."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cache")
    mp.setenv("S2VC_CACHE", str(path))
    yield path
    mp.undo()


# -- eval retrieval: the grid beside the JSON ---------------------------------------------------

def test_nearest_neighbours_are_those_retrieval_recall_counts():
    from s2vc.training.evaluation.metrics import retrieval_recall
    from s2vc.training.evaluation.retrieval_grid import nearest_neighbours
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(13, 7, generator=g), torch.randn(29, 7, generator=g) + 3.0     # offset: centring matters
    q_y, g_y = torch.randint(0, 4, (13,), generator=g), torch.randint(0, 4, (29,), generator=g)
    nn_idx = nearest_neighbours(q, gal, 5)
    assert nn_idx.shape == (13, 5)
    hit = (g_y[nn_idx] == q_y[:, None]).cumsum(1) > 0
    recall = retrieval_recall(q, q_y, gal, g_y, (1, 5))
    assert hit[:, 0].double().mean().item() == pytest.approx(recall["R@1"])
    assert hit[:, 4].double().mean().item() == pytest.approx(recall["R@5"])
    # a query equal to a gallery item finds it first
    assert nearest_neighbours(gal[[3, 17]], gal, 2)[:, 0].tolist() == [3, 17]
    assert nearest_neighbours(q, gal[:3], 5).shape == (13, 3)                          # fewer than k items


def test_grid_queries_spread_over_the_test_set():
    from s2vc.training.evaluation.retrieval_grid import grid_queries
    assert grid_queries(4) == [0, 1, 2, 3]
    rows = grid_queries(60, 6)
    assert rows[0] == 0 and rows[-1] == 59 and len(set(rows)) == 6 and rows == sorted(rows)


def test_eval_retrieval_out_writes_the_grid_beside_the_json(tmp_path, capsys):
    root = tmp_path / "set"
    make_static_bias_set(root, train_per_class=2, test_per_class=2, classes=3, frames=8, size=32)
    out = tmp_path / "res" / "ret.json"
    assert cli_main(["eval", "retrieval", "--backbone", "small", "--dataset", "synthetic", "--root", str(root),
                     "--frames", "4", "--stride", "1", "--crop-size", "32", "--decode-size", "32", "--num-clips", "1",
                     "--batch-size", "8", "--workers", "0", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["query_videos"] == 6
    grid = tmp_path / "res" / "ret_grid.png"
    w, h = assert_png(grid)
    assert w >= 6 * 100 and h >= 6 * 100              # 6 columns (query + top-5) by 6 rows (queries)
    assert not [p for p in grid.parent.iterdir() if p.name.endswith(".tmp")]


def test_grid_refuses_features_without_their_videos(tmp_path):
    from s2vc.training.evaluation.retrieval_grid import write_retrieval_grid
    with pytest.raises(ValueError, match="one video per feature row: 1 videos for 2 queries"):
        write_retrieval_grid(tmp_path / "g.png", torch.zeros(2, 3), torch.zeros(2), [tmp_path / "a.mp4"],
                             torch.zeros(2, 3), torch.zeros(2), [tmp_path / "b.mp4"] * 2, ["a"])


# -- pretrain: curves.png and the query/key clips in TensorBoard ---------------------------------

def test_run_curves_from_history_and_scored_snapshots(tmp_path):
    from s2vc.training.pretrain.curves import snapshot_scores, write_run_curves
    run = tmp_path / "run"
    (run / "eval" / "val").mkdir(parents=True)
    for step, r1 in ((0, 0.1), (20, 0.25), (10, 0.2)):
        (run / "eval" / f"step_{step:06d}.json").write_text(json.dumps({"R@1": r1, "linear": 0.3, "scorer": 4}))
    (run / "eval" / "val" / "step_000010.json").write_text(json.dumps({"R@1": 0.9}))    # another split: not drawn
    (run / "eval" / "step_000030.json").write_text("{broken")                            # unreadable: skipped
    scores = snapshot_scores(run)
    assert scores == {"R@1": [(0, 0.1), (10, 0.2), (20, 0.25)], "linear": [(0, 0.3), (10, 0.3), (20, 0.3)]}
    history = [{"step": s, "loss": 5.0 - 0.1 * s} for s in range(1, 21)]
    assert_png(write_run_curves(run, history))
    tall = Image.open(run / "curves.png").size[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_png(write_run_curves(empty, []))          # a run with nothing yet still gets its picture
    assert Image.open(empty / "curves.png").size[1] < tall                        # one panel: no scores


def test_clip_pair_gif_shows_query_and_key_side_by_side():
    from s2vc.training.pretrain.video_log import clip_pair_gif
    q = torch.zeros(3, 5, 16, 12)
    k = torch.ones(3, 5, 16, 12) * 1.5                   # a key overshooting [0, 1] is clipped for display
    q[:, :, 0, 0] = k[:, :, 0, 0] = torch.arange(5).div(10)     # frames that differ (GIF merges equal ones)
    gif, h, w = clip_pair_gif(q, k)
    with Image.open(io.BytesIO(gif)) as im:
        assert im.format == "GIF" and im.n_frames == 5 and im.size == (w, h) == (26, 16)
        frame = np.asarray(im.convert("RGB"))
        assert frame[1:, :12].max() == 0 and frame[1:, 14:].min() == 255
    with pytest.raises(ValueError, match="same shape"):
        clip_pair_gif(q, k[:, :4])


def test_pretrain_writes_curves_and_logs_query_key_clips(cache, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from s2vc.training.pretrain.loop import PretrainConfig, pretrain
    run = tmp_path / "run"
    cfg = PretrainConfig(out=str(run), mode="tfd", frames=4, stride=2, size=32, batch_size=2, queue=8, max_steps=4,
                         epochs=3, no_progress=True, threads=2, synthetic=TINY_SET, log_videos=2, device="cpu")
    pretrain(cfg)
    assert_png(run / "curves.png")
    events = EventAccumulator(str(run / "logs"), size_guidance={"images": 0}).Reload()
    images = events.Images("train/query_key")
    assert [e.step for e in images] == [2, 4]
    with Image.open(io.BytesIO(images[0].encoded_image_string)) as im:
        assert im.format == "GIF" and im.n_frames == 4 and im.size == (2 * 32 + 2, 32)
    with pytest.raises(ValueError, match="--log-videos must be >= 0"):
        PretrainConfig(out=str(run), log_videos=-1).check()


# -- reproduce: keys.png redrawn when the arms change --------------------------------------------

def test_key_sheet_is_redrawn_when_the_arms_change(cache, tmp_path):
    from s2vc.training.experiments.key_sheet import draw_key_sheet, sheet_record_path
    from s2vc.training.experiments.runner import VARIANTS
    path = tmp_path / "keys.png"
    common = dict(synthetic=TINY_SET, frames=4, stride=2, variants=VARIANTS)
    assert draw_key_sheet(path, ["moco", "tfd"], **common)
    _, h2 = assert_png(path, (32, 32))
    assert json.loads(sheet_record_path(path).read_text()) == ["moco", "tfd"]
    mtime = path.stat().st_mtime_ns
    assert not draw_key_sheet(path, ["moco", "tfd"], **common) and path.stat().st_mtime_ns == mtime
    # an arm added later is drawn, a variant with its own key as a row of its own, a mirror's
    # arm ("tfd-keys") with its mode's key (no extra row)
    assert draw_key_sheet(path, ["moco", "tfd", "tfd-keys", "s2vc", "s2vc-dynamic"], **common)
    _, h4 = assert_png(path, (32, 32))
    row = (h2 // 2) // 2                             # 2 videos x (clip + tfd) rows before
    assert h4 == 2 * 4 * row                         # 2 videos x (clip, tfd, s2vc, s2vc-dynamic)
    assert json.loads(sheet_record_path(path).read_text()) == ["moco", "tfd", "tfd-keys", "s2vc", "s2vc-dynamic"]


# -- calibrate: alpha against the fraction kept --------------------------------------------------

def test_calibrate_plots_alpha_against_the_fraction_kept(tmp_path, capsys, monkeypatch):
    import shutil

    from s2vc.engine import video_io
    from s2vc.engine.checkpoint import default_checkpoint_path
    frames = np.full((20, 40, 56, 3), 60, np.uint8)
    for i in range(20):
        frames[i, 10:22, 2 * i:2 * i + 12] = (230, 200, 30)
    video = video_io.write_video(tmp_path / "m.mp4", frames, fps=10) or tmp_path / "m.mp4"
    monkeypatch.chdir(tmp_path)
    args = ["calibrate", str(video), "--frames", "8", "--stride", "1", "--decode-size", "40", "--alphas", "0.3", "0.7"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert_png(tmp_path / "alpha_calibration.png")
    rows = [line.split()[0] for line in out.splitlines()[2:4]]
    assert rows == ["0.3", "0.7"] and "alpha = " in out.splitlines()[4]      # only the asked rows are printed
    assert f"plot: alpha_calibration.png" in out
    ckpt = tmp_path / "f.pt"
    shutil.copy(default_checkpoint_path(), ckpt)
    assert cli_main([*args, "--flow", str(ckpt), "--write"]) == 0
    assert_png(tmp_path / "f.alpha.png")
    assert cli_main([*args, "--plot", str(tmp_path / "p" / "x.png")]) == 1    # a folder that is not there
    assert "x.png" in capsys.readouterr().err


def test_scoring_a_runs_snapshots_redraws_its_curves(tmp_path):
    """The reproduction scores snapshots after pretraining: the run's curves.png is redrawn with
    the scores (and left alone when every score was cached already)."""
    from s2vc.training.experiments import scoring
    from s2vc.training.pretrain.curves import snapshot_scores

    class Scorer:                       # stands in for the evaluator: scores from cached features
        kwargs: dict = {}

        def __call__(self):
            return self

        def score(self, train_f, test_f):
            return {"R@1": float(train_f.sum() + test_f.sum())}

        def score_frame_difference(self):
            return {"R@1": 0.5}

        def chance(self):
            return {"R@1": 0.1}

    run = tmp_path / "run"
    for step in (0, 10):
        (run / "snapshots").mkdir(parents=True, exist_ok=True)
        (run / "snapshots" / f"step_{step:06d}.pt").write_bytes(b"")
        (run / "eval").mkdir(exist_ok=True)
        torch.save({"train": torch.full((1,), step / 100), "test": torch.zeros(1)},
                   run / "eval" / f"step_{step:06d}.features.pt")
    rows, _ = scoring.evaluate_runs({"a": run}, Scorer(), 10, tmp_path, progress=False)
    assert [r["R@1"] for r in rows["a"]] == pytest.approx([0.0, 0.1])
    assert_png(run / "curves.png")
    assert snapshot_scores(run) == {"R@1": [(0, 0.0), (10, pytest.approx(0.1))]}
    (run / "curves.png").unlink()
    scoring.evaluate_runs({"a": run}, Scorer(), 10, tmp_path, progress=False)       # all cached: not redrawn
    assert not (run / "curves.png").exists()
