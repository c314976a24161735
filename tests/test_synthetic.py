"""The synthetic static-bias set: determinism, cache, class design, bias, masks, reading back.

Statistics on the design (mirror images, speeds, bias) use ``sample_specs`` and ``render_video``
at the default parameters without encoding; what touches files builds a small set once per module.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s2vc.engine.video_io import read_video
from s2vc.training.data import synthetic as syn
from s2vc.training.data import synthetic_render
from s2vc.training.data.datasets import build_dataset

SMALL_SET = syn.SyntheticSet(seed=1, classes=len(syn.CLASS_NAMES), train_per_class=2, test_per_class=1,
                             frames=20, size=64)
SMALL = SMALL_SET.kwargs()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return syn.make_static_bias_set(tmp_path_factory.mktemp("syn") / "set", **SMALL)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# files


def test_layout_and_params(small_set):
    params = json.loads((small_set / "params.json").read_text())
    assert params["codec"] in ("libx264", "mpeg4") and params["bias"] == "strong"
    lists = small_set / "ucfTrainTestlist"
    assert (lists / "classInd.txt").read_text().splitlines()[:2] == ["1 MoveUp", "2 MoveDown"]
    train = (lists / "trainlist01.txt").read_text().splitlines()
    test = (lists / "testlist01.txt").read_text().splitlines()
    assert len(train) == 2 * len(syn.CLASS_NAMES) and len(test) == len(syn.CLASS_NAMES)
    assert train[0] == "MoveUp/v_MoveUp_g02_c01.mp4 1" and test[0] == "MoveUp/v_MoveUp_g01_c01.mp4"
    assert (small_set / "UCF-101" / "MoveUp" / "v_MoveUp_g02_c01.mp4").is_file()
    assert not list(small_set.parent.glob(".*"))  # no temp folder left behind


def test_deterministic_and_cached(small_set, tmp_path):
    # another process: libx264's default rate control wrote different bytes from process to process
    code = f"from s2vc.training.data.synthetic import make_static_bias_set as m; m({str(tmp_path / 'again')!r}, **{SMALL!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    again = tmp_path / "again"
    first, second = _tree(small_set), _tree(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []  # byte-identical videos, masks, labels
    other = syn.make_static_bias_set(tmp_path / "other", **{**SMALL, "seed": 2})
    assert _tree(other)["ucfTrainTestlist/looks.csv"] != first["ucfTrainTestlist/looks.csv"]
    # reuse: same parameters leave the files alone; other parameters replace the set
    stamp = (again / "params.json").stat().st_mtime_ns
    assert syn.make_static_bias_set(again, **SMALL) == again
    assert (again / "params.json").stat().st_mtime_ns == stamp
    syn.make_static_bias_set(again, **{**SMALL, "classes": 2, "bias": "mild"})
    assert json.loads((again / "params.json").read_text())["classes"] == 2
    assert sorted(p.name for p in (again / "UCF-101").iterdir()) == ["MoveDown", "MoveUp"]
    assert not list(tmp_path.glob(".*"))


def test_one_set_of_defaults():
    # the functions that take a set's parameters default to SyntheticSet's defaults
    defaults = syn.SyntheticSet().kwargs()
    assert defaults["test_per_class"] == 30 and defaults["train_per_class"] == 20
    for fn in (syn.sample_specs, syn.cache_name, syn.make_static_bias_set):
        params = inspect.signature(fn).parameters
        assert {k: params[k].default for k in defaults} == defaults, fn.__name__


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="params.json"):
        syn.make_static_bias_set(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_read_back_through_build_dataset(small_set, tmp_path):
    looks = syn.load_looks(small_set)
    for split, count in (("train", 2), ("test", 1)):
        ds = build_dataset("synthetic", small_set, split, size=None, synthetic=SMALL_SET,
                           frames=16, stride=1)
        assert ds.classes == list(syn.CLASS_NAMES) and len(ds) == count * len(syn.CLASS_NAMES)
        for r in ds.records:
            assert looks[r.video_id]["label"] == r.label and looks[r.video_id]["split"] == split
        item = ds[len(ds) - 1]
        assert item["q"].shape == (3, 16, 64, 64) and item["label"] == len(syn.CLASS_NAMES) - 1
    # no root: built once in the cache, one folder per parameter set
    two_classes = dataclasses.replace(SMALL_SET, classes=2)
    ds = build_dataset("synthetic", cache_dir=tmp_path, synthetic=two_classes, size=32, frames=8)
    assert ds.records[0].path.is_relative_to(tmp_path / "synthetic" / syn.cache_name(**two_classes.kwargs()))
    assert ds[0]["q"].shape == (3, 8, 32, 32)


# --------------------------------------------------------------------------------------------
# class design


def _descriptor(centre: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Trajectory statistics of one video: mean vx, mean vy, mean |vx|, mean |vy|, mean |dr|,
    rate of vx and vy sign changes, mean signed turn (cross product of unit steps; > 0 =
    clockwise on screen since y points down). Horizontal flip negates vx and the turn."""
    v = np.diff(centre, axis=0)
    vx, vy = v[:, 0], v[:, 1]
    dr = np.abs(np.diff(radius))

    def flips(a):
        s = np.sign(a[np.abs(a) > 1e-6])
        return float(np.mean(s[1:] != s[:-1])) if len(s) > 1 else 0.0

    u = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    turn = u[:-1, 0] * u[1:, 1] - u[:-1, 1] * u[1:, 0]
    return np.array([vx.mean(), vy.mean(), np.abs(vx).mean(), np.abs(vy).mean(), dr.mean(),
                     flips(vx), flips(vy), turn.mean()])


