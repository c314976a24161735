"""The built-in synthetic static-bias set: classes defined only by motion, looks tied to the class.

Each video shows one actor (a flat-coloured shape) moving over a still, textured scene. The class
is the actor's *motion*; the scene type, the actor's shape and its colour are *looks*. In the
train split a fraction ``bias`` of each class's videos show that class's own scene, shape and
colour ("strong": all of them, "mild": half, "none": none); the others, and every test video,
draw the three looks uniformly at random. A model that learns appearance does well on train and
falls to chance on test; one that learns motion does not care. That is the static bias S²VC is
meant to remove, in a form that runs with no download.

The camera (``camera``, ``training/data/synthetic_render.py``): "still" (the sets as they always
were, byte for byte), "shake" (a few pixels of jitter per frame) or "pan" (a slow drift across a
scene larger than the frame): the background moves in the frame while static in the world, which
is where the peers (BE mixes a frame into the clip) can work and a threshold on the latents'
temporal STD is weakest.

The validation split (``val_per_class`` videos per class, default none): videos rendered like the
others whose looks are drawn as the test split's (at random), listed in ``vallist01.txt`` and never
in the training list, so budgets, alphas and variants are chosen without reading the test split.
(Looks drawn as train's would make validation reward the static shortcut the set exists to expose:
with bias "strong" every training video's looks give its class away.)

Which set: ``SyntheticSet`` (seed, bias, videos per class, classes, frames, size); its
``kwargs()`` go to ``make_static_bias_set`` / ``cache_name`` / ``sample_specs``, whose defaults
are its defaults. Rendering one video: ``training/data/synthetic_render.py``.

Classes (``CLASS_NAMES``; ``classes=n`` takes the first n). Horizontal flip is a training
augmentation, so no class may be the mirror image of another (flip would merge them): "move left"
and "move right" cannot both exist, nor clockwise and counter-clockwise orbits. Every class but
one is its own mirror image (vertical motions, left/right chosen at random per video); the
orbit's mirror (clockwise) is not a class::

    MoveUp          straight up, 1.8-2.0 px/frame
    MoveDown        straight down
    ShuttleSideways back and forth horizontally, 2.0-2.5 px/frame, turns every 6-9 frames
    BounceUpDown    the same vertically
    Orbit           counter-clockwise circle, radius 13-17 px, 2.0-2.5 px/frame
    Pulse           still centre, size grows and shrinks by 1.5-1.8 px/frame
    DriftDiagonal   up and to the left or right (per video) at 45 degrees
    WaveAcross      across (left or right per video) with a vertical sine of 5-7 px

Speeds are given at ``size=64`` and scale with ``size``; at 64x64 every frame-to-frame step is at
least 1.5 px (the test measures it on the rendered masks). Every shape is symmetric about the
vertical axis, so flipping does not change the shape label either.

Layout (UCF101's, so ``build_dataset("synthetic")`` goes through the real UCF101 loader)::

    root/params.json                              what was built (reused when it matches)
    root/UCF-101/<Class>/v_<Class>_gXX_cYY.mp4     H.264 (libx264, crf 18, yuv420p), 25 fps,
                                                  written by ``engine.video_io.VideoWriter`` with
                                                  ``deterministic=True`` (byte-identical output;
                                                  FFmpeg's mpeg4 where libx264 is missing)
    root/ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt (vallist01.txt with a
                                                  validation split)
    root/ucfTrainTestlist/looks.csv               video_id, split, label, class, scene, shape,
                                                  colour, tied (1 = looks are the class's own)
    root/masks/<video_id>.npz                     mask bool (T, H, W): the actor's pixels;
                                                  centre float (T, 2) as (x, y); radius (T,)

Test videos take groups g01.., train videos the groups after them, validation videos the groups
after those (4 clips per group). All of it
is a pure function of the parameters: one ``SeedSequence([seed, label, split, k])`` per video, so
two builds with the same seed write byte-identical files.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2vc.engine.video_io import VideoWriter

from .synthetic_render import CLASS_NAMES, COLOURS, SCENES, SHAPES, VideoSpec, actor_track, render_video

__all__ = [
    "CLASS_NAMES",
    "SCENES",
    "SHAPES",
    "COLOURS",
    "BIAS_LEVELS",
    "VideoSpec",
    "sample_specs",
    "render_video",
    "make_static_bias_set",
    "SyntheticSet",
    "cache_name",
    "load_looks",
    "load_mask",
    "load_track",
]

log = logging.getLogger(__name__)

BIAS_LEVELS = {"strong": 1.0, "mild": 0.5, "none": 0.0}
FPS = 25
FORMAT_VERSION = 1
SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
SETTINGS_DEFAULTS = {"camera": "still", "val_per_class": 0}   # left out of names and params at these values


@dataclass(frozen=True)
class SyntheticSet:
    """Which built-in synthetic set: the one description every command and library call uses
    (``s2vc ... --synthetic-seed/-bias/-train-per-class/-test-per-class``).

    seed: the set's own seed (not a run's); bias: "strong", "mild" or "none" (see the module
    docstring); train_per_class / test_per_class: videos per class in each split; classes: the
    first ``classes`` of ``CLASS_NAMES`` (2-8); frames: frames per video; size: the videos'
    height = width in pixels (even, >= 16). The last three have no flag: tests use them to make
    small sets. camera: "still", "shake" or "pan"; val_per_class: validation videos per class
    (0: no validation split). At their defaults the last two leave names, parameters and bytes
    as they were.
    """

    seed: int = 0
    bias: str = "strong"
    train_per_class: int = 20
    test_per_class: int = 30
    classes: int = 6
    frames: int = 32
    size: int = 64
    camera: str = "still"
    val_per_class: int = 0

    def kwargs(self) -> dict:
        """The keyword arguments of ``make_static_bias_set`` / ``cache_name`` / ``sample_specs``
        for this set (camera and validation split only when not at their defaults, so a set's
        record and every name derived from it stay what they were)."""
        out = {"seed": self.seed, "bias": self.bias, "train_per_class": self.train_per_class,
               "test_per_class": self.test_per_class, "classes": self.classes, "frames": self.frames,
               "size": self.size}
        out.update({k: getattr(self, k) for k, d in SETTINGS_DEFAULTS.items() if getattr(self, k) != d})
        return out


_DEFAULT = SyntheticSet()  # the defaults of every function below that takes a set's parameters


def _bias_fraction(bias: str | float) -> float:
    if isinstance(bias, str):
        if bias not in BIAS_LEVELS:
            raise ValueError(f"bias must be one of {sorted(BIAS_LEVELS)} or a fraction in [0, 1], got {bias!r}")
        return BIAS_LEVELS[bias]
    if not 0.0 <= float(bias) <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    return float(bias)


def video_id(class_name: str, split: str, k: int, test_per_class: int, train_per_class: int = 0) -> str:
    """UCF101-style name: test videos fill groups g01.., train videos the groups after them,
    validation videos the groups after those."""
    first_group = {"test": 0, "train": (test_per_class + 3) // 4,
                   "val": (test_per_class + 3) // 4 + (train_per_class + 3) // 4}[split]
    return f"v_{class_name}_g{first_group + k // 4 + 1:02d}_c{k % 4 + 1:02d}"


def sample_specs(*, seed: int = _DEFAULT.seed, classes: int = _DEFAULT.classes,
                 train_per_class: int = _DEFAULT.train_per_class, test_per_class: int = _DEFAULT.test_per_class,
                 frames: int = _DEFAULT.frames, size: int = _DEFAULT.size,
                 bias: str | float = _DEFAULT.bias, camera: str = "still", val_per_class: int = 0) -> list[VideoSpec]:
    """The specs of every video of the set (cheap: nothing is rendered), test, train, then val."""
    if not 2 <= classes <= len(CLASS_NAMES):
        raise ValueError(f"classes must be in [2, {len(CLASS_NAMES)}], got {classes}")
    if frames < 2 or size < 16 or size % 2 or train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"need frames >= 2, an even size >= 16 and >= 1 video per class and split, got "
                         f"frames={frames}, size={size}, {train_per_class}/{test_per_class} per class")
    from .synthetic_render import CAMERAS
    if camera not in CAMERAS or val_per_class < 0:
        raise ValueError(f"camera must be one of {CAMERAS} and val_per_class >= 0, got {camera!r}, {val_per_class}")
    tie = _bias_fraction(bias)
    specs = []
    for split, count in (("test", test_per_class), ("train", train_per_class), ("val", val_per_class)):
        for label in range(classes):
            for k in range(count):
                rng = np.random.default_rng(np.random.SeedSequence([seed, label, SPLIT_CODES[split], k]))
                tied = split == "train" and rng.random() < tie
                drawn = rng.integers(0, classes, size=3)  # drawn even when tied: the motion
                looks = [label] * 3 if tied else list(drawn)  # stays the same at any bias
                centre, radius = actor_track(label, rng, frames, size)
                specs.append(VideoSpec(
                    video_id(CLASS_NAMES[label], split, k, test_per_class, train_per_class), split, label,
                    SCENES[looks[0]], SHAPES[looks[1]], list(COLOURS)[looks[2]], bool(tied),
                    int(rng.integers(0, 2 ** 31)), centre, radius, camera))
    return specs


def _params(**kw) -> dict:
    kw["bias"] = kw["bias"] if isinstance(kw["bias"], str) else float(kw["bias"])
    kw = {k: v for k, v in kw.items() if SETTINGS_DEFAULTS.get(k, object()) != v}   # still sets: as before
    return {"format": FORMAT_VERSION, **kw}


def cache_name(*, seed: int = _DEFAULT.seed, classes: int = _DEFAULT.classes,
               train_per_class: int = _DEFAULT.train_per_class, test_per_class: int = _DEFAULT.test_per_class,
               frames: int = _DEFAULT.frames, size: int = _DEFAULT.size, bias: str | float = _DEFAULT.bias,
               camera: str = "still", val_per_class: int = 0) -> str:
    """Folder name of a set in a cache: one folder per parameter set, so they never clobber (a
    still set without a validation split keeps the name it always had)."""
    return (f"static_bias_s{seed}_c{classes}_{train_per_class}x{test_per_class}_t{frames}_r{size}_{bias}"
            + (f"_cam{camera}" if camera != "still" else "") + (f"_val{val_per_class}" if val_per_class else ""))


def _existing_params(root: Path) -> dict | None:
    try:
        return json.loads((root / "params.json").read_text())
    except (OSError, ValueError):
        return None


def _matches(root: Path, params: dict) -> bool:
    found = _existing_params(root)
    return found is not None and {k: found.get(k) for k in params} == params


def _write_set(out: Path, specs: list[VideoSpec], params: dict) -> str:
    classes = params["classes"]
    lists, masks = out / "ucfTrainTestlist", out / "masks"
    lists.mkdir(parents=True)
    masks.mkdir()
    for name in CLASS_NAMES[:classes]:
        (out / "UCF-101" / name).mkdir(parents=True)
    split_lines = {"train": [], "test": [], "val": []}
    codec = None
    for spec in specs:
        frames, mask = render_video(spec, params["size"])
        rel = f"{spec.class_name}/{spec.video_id}.mp4"
        # deterministic: two builds of the same set write byte-identical files
        with VideoWriter(out / "UCF-101" / rel, FPS, crf=18, deterministic=True) as writer:
            writer.write(frames)
        codec = writer.codec  # the same for every video: it depends only on this FFmpeg build
        np.savez_compressed(masks / f"{spec.video_id}.npz", mask=mask,
                            centre=spec.centre.astype(np.float32), radius=spec.radius.astype(np.float32))
        split_lines[spec.split].append(rel if spec.split == "test" else f"{rel} {spec.label + 1}")
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASS_NAMES[:classes])))
    (lists / "trainlist01.txt").write_text("".join(line + "\n" for line in split_lines["train"]))
    (lists / "testlist01.txt").write_text("".join(line + "\n" for line in split_lines["test"]))
    if split_lines["val"]:
        (lists / "vallist01.txt").write_text("".join(line + "\n" for line in split_lines["val"]))
    with open(lists / "looks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "split", "label", "class", "scene", "shape", "colour", "tied"])
        for sp in specs:
            w.writerow([sp.video_id, sp.split, sp.label, sp.class_name, sp.scene, sp.shape, sp.colour, int(sp.tied)])
    (out / "params.json").write_text(json.dumps({**params, "codec": codec, "fps": FPS}, indent=2) + "\n")
    return codec


def make_static_bias_set(root: str | os.PathLike, *, seed: int = _DEFAULT.seed, classes: int = _DEFAULT.classes,
                         train_per_class: int = _DEFAULT.train_per_class,
                         test_per_class: int = _DEFAULT.test_per_class, frames: int = _DEFAULT.frames,
                         size: int = _DEFAULT.size, bias: str | float = _DEFAULT.bias, camera: str = "still",
                         val_per_class: int = 0) -> Path:
    """Build the set at ``root`` (UCF101 layout, see the module docstring) and return ``root``.

    Idempotent: when ``root/params.json`` records the same parameters the set is reused as it is.
    Written atomically: into a hidden temp folder beside ``root``, then renamed onto it (a set
    with other parameters is replaced; a non-empty folder without ``params.json`` is refused).
    Two processes building the same set at once both succeed; one of the copies is kept.
    """
    root = Path(root)
    params = _params(seed=seed, classes=classes, train_per_class=train_per_class,
                     test_per_class=test_per_class, frames=frames, size=size, bias=bias, camera=camera,
                     val_per_class=val_per_class)
    if _matches(root, params):
        return root
    if root.exists() and _existing_params(root) is None and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists, is not empty and holds no params.json of a synthetic set; "
                              f"refusing to replace it")
    specs = sample_specs(seed=seed, classes=classes, train_per_class=train_per_class,
                         test_per_class=test_per_class, frames=frames, size=size, bias=bias, camera=camera,
                         val_per_class=val_per_class)
    root.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp, old = root.parent / f".{root.name}.tmp-{tag}", root.parent / f".{root.name}.old-{tag}"
    start = time.perf_counter()
    try:
        codec = _write_set(tmp, specs, params)
        if root.exists():
            os.rename(root, old)
        try:
            os.rename(tmp, root)
        except OSError:
            if not _matches(root, params):  # not another process that just built the same set
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    log.info("synthetic static-bias set: %d videos (%s) written to %s in %.1f s",
             len(specs), codec, root, time.perf_counter() - start)
    return root


# --------------------------------------------------------------------------------------------
# reading back


def load_looks(root: str | os.PathLike) -> dict[str, dict]:
    """video_id -> {"scene", "shape", "colour", "split", "label" (int), "class", "tied" (bool)}."""
    path = Path(root) / "ucfTrainTestlist" / "looks.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no looks file (is {root} a synthetic static-bias set?)")
    with open(path, newline="") as f:
        return {row["video_id"]: {**{k: row[k] for k in ("scene", "shape", "colour", "split", "class")},
                                  "label": int(row["label"]), "tied": row["tied"] == "1"}
                for row in csv.DictReader(f)}


def _load_npz(root: str | os.PathLike, video_id: str):
    path = Path(root) / "masks" / f"{video_id}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no mask for video {video_id!r}")
    return np.load(path)


def load_mask(root: str | os.PathLike, video_id: str) -> np.ndarray:
    """The actor's pixels in every frame of ``video_id``: bool (T, H, W)."""
    with _load_npz(root, video_id) as data:
        return data["mask"].astype(bool)


def load_track(root: str | os.PathLike, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The actor's centre float (T, 2) as (x, y) pixels and its radius float (T,)."""
    with _load_npz(root, video_id) as data:
        return data["centre"], data["radius"]
