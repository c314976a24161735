"""The built-in synthetic static-bias set: classes defined only by motion, looks tied to the class.

Each video shows one actor (a flat-coloured shape) moving over a still, textured scene. The class
is the actor's *motion*; the scene type, the actor's shape and its colour are *looks*. In the
train split a fraction ``bias`` of each class's videos show that class's own scene, shape and
colour ("strong": all of them, "mild": half, "none": none); the others, and every test video,
draw the three looks uniformly at random. A model that learns appearance does well on train and
falls to chance on test; one that learns motion does not care. That is the static bias S²VC is
meant to remove, in a form that runs with no download.

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
    root/UCF-101/<Class>/v_<Class>_gXX_cYY.mp4     H.264 (libx264, crf 18, yuv420p, mbtree off
                                                  and one thread for byte-identical output;
                                                  FFmpeg's mpeg4 where libx264 is missing), 25 fps
    root/ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt
    root/ucfTrainTestlist/looks.csv               video_id, split, label, class, scene, shape,
                                                  colour, tied (1 = looks are the class's own)
    root/masks/<video_id>.npz                     mask bool (T, H, W): the actor's pixels;
                                                  centre float (T, 2) as (x, y); radius (T,)

Test videos take groups g01.., train videos the groups after them (4 clips per group). All of it
is a pure function of the parameters: one ``SeedSequence([seed, label, split, k])`` per video, so
two builds with the same seed write byte-identical files.
"""
from __future__ import annotations

import colorsys
import csv
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F


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

CLASS_NAMES = ("MoveUp", "MoveDown", "ShuttleSideways", "BounceUpDown", "Orbit", "Pulse",
               "DriftDiagonal", "WaveAcross")
SCENES = ("stripes", "checker", "blobs", "dots", "bricks", "rings", "grid", "horizon")
SHAPES = ("disc", "square", "triangle", "diamond", "cross", "ring", "hexagon", "star")
COLOURS = {  # saturated actor colours; scenes use muted ones
    "red": (230, 40, 40), "green": (40, 200, 70), "blue": (40, 90, 240), "yellow": (245, 225, 40),
    "magenta": (225, 50, 225), "cyan": (40, 225, 235), "orange": (250, 140, 20),
    "white": (250, 250, 250),
}
BIAS_LEVELS = {"strong": 1.0, "mild": 0.5, "none": 0.0}
FPS = 25
FORMAT_VERSION = 1
SPLIT_CODES = {"train": 0, "test": 1}


@dataclass
class VideoSpec:
    """Everything needed to render one video. ``centre`` float (T, 2) as (x, y) in pixels (pixel
    centres at integers), ``radius`` float (T,) in pixels, ``scene_seed`` drives the scene."""

    video_id: str
    split: str
    label: int
    scene: str
    shape: str
    colour: str
    tied: bool
    scene_seed: int
    centre: np.ndarray
    radius: np.ndarray

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


# --------------------------------------------------------------------------------------------
# motion


def _triangle(t: np.ndarray, period: int, phase: int) -> np.ndarray:
    """Integer-period triangle wave with slope +-1 per frame and range [-P/2, P/2]: every
    frame-to-frame step is exactly 1 (the turns fall on frames, so no step is shortened)."""
    m = (t + phase) % (2 * period)
    return np.where(m < period, m - period / 2, 1.5 * period - m)