FLIP = np.array([-1, 1, 1, 1, 1, 1, 1, -1])  # how each statistic changes under horizontal flip


def _mirror_pairs(stats: dict[str, np.ndarray], margin: float = 0.05) -> list[tuple[str, str]]:
    """Class pairs (A, B) where horizontally flipped A cannot be told from B by any single
    statistic: their ranges overlap (within ``margin``) in every one of them."""
    pairs = []
    for a, sa in stats.items():
        flipped = sa * FLIP
        for b, sb in stats.items():
            if a != b and not any(flipped[:, j].min() > sb[:, j].max() + margin
                                  or flipped[:, j].max() < sb[:, j].min() - margin
                                  for j in range(sa.shape[1])):
                pairs.append((a, b))
    return pairs


def _stats_by_class(specs) -> dict[str, np.ndarray]:
    out: dict[str, list] = {}
    for sp in specs:
        out.setdefault(sp.class_name, []).append(_descriptor(sp.centre, sp.radius))
    return {k: np.array(v) for k, v in out.items()}


def test_no_class_is_the_mirror_image_of_another():
    specs = syn.sample_specs(classes=len(syn.CLASS_NAMES), train_per_class=30, test_per_class=10)
    stats = _stats_by_class(specs)
    assert _mirror_pairs(stats) == []
    # the check does catch a mirror pair: add clockwise orbits (the orbit's mirror image)
    cw = [_descriptor(np.c_[63 - sp.centre[:, 0], sp.centre[:, 1]], sp.radius)
          for sp in specs if sp.class_name == "Orbit"]
    assert ("Orbit", "OrbitClockwise") in _mirror_pairs({**stats, "OrbitClockwise": np.array(cw)})


