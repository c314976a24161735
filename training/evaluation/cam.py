"""``s2vc eval cam``: class activation maps over the frames of videos (the paper's Fig. 7).

    s2vc eval cam VIDEO... --checkpoint FINETUNED.pt --out DIR [--class NAME] [--frames 16 ...]

``class_activation_maps(CamSettings)`` does it. With a finetune checkpoint (``s2vc eval
finetune``) the map is the CAM of Zhou et al. (2016): the last conv block's feature maps
weighted by the classifier's weights of the predicted class (or ``--class``), ReLU, upsampled
over time and space to the clip and scaled to [0, 1]. With a pretrain checkpoint (the file or
its run folder) there is no classifier; the map is then the mean activation of the last conv
block over its channels (where the backbone "looks"), and the output says so.

Per video, ``DIR/<stem>_cam.png`` shows the frames (top) above the maps blended over them
(bottom), and ``DIR/<stem>_cam.mp4`` plays the input and the overlay side by side.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from s2vc.engine import video_io
from s2vc.engine.checkpoint import atomic_write_text

from .common import Evaluation
from ..data.transforms import eval_transform, normalize_clip

__all__ = ["activation_map", "overlay", "CamSettings", "class_activation_maps"]


@torch.no_grad()
def activation_map(backbone, x: torch.Tensor) -> torch.Tensor:
    """Mean over channels of the last conv block (post-ReLU), upsampled to x's (T, H, W) and
    scaled to [0, 1] per clip: float (B, T, H, W). x normalised (B, C, T, H, W)."""
    fmap = backbone.feature_map(x).mean(dim=1, keepdim=True).clamp_min(0)
    maps = F.interpolate(fmap, size=x.shape[2:], mode="trilinear", align_corners=False)[:, 0]
    lo = maps.flatten(1).amin(1)[:, None, None, None]
    hi = maps.flatten(1).amax(1)[:, None, None, None]
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def overlay(frames: torch.Tensor, maps: torch.Tensor, strength: float = 0.5) -> torch.Tensor:
    """Blend a jet-coloured map over frames: frames float (3, T, H, W) in [0, 1], maps (T, H, W)
    in [0, 1] -> float (3, T, H, W)."""
    from matplotlib import colormaps
    coloured = torch.from_numpy(colormaps["jet"](maps.clamp(0, 1).numpy())[..., :3]).float()  # (T, H, W, 3)
    return ((1 - strength) * frames + strength * coloured.permute(3, 0, 1, 2)).clamp(0, 1)


CAM_EXPECTED = "a .pt file written by s2vc eval finetune, or a pretrain checkpoint (RUN/checkpoint.pt)"


@dataclass
class CamSettings:
    """``s2vc eval cam``: the ``videos``, the ``checkpoint`` (finetune: CAM; pretrain file or run
    folder: activation map), the ``out`` folder, the ``target`` class (name or index; None: the
    prediction), the clip (``frames`` x ``stride`` from frame ``start``, centre crop ``size``;
    None: the finetuned model's, else 16 / 2 / 112) and the ``device`` (None: cuda if any)."""

    videos: list[str]
    checkpoint: str
    out: str
    target: str | None = None
    frames: int | None = None
    stride: int | None = None
    start: int = 0
    size: int | None = None
    device: str | None = None


def _target(value: str | None, classes: list[str]) -> int | None:
    if value is None:
        return None
    if value in classes:
        return classes.index(value)
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    raise ValueError(f"cam: unknown class {value!r}; expected one of the classifier's classes {classes} "
                     f"or an index below {len(classes)}")


def _load_model(settings: CamSettings, device) -> tuple[torch.nn.Module, dict, list[str], str]:
    """(model, the finetune config or {}, its classes, "CAM" or "activation map")."""
    from .checkpoints import backbone_from_checkpoint, read_checkpoint
    from .finetune import classifier_from_checkpoint
    ckpt, file = read_checkpoint(settings.checkpoint, what="finetune or pretrain", expected=CAM_EXPECTED)
    if isinstance(ckpt, dict) and "classifier" in ckpt:
        model, cfg = classifier_from_checkpoint(ckpt, file, device)
        return model, cfg, cfg["classes"], "CAM"
    if settings.target is not None:
        raise ValueError("cam: --class needs a finetune checkpoint (a pretrain checkpoint has no classifier)")
    return backbone_from_checkpoint(ckpt, None, file).to(device), {}, [], "activation map"


def _stem(path: str, videos: list[str]) -> str:
    """The file name stem of ``path``, with its folder's name in front when two videos share it."""
    stem = Path(path).stem
    if sum(Path(v).stem == stem for v in videos) > 1:
        stem = f"{Path(path).parent.name}_{stem}"
    return stem


def class_activation_maps(settings: CamSettings) -> Evaluation:
    """Per video, its maps as OUT/<stem>_cam.png and .mp4, and OUT/cam.json (the list of
    {"video", "kind", "class", "png", "mp4", "map_mean"}); returns {"maps": that list}."""
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg, classes, kind = _load_model(settings, device)
    target = _target(settings.target, classes) if classes else None
    # a setting not given: the finetuned model's, else the usual default
    frames, stride, size = (getattr(settings, key) if getattr(settings, key) is not None else cfg.get(key) or fallback
                            for key, fallback in (("frames", 16), ("stride", 2), ("size", 112)))
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    span = (frames - 1) * stride + 1
    results, lines = [], []
    for path in settings.videos:
        raw = video_io.read_video(path, start_frame=settings.start, step=stride, max_frames=frames,
                                  min_frames=frames)
        clip = eval_transform(size)(video_io.to_float_video(raw))             # (3, T, S, S)
        x = normalize_clip(clip[None].to(device))
        if kind == "CAM":
            maps, used = model.cam(x, None if target is None else torch.tensor([target], device=device))
            probs = F.softmax(model(x), dim=1)[0].cpu()
            label = classes[int(used)]
            desc = f"CAM of class {label!r} (p = {probs[int(used)]:.2f})"
        else:
            maps, label = activation_map(model, x), None
            desc = "mean activation of the last conv block (no classifier)"
        stem = _stem(path, settings.videos)
        frames_u8, over_u8 = video_io.to_uint8_frames(clip), video_io.to_uint8_frames(overlay(clip, maps[0].cpu()))
        png = video_io.write_contact_sheet(out / f"{stem}_cam.png", [frames_u8, over_u8],
                                           labels=[f"{stem}: frames {settings.start}..{settings.start + span - 1}",
                                                   desc])
        mp4 = video_io.write_video(out / f"{stem}_cam.mp4", torch.cat([frames_u8, over_u8], dim=2).numpy(),
                                   fps=max(1.0, 25.0 / stride))
        results.append({"video": str(path), "kind": kind, "class": label, "png": str(png), "mp4": str(mp4),
                        "map_mean": float(maps.mean())})
        lines.append(f"{path}: {desc} -> {png}, {mp4}")
    atomic_write_text(out / "cam.json", json.dumps(results, indent=2))
    notes = ([] if kind == "CAM" else
             ["cam: a pretrain checkpoint has no classifier; finetune it (`s2vc eval finetune`) for CAMs"])
    return Evaluation({"maps": results}, "\n".join(lines), notes)