def _wrap(pos: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Keep a travelling actor's centre in [lo, hi): it re-enters on the other side. Only long
    videos (beyond the default 32 frames) travel far enough for this to happen."""
    return lo + np.mod(pos - lo, hi - lo)


def _track(label: int, rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre (T, 2) and radius (T,) of the actor of class ``label``; speeds scale with size/64."""
    s = size / 64.0
    t = np.arange(frames, dtype=np.float64)
    mid = (size - 1) / 2
    r0 = rng.uniform(6.5, 8.5) * s
    radius = np.full(frames, r0)
    name = CLASS_NAMES[label]
    if name in ("MoveUp", "MoveDown", "DriftDiagonal", "WaveAcross"):
        v = rng.uniform(1.8, 2.0) * s
        if name in ("MoveUp", "MoveDown"):
            sign = -1.0 if name == "MoveUp" else 1.0
            x = np.full(frames, mid + rng.uniform(-0.2, 0.2) * size)
            y = mid + sign * v * (t - (frames - 1) / 2)
        elif name == "DriftDiagonal":
            sx = rng.choice([-1.0, 1.0])
            step = v / math.sqrt(2)
            x = mid + rng.uniform(-3, 3) * s + sx * step * (t - (frames - 1) / 2)
            y = mid + rng.uniform(-3, 3) * s - step * (t - (frames - 1) / 2)
        else:
            sx = rng.choice([-1.0, 1.0])
            amp, period = rng.uniform(5, 7) * s, rng.uniform(12, 16)
            x = mid + sx * v * (t - (frames - 1) / 2)
            y = mid + rng.uniform(-0.15, 0.15) * size + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        lo, hi = -r0 / 2, size - 1 + r0 / 2
        return np.stack([_wrap(x, lo, hi), _wrap(y, lo, hi)], 1), radius
    if name in ("ShuttleSideways", "BounceUpDown"):
        v = rng.uniform(2.0, 2.5) * s
        period = int(rng.integers(6, 10))
        along = mid + v * _triangle(t, period, int(rng.integers(0, 2 * period)))
        across = np.full(frames, mid + rng.uniform(-0.2, 0.2) * size)
        xy = (along, across) if name == "ShuttleSideways" else (across, along)
        return np.stack(xy, 1), radius
    if name == "Orbit":
        v, R = rng.uniform(2.0, 2.5) * s, rng.uniform(13, 17) * s
        room = max(0.0, mid - R - r0 - 1)
        cx, cy = mid + rng.uniform(-room, room), mid + rng.uniform(-room, room)
        # y points down, so a decreasing angle turns counter-clockwise on screen
        theta = rng.uniform(0, 2 * np.pi) - (v / R) * t
        return np.stack([cx + R * np.cos(theta), cy + R * np.sin(theta)], 1), radius
    if name == "Pulse":
        rate, period, r_min = rng.uniform(1.5, 1.8) * s, int(rng.integers(6, 9)), 4.0 * s
        radius = r_min + rate * (_triangle(t, period, int(rng.integers(0, 2 * period))) + period / 2)
        room = max(0.0, mid - radius.max() - 1)
        c = mid + rng.uniform(-room, room, size=2)
        return np.tile(c, (frames, 1)), radius
    raise ValueError(f"unknown class {name!r}")


# --------------------------------------------------------------------------------------------
# looks: scenes and shapes


def _muted(rng: np.random.Generator) -> np.ndarray:
    h, sat, val = rng.random(), rng.uniform(0.15, 0.55), rng.uniform(0.3, 0.75)
    return np.array(colorsys.hsv_to_rgb(h, sat, val))


def _scene(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A still textured background, float (H, W, 3) in [0, 1]: two muted colours mixed by a
    pattern of type ``kind`` (random orientation, scale and phase), plus faint static grain."""
    s = size / 64.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    a = rng.uniform(0, np.pi)
    u, w = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    if kind == "stripes":
        p = 0.5 + 0.5 * np.sin(2 * np.pi * u / (rng.uniform(6, 14) * s) + rng.uniform(0, 2 * np.pi))
    elif kind == "checker":
        c = rng.uniform(5, 10) * s
        p = (np.floor(u / c) + np.floor(w / c)) % 2
    elif kind == "blobs":
        g = torch.from_numpy(rng.random((1, 1, 5, 5)))
        p = F.interpolate(g, size=(size, size), mode="bicubic", align_corners=True)[0, 0].numpy()
        p = (p - p.min()) / max(np.ptp(p), 1e-6)
    elif kind == "dots":
        g = rng.uniform(8, 14) * s
        du, dw = (u % g) - g / 2, (w % g) - g / 2
        p = (du ** 2 + dw ** 2 < (0.3 * g) ** 2).astype(np.float64)
    elif kind == "bricks":
        h = rng.uniform(6, 10) * s
        row = np.floor(y / h)
        xs = x + (row % 2) * h
        p = (((y % h) < 1.2) | ((xs % (2 * h)) < 1.2)).astype(np.float64)
    elif kind == "rings":
        cx, cy = rng.uniform(-0.5, 1.5, size=2) * size
        p = 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(x - cx, y - cy) / (rng.uniform(6, 12) * s))
    elif kind == "grid":
        g = rng.uniform(7, 12) * s
        p = (((u % g) < 1.5) | ((w % g) < 1.5)).astype(np.float64)
    elif kind == "horizon":
        horizon = rng.uniform(0.35, 0.65) * size
        p = np.where(y < horizon, 0.4 * y / horizon, 1.0)
    else:
        raise ValueError(f"unknown scene {kind!r}")
    c1, c2 = _muted(rng), _muted(rng)
    img = c1 * (1 - p[..., None]) + c2 * p[..., None]
    img += rng.normal(0, 0.02, size=img.shape)
    return np.clip(img, 0, 1)


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Pixels (centres at integer coordinates) inside ``shape`` of radius ``r`` at (cx, cy):
    bool (H, W). Every shape is symmetric about its vertical axis."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u, v = (x - cx) / r, (y - cy) / r   # v points down
    au, av_ = np.abs(u), np.abs(v)
    if shape == "disc":
        return u * u + v * v <= 1
    if shape == "square":
        return np.maximum(au, av_) <= 0.8
    if shape == "triangle":  # apex up
        return (v <= 0.7) & (au <= 0.95 * (v + 1) / 1.7)
    if shape == "diamond":
        return au + av_ <= 1
    if shape == "cross":
        return ((au <= 0.33) & (av_ <= 0.95)) | ((av_ <= 0.33) & (au <= 0.95))
    if shape == "ring":
        d = u * u + v * v
        return (d <= 1) & (d >= 0.5 ** 2)
    if shape == "hexagon":
        return (av_ <= 0.866) & (av_ <= math.sqrt(3) * (1 - au))
    if shape == "star":  # five points, one up
        angle = np.arctan2(u, -v)
        f = np.abs(np.mod(angle / (2 * np.pi / 5), 1.0) - 0.5) * 2   # 1 at a point, 0 between
        return np.hypot(u, v) <= 0.45 + 0.55 * f
    raise ValueError(f"unknown shape {shape!r}")


def render_video(spec: VideoSpec, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``spec``: frames uint8 (T, H, W, 3) and the actor mask bool (T, H, W).

    The actor is flat ``COLOURS[spec.colour]`` exactly on its mask; the scene is still.
    """
    scene = _scene(spec.scene, np.random.default_rng(spec.scene_seed), size)
    scene = np.round(scene * 255).astype(np.uint8)
    colour = np.array(COLOURS[spec.colour], np.uint8)
    masks = np.stack([_shape_mask(spec.shape, cx, cy, r, size)
                      for (cx, cy), r in zip(spec.centre, spec.radius)])
    frames = np.where(masks[..., None], colour, scene[None])
    return frames, masks


# --------------------------------------------------------------------------------------------
# the set


def _bias_fraction(bias: str | float) -> float:
    if isinstance(bias, str):
        if bias not in BIAS_LEVELS:
            raise ValueError(f"bias must be one of {sorted(BIAS_LEVELS)} or a fraction in [0, 1], got {bias!r}")
        return BIAS_LEVELS[bias]
    if not 0.0 <= float(bias) <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    return float(bias)


@dataclass(frozen=True)
class SyntheticSet:
    """Which built-in synthetic set: the one description every command and library call uses
    (``s2vc ... --synthetic-seed/-bias/-train-per-class/-test-per-class``).

    seed: the set's own seed (not a run's); bias: "strong", "mild" or "none" (see the module
    docstring); train_per_class / test_per_class: videos per class in each split.
    """

    seed: int = 0
    bias: str = "strong"
    train_per_class: int = 20
    test_per_class: int = 30

    def kwargs(self) -> dict:
        """The keyword arguments of ``make_static_bias_set`` / ``cache_name`` for this set."""
        return {"seed": self.seed, "bias": self.bias, "train_per_class": self.train_per_class,
                "test_per_class": self.test_per_class}


def video_id(class_name: str, split: str, k: int, test_per_class: int) -> str:
    """UCF101-style name: test videos fill groups g01.., train videos the groups after them."""
    first_group = 0 if split == "test" else (test_per_class + 3) // 4
    return f"v_{class_name}_g{first_group + k // 4 + 1:02d}_c{k % 4 + 1:02d}"


def sample_specs(*, seed: int = 0, classes: int = 6, train_per_class: int = 20, test_per_class: int = 10,
                 frames: int = 32, size: int = 64, bias: str | float = "strong") -> list[VideoSpec]:
    """The specs of every video of the set (cheap: nothing is rendered), test then train."""
    if not 2 <= classes <= len(CLASS_NAMES):
        raise ValueError(f"classes must be in [2, {len(CLASS_NAMES)}], got {classes}")
    if frames < 2 or size < 16 or size % 2 or train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"need frames >= 2, an even size >= 16 and >= 1 video per class and split, got "
                         f"frames={frames}, size={size}, {train_per_class}/{test_per_class} per class")
    tie = _bias_fraction(bias)
    specs = []
    for split, count in (("test", test_per_class), ("train", train_per_class)):
        for label in range(classes):
            for k in range(count):
                rng = np.random.default_rng(np.random.SeedSequence([seed, label, SPLIT_CODES[split], k]))
                tied = split == "train" and rng.random() < tie
                drawn = rng.integers(0, classes, size=3)  # drawn even when tied: the motion
                looks = [label] * 3 if tied else list(drawn)  # stays the same at any bias
                centre, radius = _track(label, rng, frames, size)
                specs.append(VideoSpec(
                    video_id(CLASS_NAMES[label], split, k, test_per_class), split, label,
                    SCENES[looks[0]], SHAPES[looks[1]], list(COLOURS)[looks[2]], bool(tied),
                    int(rng.integers(0, 2 ** 31)), centre, radius))
    return specs


def _params(**kw) -> dict:
    kw["bias"] = kw["bias"] if isinstance(kw["bias"], str) else float(kw["bias"])
    return {"format": FORMAT_VERSION, **kw}


def cache_name(*, seed: int = 0, classes: int = 6, train_per_class: int = 20, test_per_class: int = 10,
               frames: int = 32, size: int = 64, bias: str | float = "strong") -> str:
    """Folder name of a set in a cache: one folder per parameter set, so they never clobber."""
    return f"static_bias_s{seed}_c{classes}_{train_per_class}x{test_per_class}_t{frames}_r{size}_{bias}"


def _existing_params(root: Path) -> dict | None:
    try:
        return json.loads((root / "params.json").read_text())
    except (OSError, ValueError):
        return None


def _matches(root: Path, params: dict) -> bool:
    found = _existing_params(root)
    return found is not None and {k: found.get(k) for k in params} == params


def _encoder() -> str:
    try:
        av.Codec("libx264", "w")
        return "libx264"
    except (av.codec.codec.UnknownCodecError, ValueError):
        return "mpeg4"


def _write_mp4(path: Path, frames: np.ndarray, codec: str) -> None:
    """uint8 (T, H, W, 3) to an MP4 that is byte-identical from run to run. libx264's default
    macroblock-tree rate control is not: two processes encoding the same frames wrote different
    streams (decoded pixels up to 38 levels apart), presumably float SIMD paths that depend on
    buffer alignment. Hence ``mbtree=0`` and one encoder thread; mpeg4 is deterministic as it is."""
    with av.open(str(path), mode="w", format="mp4") as container:
        options = {"crf": "18", "x264-params": "mbtree=0"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "mpeg4":
            stream.codec_context.bit_rate = max(200_000, int(0.4 * frames.shape[1] * frames.shape[2] * FPS))
        for t, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = t
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))