def test_shapes_are_flip_symmetric():
    for shape in syn.SHAPES:
        m = synthetic_render.shape_mask(shape, 31.5, 30.2, 9.0, 64)  # x centre on the flip axis
        assert m.any() and (m == m[:, ::-1]).all(), shape


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Hausdorff distance in pixels between two non-empty masks (bool (H, W))."""
    def directed(p, q):
        outside = np.argwhere(p & ~q)
        if len(outside) == 0:
            return 0.0
        inner = q.copy()
        inner[1:-1, 1:-1] &= q[:-2, 1:-1] & q[2:, 1:-1] & q[1:-1, :-2] & q[1:-1, 2:]
        edge = np.argwhere(q & ~inner)
        d = np.sqrt(((outside[:, None, :] - edge[None, :, :]) ** 2).sum(-1))
        return float(d.min(1).max())
    return max(directed(a, b), directed(b, a))


def test_actor_moves_at_least_a_pixel_per_frame_at_64():
    specs = syn.sample_specs(classes=len(syn.CLASS_NAMES), train_per_class=2, test_per_class=1)
    for sp in specs:  # from the tracks: centre steps (or size steps for Pulse), every frame
        step = np.maximum(np.linalg.norm(np.diff(sp.centre, axis=0), axis=1), np.abs(np.diff(sp.radius)))
        assert step.min() >= 1.5, (sp.video_id, step.min())
    for sp in specs[:: 3]:  # on the rendered masks: how far the silhouette moves per frame
        _, masks = syn.render_video(sp, 64)
        moves = [_hausdorff(masks[t], masks[t + 1]) for t in range(0, 31)]
        assert min(moves) >= 1.0 and np.median(moves) >= 1.5, (sp.video_id, min(moves), np.median(moves))


def _scene_accuracy(specs, fit_split: str, eval_split: str) -> float:
    """Accuracy of predicting the class from the scene label alone, the scene->class table
    fitted (majority vote) on ``fit_split``."""
    votes: dict[str, np.ndarray] = {}
    for sp in specs:
        if sp.split == fit_split:
            votes.setdefault(sp.scene, np.zeros(len(syn.CLASS_NAMES)))[sp.label] += 1
    rows = [sp for sp in specs if sp.split == eval_split]
    return float(np.mean([sp.scene in votes and votes[sp.scene].argmax() == sp.label for sp in rows]))


def test_looks_tied_to_class_in_train_only():
    strong = syn.sample_specs(train_per_class=20, test_per_class=50)
    assert _scene_accuracy(strong, "train", "train") == 1.0
    assert all(sp.tied and (sp.scene, sp.shape, sp.colour) == (syn.SCENES[sp.label], syn.SHAPES[sp.label],
               list(syn.COLOURS)[sp.label]) for sp in strong if sp.split == "train")
    assert _scene_accuracy(strong, "train", "test") < 0.3           # chance is 1/6
    assert not any(sp.tied for sp in strong if sp.split == "test")
    mild = syn.sample_specs(train_per_class=50, test_per_class=10, bias="mild")
    assert 0.45 < _scene_accuracy(mild, "train", "train") < 0.75    # 1/2 + 1/2 * 1/6 expected
    none = syn.sample_specs(train_per_class=50, test_per_class=10, bias="none")
    assert not any(sp.tied for sp in none)
    with pytest.raises(ValueError, match="bias"):
        syn.sample_specs(bias="extreme")


def test_motion_does_not_depend_on_bias():
    a, b = (syn.sample_specs(bias=bias, test_per_class=10) for bias in ("strong", "mild"))
    assert all(np.array_equal(x.centre, y.centre) and np.array_equal(x.radius, y.radius) for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------
# masks


def test_masks_align_with_the_actor(small_set):
    looks = syn.load_looks(small_set)
    assert set(looks[next(iter(looks))]) >= {"scene", "shape", "colour", "split"}
    specs = {sp.video_id: sp for sp in syn.sample_specs(**SMALL)}
    for vid, look in list(looks.items())[::2]:
        mask = syn.load_mask(small_set, vid)
        assert mask.dtype == bool and mask.shape == (SMALL["frames"], 64, 64)
        assert mask.sum(axis=(1, 2)).min() > 0
        colour = np.array(syn.COLOURS[look["colour"]])
        rendered, rendered_mask = syn.render_video(specs[vid], 64)
        assert np.array_equal(rendered_mask, mask)
        assert (rendered[mask] == colour).all()                        # exactly the actor colour
        assert (rendered[~mask] != colour).any(axis=-1).mean() > 0.99   # and (nearly) nowhere else
        decoded = read_video(small_set / "UCF-101" / look["class"] / f"{vid}.mp4").numpy().astype(int)
        inner = mask.copy()                                           # away from chroma-subsampled edges
        inner[:, 1:-1, 1:-1] &= mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:]
        if inner.any():
            assert np.median(np.abs(decoded[inner] - colour)) <= 12, vid
        centre, radius = syn.load_track(small_set, vid)
        assert centre.shape == (SMALL["frames"], 2) and radius.shape == (SMALL["frames"],)
        ys, xs = np.nonzero(mask[0])
        if look["shape"] not in ("triangle", "star") and 8 < centre[0, 0] < 56 and 8 < centre[0, 1] < 56:
            assert abs(xs.mean() - centre[0, 0]) < 1.0 and abs(ys.mean() - centre[0, 1]) < 1.0, vid


# the frames and masks of sample_specs(seed=0, classes=8, train_per_class=1, test_per_class=1, frames=6,
# size=32) rendered by the renderer as it was before cameras existed (commit d04a66d)
STILL_RENDER_SHA256 = "ce3fcf38ce495008094f23d381e5909042cf508fce184c594c13b9ef089d777c"


def test_a_still_set_renders_byte_for_byte_as_before_cameras():
    import hashlib
    specs = syn.sample_specs(seed=0, classes=8, train_per_class=1, test_per_class=1, frames=6, size=32)
    digest = hashlib.sha256()
    for spec in specs:
        assert spec.camera == "still"
        frames, masks = synthetic_render.render_video(spec, 32)
        digest.update(frames.tobytes())
        digest.update(masks.tobytes())
    assert digest.hexdigest() == STILL_RENDER_SHA256
    # a still set without a validation split keeps its name, parameters and record
    still = syn.SyntheticSet()
    assert "camera" not in still.kwargs() and "val_per_class" not in still.kwargs()
    assert syn.cache_name(**still.kwargs()) == "static_bias_s0_c6_20x30_t32_r64_strong"
    assert syn.cache_name(**syn.SyntheticSet(camera="pan", val_per_class=5).kwargs()) == \
        "static_bias_s0_c6_20x30_t32_r64_strong_campan_val5"


def _background_motion(spec, size=64):
    """Mean absolute frame-to-frame change of the pixels that are background in both frames."""
    frames, masks = synthetic_render.render_video(spec, size)
    f = frames.astype(np.float64)
    keep = ~(masks[1:] | masks[:-1])
    return np.abs(f[1:] - f[:-1])[keep].mean()


@pytest.mark.parametrize("camera", ["shake", "pan"])
def test_a_moving_camera_moves_the_background_and_not_the_actor(camera):
    still = syn.sample_specs(seed=2, classes=3, train_per_class=1, test_per_class=1, frames=12)
    moving = syn.sample_specs(seed=2, classes=3, train_per_class=1, test_per_class=1, frames=12, camera=camera)
    for a, b in zip(still, moving):
        assert b.camera == camera and a.video_id == b.video_id and (a.scene, a.shape, a.colour) == (b.scene, b.shape, b.colour)
        assert np.array_equal(a.centre, b.centre)                  # the actor's track (the class) is the still one's
        assert _background_motion(a) == 0.0                         # a still scene does not move
        assert _background_motion(b) > 1.0, b.video_id              # the camera moves it
        fa, ma = synthetic_render.render_video(a, 64)
        fb, mb = synthetic_render.render_video(b, 64)
        assert np.array_equal(ma, mb) and np.array_equal(fa[ma], fb[mb])   # the actor is drawn alike
    offsets, canvas = synthetic_render.camera_offsets(camera, np.random.default_rng(0), 32, 64)
    steps = np.abs(np.diff(offsets, axis=0))
    if camera == "pan":      # a slow drift across a scene larger than the frame
        assert canvas > 64 + 10 and np.allclose(steps.max(1), steps.max(1)[0]) and 0.3 < np.hypot(*steps[0]) <= 1.0
    else:                    # a few pixels of jitter
        assert offsets.max() - offsets.min() <= 4 and steps.max() >= 1
    with pytest.raises(ValueError, match="camera"):
        syn.sample_specs(camera="zoom")


def test_pan_set_renders_and_its_validation_split_is_disjoint_from_train(tmp_path):
    from s2vc.training.data.datasets import split_records
    kw = syn.SyntheticSet(seed=3, classes=2, train_per_class=2, test_per_class=1, frames=8, size=32,
                          camera="pan", val_per_class=2).kwargs()
    root = syn.make_static_bias_set(tmp_path / "pan", **kw)
    assert json.loads((root / "params.json").read_text())["camera"] == "pan"
    train, val, test = (split_records("synthetic", root, s) for s in ("train", "val", "test"))
    assert len(train) == 4 and len(val) == 4 and len(test) == 2
    names = [{r.path for r in split} for split in (train, val, test)]
    assert not names[0] & names[1] and not names[1] & names[2] and not names[0] & names[2]
    assert all(r.path.is_file() for r in val) and sorted(r.label for r in val) == [0, 0, 1, 1]
    looks = syn.load_looks(root)
    assert all(looks[r.path.stem]["split"] == "val" and not looks[r.path.stem]["tied"] for r in val)
    frames = read_video(val[0].path).numpy()
    background = ~syn.load_mask(root, val[0].path.stem)
    moved = np.abs(frames[1].astype(int) - frames[0].astype(int)).sum(-1)[background[0] & background[1]]
    assert moved.mean() > 1.0                                       # the pan moves the decoded background too
    # a set without a validation split says so in one line, naming the file it expected
    still = syn.make_static_bias_set(tmp_path / "still", **syn.SyntheticSet(classes=2, train_per_class=1,
                                                                             test_per_class=1, frames=8, size=32).kwargs())
    with pytest.raises(ValueError, match="vallist01.txt"):
        split_records("synthetic", still, "val")
