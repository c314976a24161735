"""``s2vc eval cam``: class activation maps over the frames of videos (the paper's Fig. 7).

    s2vc eval cam VIDEO... --checkpoint FINETUNED.pt --out DIR [--class NAME] [--frames 16 ...]

With a finetune checkpoint (``s2vc eval finetune``) the map is the CAM of Zhou et al. (2016):
the last conv block's feature maps weighted by the classifier's weights of the predicted class
(or ``--class``), ReLU, upsampled over time and space to the clip and scaled to [0, 1]. With a
pretrain checkpoint there is no classifier; the map is then the mean activation of the last conv
block over its channels (where the backbone "looks"), and the output says so.

Per video, ``DIR/<stem>_cam.png`` shows the frames (top) above the maps blended over them
(bottom), and ``DIR/<stem>_cam.mp4`` plays the input and the overlay side by side.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s2vc.engine import video_io

from .transforms import eval_transform, normalize_clip

__all__ = ["activation_map", "overlay", "add_arguments", "main"]


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


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--checkpoint", required=True, help="finetune checkpoint (CAM) or pretrain checkpoint "
                                                      "(activation map, no classifier)")
    p.add_argument("--out", required=True, help="folder for the PNGs and MP4s")
    p.add_argument("--class", dest="target", default=None, help="class name or index (default: the prediction)")
    p.add_argument("--frames", type=int, default=None, help="default: the finetuned model's, else 16")
    p.add_argument("--stride", type=int, default=None, help="default: the finetuned model's, else 2")
    p.add_argument("--start", type=int, default=0, help="first frame of the clip")
    p.add_argument("--size", type=int, default=None,
                   help="centre crop fed to the backbone (default: the finetuned model's, else 112)")
    p.add_argument("--device", default=None)
    return p


def _target(value: str | None, classes: list[str]) -> int | None:
    if value is None:
        return None
    if value in classes:
        return classes.index(value)
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    raise SystemExit(f"cam: unknown class {value!r}; the classifier's classes are {classes}")


def main(args: argparse.Namespace) -> dict:
    from .evaluate import load_backbone
    from .finetune import load_classifier
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and "classifier" in ckpt:
        model, cfg = load_classifier(args.checkpoint, device)
        classes, kind = cfg["classes"], "CAM"
    else:
        model, cfg, classes, kind = load_backbone(args.checkpoint).to(device), {}, [], "activation map"
        if args.target is not None:
            raise SystemExit("cam: --class needs a finetune checkpoint (a pretrain checkpoint has no classifier)")
    target = _target(args.target, classes) if classes else None
    for key, fallback in (("frames", 16), ("stride", 2), ("size", 112)):
        if getattr(args, key) is None:
            setattr(args, key, cfg.get(key) or fallback)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    span = (args.frames - 1) * args.stride + 1
    results = []
    for path in args.videos:
        raw = video_io.read_video(path, start_frame=args.start, step=args.stride, max_frames=args.frames,
                                  min_frames=args.frames)
        clip = eval_transform(args.size)(video_io.to_float_video(raw))       # (3, T, S, S)
        x = normalize_clip(clip[None].to(device))
        if kind == "CAM":
            t = None if target is None else torch.tensor([target], device=device)
            maps, used = model.cam(x, t)
            probs = F.softmax(model(x), dim=1)[0].cpu()
            label = classes[int(used)]
            desc = f"CAM of class {label!r} (p = {probs[int(used)]:.2f})"
        else:
            maps, label = activation_map(model, x), None
            desc = "mean activation of the last conv block (no classifier)"
        blended = overlay(clip, maps[0].cpu())
        stem = Path(path).stem
        if sum(Path(v).stem == stem for v in args.videos) > 1:     # same name in two folders
            stem = f"{Path(path).parent.name}_{stem}"
        frames_u8, over_u8 = video_io.to_uint8_frames(clip), video_io.to_uint8_frames(blended)
        png = video_io.write_contact_sheet(out / f"{stem}_cam.png", [frames_u8, over_u8],
                                           labels=[f"{stem}: frames {args.start}..{args.start + span - 1}", desc])
        mp4 = video_io.write_video(out / f"{stem}_cam.mp4", torch.cat([frames_u8, over_u8], dim=2).numpy(),
                                   fps=max(1.0, 25.0 / args.stride))
        results.append({"video": str(path), "kind": kind, "class": label, "png": str(png), "mp4": str(mp4),
                        "map_mean": float(maps.mean())})
        print(f"{path}: {desc} -> {png}, {mp4}")
    (out / "cam.json").write_text(json.dumps(results, indent=2))
    if kind != "CAM":
        print("cam: a pretrain checkpoint has no classifier; finetune it (`s2vc eval finetune`) for CAMs",
              file=sys.stderr)
    return {"maps": results}