def _write_set(out: Path, specs: list[VideoSpec], params: dict) -> str:
    classes = params["classes"]
    lists, masks = out / "ucfTrainTestlist", out / "masks"
    lists.mkdir(parents=True)
    masks.mkdir()
    for name in CLASS_NAMES[:classes]:
        (out / "UCF-101" / name).mkdir(parents=True)
    split_lines = {"train": [], "test": []}
    codec = _encoder()
    for spec in specs:
        frames, mask = render_video(spec, params["size"])
        rel = f"{spec.class_name}/{spec.video_id}.mp4"
        _write_mp4(out / "UCF-101" / rel, frames, codec)
        np.savez_compressed(masks / f"{spec.video_id}.npz", mask=mask,
                            centre=spec.centre.astype(np.float32), radius=spec.radius.astype(np.float32))
        split_lines[spec.split].append(f"{rel} {spec.label + 1}" if spec.split == "train" else rel)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASS_NAMES[:classes])))
    (lists / "trainlist01.txt").write_text("".join(line + "\n" for line in split_lines["train"]))
    (lists / "testlist01.txt").write_text("".join(line + "\n" for line in split_lines["test"]))
    with open(lists / "looks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "split", "label", "class", "scene", "shape", "colour", "tied"])
        for sp in specs:
            w.writerow([sp.video_id, sp.split, sp.label, sp.class_name, sp.scene, sp.shape, sp.colour, int(sp.tied)])
    (out / "params.json").write_text(json.dumps({**params, "codec": codec, "fps": FPS}, indent=2) + "\n")
    return codec


def make_static_bias_set(root: str | os.PathLike, *, seed: int = 0, classes: int = 6, train_per_class: int = 20,
                         test_per_class: int = 10, frames: int = 32, size: int = 64,
                         bias: str | float = "strong") -> Path:
    """Build the set at ``root`` (UCF101 layout, see the module docstring) and return ``root``.

    Idempotent: when ``root/params.json`` records the same parameters the set is reused as it is.
    Written atomically: into a hidden temp folder beside ``root``, then renamed onto it (a set
    with other parameters is replaced; a non-empty folder without ``params.json`` is refused).
    Two processes building the same set at once both succeed; one of the copies is kept.
    """
    root = Path(root)
    params = _params(seed=seed, classes=classes, train_per_class=train_per_class,
                     test_per_class=test_per_class, frames=frames, size=size, bias=bias)
    if _matches(root, params):
        return root
    if root.exists() and _existing_params(root) is None and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists, is not empty and holds no params.json of a synthetic set; "
                              f"refusing to replace it")
    specs = sample_specs(seed=seed, classes=classes, train_per_class=train_per_class,
                         test_per_class=test_per_class, frames=frames, size=size, bias=bias)
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
