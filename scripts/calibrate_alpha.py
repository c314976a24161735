"""Record in a flow checkpoint the alpha that preserves a given fraction of latents.

    python scripts/calibrate_alpha.py CKPT [--preserve 0.227] [--videos ...]

Windows of --clip-len frames of the sample videos (or the given ones) are pooled to the flow's
resolution and encoded; alpha is the quantile of their latents' temporal STD that leaves
--preserve of them above it (the paper reports 22.7% preserved at its alpha = 0.5). The value
lands in the checkpoint's meta["alpha"], which ``s2vc generate`` / ``demo`` use by default.
The weights and their hash are untouched.
"""
import argparse

import torch
import torch.nn.functional as F

from s2vc.engine import video_io
from s2vc.engine.checkpoint import atomic_torch_save, flow_from_checkpoint
from s2vc.engine.samples import require_sample_videos
from s2vc.engine.suppression import alpha_for_preserved_fraction

p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
p.add_argument("checkpoint")
p.add_argument("--preserve", type=float, default=0.227)
p.add_argument("--videos", nargs="*", default=None)
p.add_argument("--clip-len", type=int, default=16)
p.add_argument("--size", type=int, default=112)
args = p.parse_args()

ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
flow = flow_from_checkpoint(ckpt, args.checkpoint).prepare()
stds = []
videos = args.videos or [str(v) for v in require_sample_videos()]
with torch.no_grad():
    for v in videos:
        frames = video_io.read_video(v, size=args.size, max_frames=8 * args.clip_len)
        clips = frames[: frames.shape[0] // args.clip_len * args.clip_len]
        x = clips.permute(0, 3, 1, 2).float().div(255)
        z = flow.encode(F.adaptive_avg_pool2d(x, flow.config.resolution))
        stds.append(z.reshape(-1, args.clip_len, z.shape[1]).std(dim=1))
alpha = alpha_for_preserved_fraction(torch.cat(stds), args.preserve)
ckpt["meta"]["alpha"] = alpha
ckpt["meta"]["alpha_calibration"] = {"preserve": args.preserve, "videos": [v.split("/")[-1] for v in videos],
                                     "clip_len": args.clip_len, "size": args.size, "windows": sum(len(s) for s in stds)}
atomic_torch_save(ckpt, args.checkpoint)
print(f"alpha = {alpha:.4f} preserves {100 * args.preserve:.1f}% of latents over {sum(len(s) for s in stds)} windows")
