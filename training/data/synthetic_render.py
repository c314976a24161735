"""Rendering the synthetic static-bias set's videos: the actor's motion per class, the still
scenes, the actor's shapes, and the frames (see ``training/data/synthetic.py`` for the set's design).

A video is described by a ``VideoSpec`` (its class, its looks, the actor's track and the camera)
and rendered by ``render_video``. Speeds and sizes are given at ``size=64`` and scale with ``size``.
Every shape is symmetric about the vertical axis, so a horizontal flip changes no shape.

The camera (``CAMERAS``): "still" (the scene does not move: the sets as they always were), "shake"
(the frame jitters by up to ``SHAKE_PX`` pixels in x and y, drawn per frame) or "pan" (a slow
drift, ``PAN_SPEED`` px/frame in a direction drawn per video, across a scene larger than the
frame). The scene is static in the world and moves in the frame; the actor's track stays in frame
coordinates, so the motion that defines a class (and the masks) are the still set's. The camera's
draws come from their own stream (``camera_rng``), so a still set renders exactly as before.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CLASS_NAMES",
    "SCENES",
    "SHAPES",
    "COLOURS",
    "VideoSpec",
    "actor_track",
    "scene_image",
    "shape_mask",
    "render_video",
    "CAMERAS",
    "camera_offsets",
]

CAMERAS = ("still", "shake", "pan")
SHAKE_PX = 2.0               # at size 64: the frame jitters by up to this many pixels each way
PAN_SPEED = (0.5, 1.0)       # at size 64: px/frame of the drift (the actor moves 1.5-2.5)

CLASS_NAMES = ("MoveUp", "MoveDown", "ShuttleSideways", "BounceUpDown", "Orbit", "Pulse",
               "DriftDiagonal", "WaveAcross")
SCENES = ("stripes", "checker", "blobs", "dots", "bricks", "rings", "grid", "horizon")
SHAPES = ("disc", "square", "triangle", "diamond", "cross", "ring", "hexagon", "star")
COLOURS = {  # saturated actor colours; scenes use muted ones
    "red": (230, 40, 40), "green": (40, 200, 70), "blue": (40, 90, 240), "yellow": (245, 225, 40),
    "magenta": (225, 50, 225), "cyan": (40, 225, 235), "orange": (250, 140, 20),
    "white": (250, 250, 250),
}


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
    camera: str = "still"

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


def actor_track(label: int, rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
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


def scene_image(kind: str, rng: np.random.Generator, size: int, canvas: int | None = None) -> np.ndarray:
    """A still textured background, float (C, C, 3) in [0, 1] with C = ``canvas`` (default
    ``size``; larger for a moving camera, the texture keeping the scale of a ``size`` frame): two
    muted colours mixed by a pattern of type ``kind`` (random orientation, scale and phase), plus
    faint static grain."""
    s = size / 64.0
    size = canvas or size
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


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
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


def camera_rng(spec: VideoSpec) -> np.random.Generator:
    """The camera's own stream (the scene's and the actor's draws are left as they were)."""
    return np.random.default_rng([spec.scene_seed, 0xCA11E7A])


def camera_offsets(camera: str, rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, int]:
    """(offsets float (T, 2) as (x, y) >= 0: where each frame's top-left corner lies on the scene,
    the scene's side C in pixels, C >= size + offsets.max() + 1) for ``camera``."""
    s = size / 64.0
    if camera == "still":
        return np.zeros((frames, 2)), size
    if camera == "shake":
        amp = int(round(SHAKE_PX * s))
        return amp + rng.integers(-amp, amp + 1, size=(frames, 2)).astype(np.float64), size + 2 * amp + 1
    if camera == "pan":
        speed, angle = rng.uniform(*PAN_SPEED) * s, rng.uniform(0, 2 * np.pi)
        path = np.arange(frames)[:, None] * speed * np.array([np.cos(angle), np.sin(angle)])
        path -= path.min(axis=0)
        return path, size + int(np.ceil(path.max())) + 1
    raise ValueError(f"unknown camera {camera!r}; expected one of {CAMERAS}")


def _view(scene: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """The ``size`` x ``size`` window of ``scene`` (C, C, 3) at top-left (x, y), bilinear between pixels."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    win = scene[y0:y0 + size + 1, x0:x0 + size + 1]
    top = win[:size, :size] * (1 - fx) + win[:size, 1:] * fx
    bottom = win[1:, :size] * (1 - fx) + win[1:, 1:] * fx
    return top * (1 - fy) + bottom * fy


def render_video(spec: VideoSpec, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``spec``: frames uint8 (T, H, W, 3) and the actor mask bool (T, H, W).

    The actor is flat ``COLOURS[spec.colour]`` exactly on its mask; the scene is static in the
    world, seen through ``spec.camera`` (still: it does not move in the frame either).
    """
    colour = np.array(COLOURS[spec.colour], np.uint8)
    masks = np.stack([shape_mask(spec.shape, cx, cy, r, size)
                      for (cx, cy), r in zip(spec.centre, spec.radius)])
    if spec.camera == "still":
        background = scene_image(spec.scene, np.random.default_rng(spec.scene_seed), size)
        background = np.round(background * 255).astype(np.uint8)
        return np.where(masks[..., None], colour, background[None]), masks
    offsets, canvas = camera_offsets(spec.camera, camera_rng(spec), len(masks), size)
    scene = scene_image(spec.scene, np.random.default_rng(spec.scene_seed), size, canvas)
    background = np.stack([_view(scene, x, y, size) for x, y in offsets])
    background = np.round(np.clip(background, 0, 1) * 255).astype(np.uint8)
    return np.where(masks[..., None], colour, background), masks

