"""Experiments that pretrain several runs and evaluate each: the reproduction and the ablations.

    s2vc reproduce --out DIR [--arms moco s2vc tfd oracle] [--seeds 0 1 2] [--steps N] ...
    s2vc ablate alpha --values 0.3 0.5 0.7 --out DIR ...       (the paper's Fig. 3)
    s2vc ablate strategy --values zero noise shuffle_clip shuffle_frame --out DIR ...  (Table 4)

Every run is an ordinary ``s2vc pretrain`` run folder (DIR/runs/<name>) with
``--snapshot-every``, so each keeps the model at step 0 and every N steps; each snapshot is
evaluated once and its result cached beside it (``eval/step_NNNNNN.json``). Both commands are
therefore resumable: killed, they are started again with the same arguments and continue with
the first run or evaluation that is not finished (pretraining itself resumes mid-run).

Every snapshot gets, on the synthetic static-bias set (train split: looks tied to the class;
test split: looks random):
    R@1, R@5   test videos query the train set (``metrics.retrieval_recall``)
    linear     linear probe trained on train, tested on test (``evaluate.linear_probe``)
    motion     motion probe on disjoint groups of the test split (``probes.motion_probe``)
    look_*     look probes (scene, shape, colour) on the test split (``probes.look_probe``)
The frame-difference feature (no learning) is evaluated the same way, as a reference line.

Results: DIR/results.json (every snapshot of every run), DIR/results.md (tables: mean ± std
over seeds), DIR/curves.png (learning curves) or DIR/ablation.png, and the table on stdout.
The evaluation windows are decoded once per command (``probes.ClipBank``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from s2vc.engine.checkpoint import atomic_torch_save

from .evaluate import linear_probe, load_backbone
from .metrics import retrieval_recall
from .pretrain import MODES, get_args_parser as pretrain_parser, main as pretrain_main, snapshots
from .probes import LOOKS, PROBE_WEIGHT_DECAY, ClipBank, look_probe, motion_probe

__all__ = ["METRICS", "Evaluator", "reproduce", "ablate", "add_reproduce_arguments", "add_ablate_arguments",
           "main_reproduce", "main_ablate", "summarise"]

METRICS = ("R@1", "R@5", "linear", "motion") + tuple(f"look_{k}" for k in LOOKS)
HEADLINE = ("R@1", "R@5", "linear", "motion", "look_scene")
CURVES = ("R@1", "linear", "motion", "look_scene", "look_colour")
# bump when ``Evaluator.score`` changes: cached scores of another version are recomputed from
# the cached features
SCORER = 2


class Evaluator:
    """Decodes the synthetic set's train and test windows once; scores features or backbones."""

    def __init__(self, args):
        from .datasets import build_dataset
        kw = {"synthetic_kwargs": synthetic_kwargs(args)}
        common = dict(frames=args.frames, stride=args.stride, size=None, two_clips=False, **kw)
        bank = dict(num_clips=args.num_clips, overlap=0.5, size=args.size, workers=args.workers)
        self.train = ClipBank.from_dataset(build_dataset("synthetic", split="train", **common), **bank)
        self.test = ClipBank.from_dataset(build_dataset("synthetic", split="test", **common), **bank)
        self.looks, self.groups = self.test.looks(), self.test.groups
        self.classes = int(max(self.train.labels.max(), self.test.labels.max())) + 1
        self.seed, self.batch_size = args.seed_eval, args.eval_batch_size
        self.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def chance(self) -> dict[str, float]:
        c = {"R@1": float("nan"), "R@5": float("nan"), "linear": 1 / self.classes, "motion": 1 / self.classes}
        c.update({f"look_{k}": 1 / (int(v.max()) + 1) for k, v in self.looks.items()})
        return c

    def score(self, train_f: torch.Tensor, test_f: torch.Tensor) -> dict[str, float]:
        r = retrieval_recall(test_f, self.test.labels, train_f, self.train.labels, (1, 5))
        lin = linear_probe(train_f, self.train.labels, test_f, self.test.labels, seed=self.seed,
                           num_classes=self.classes, weight_decay=PROBE_WEIGHT_DECAY)["top1"]
        out = {**r, "linear": lin, "motion": motion_probe(test_f, self.test.labels, self.groups, seed=self.seed)}
        out.update({f"look_{k}": v for k, v in look_probe(test_f, self.looks, self.groups, seed=self.seed).items()})
        return out

    def features(self, backbone) -> dict[str, torch.Tensor]:
        """{"train": (V_train, C), "test": (V_test, C)}: the backbone's per-video features."""
        return {split: bank.features(backbone, device=self.device, batch_size=self.batch_size)
                for split, bank in (("train", self.train), ("test", self.test))}

    def score_frame_difference(self) -> dict[str, float]:
        return self.score(self.train.frame_difference(), self.test.frame_difference())


def synthetic_kwargs(args) -> dict:
    return {"seed": args.synthetic_seed, "train_per_class": args.train_per_class,
            "test_per_class": args.test_per_class, "bias": args.bias}


def _pretrain_argv(args, run: Path, mode: str, seed: int, extra: list[str]) -> list[str]:
    argv = ["--out", str(run), "--resume", "--mode", mode, "--seed", str(seed), "--dataset", "synthetic",
            "--backbone", args.backbone, "--frames", str(args.frames), "--stride", str(args.stride),
            "--size", str(args.size), "--batch-size", str(args.batch_size), "--queue", str(args.queue),
            "--moco-m", str(args.moco_m), "--lr", str(args.lr), "--epochs", "100000", "--max-steps", str(args.steps),
            "--snapshot-every", str(args.snapshot_every), "--ckpt-every", str(args.ckpt_every or args.snapshot_every),
            "--synthetic-seed", str(args.synthetic_seed), "--synthetic-bias", args.bias,
            "--synthetic-train-per-class", str(args.train_per_class),
            "--synthetic-test-per-class", str(args.test_per_class), "--workers", str(args.workers),
            "--cache-videos"]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.flow:
        argv += ["--flow", args.flow]
    if args.alpha is not None and "--alpha" not in extra:
        argv += ["--alpha", str(args.alpha)]
    if args.device:
        argv += ["--device", args.device]
    if args.no_progress:
        argv.append("--no-progress")
    return argv + extra


def _train(args, run: Path, mode: str, seed: int, extra: list[str]) -> dict:
    """Pretrain (or resume) one run; returns {"train_s": summed step time, "preserved": mean}."""
    if not args.eval_only:
        pa = pretrain_parser().parse_args(_pretrain_argv(args, run, mode, seed, extra))
        pretrain_main(pa)
    ckpt = run / "checkpoint.pt"
    if not ckpt.exists():
        return {"train_s": math.nan, "preserved": math.nan, "steps": 0}
    history = torch.load(ckpt, map_location="cpu", weights_only=True)["history"]
    kept = [h["preserved"] for h in history if not math.isnan(h["preserved"])]
    return {"train_s": float(sum(h["t_data"] + h["t_gen"] + h["t_model"] for h in history)),
            "preserved": float(np.mean(kept)) if kept else math.nan, "steps": len(history)}


def _evaluate_run(run: Path, evaluator: "_LazyEvaluator", max_step: int) -> list[dict]:
    """Scores of every snapshot of ``run``, cached: the scores (``eval/step_N.json``, redone when
    ``SCORER`` changed) and the features they came from (``eval/step_N.features.pt``, so a new
    scorer does not run the backbone again)."""
    rows = []
    for step, path in snapshots(run).items():
        if step > max_step:                  # a run trained further than this command's --steps
            continue
        cache = run / "eval" / f"step_{step:06d}.json"
        feats = cache.with_suffix(".features.pt")
        scores = json.loads(cache.read_text()) if cache.exists() else {}
        if scores.pop("scorer", None) != SCORER:
            if feats.exists():
                f = torch.load(feats, weights_only=True)
            else:
                f = evaluator().features(load_backbone(path))
                feats.parent.mkdir(parents=True, exist_ok=True)
                atomic_torch_save(f, feats)
            scores = evaluator().score(f["train"], f["test"])
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({**scores, "scorer": SCORER}, indent=1))
            tmp.replace(cache)
        rows.append({"step": step, **scores})
    return rows


class _LazyEvaluator:
    """Builds the ``Evaluator`` (decoding every window) only when a score is not cached."""

    def __init__(self, args):
        self.args, self.value = args, None

    def __call__(self) -> Evaluator:
        if self.value is None:
            self.value = Evaluator(self.args)
        return self.value


def _reference(args, out: Path, evaluator: _LazyEvaluator) -> dict:
    path = out / "reference.json"
    if path.exists():
        ref = json.loads(path.read_text())
        if ref.get("scorer") == SCORER:
            return ref
    ev = evaluator()
    ref = {"frame_difference": ev.score_frame_difference(), "chance": ev.chance(), "scorer": SCORER}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ref, indent=1))
    tmp.replace(path)
    return ref


# what the runs and cached evaluations of an experiment folder depend on: a command that names
# other values for these is refused instead of mixing two experiments (seeds, arms, values and
# --steps may grow; threads, workers, device and logging may change)
PINNED = ("backbone", "frames", "stride", "size", "batch_size", "queue", "moco_m", "lr", "synthetic_seed",
          "train_per_class", "test_per_class", "bias", "num_clips", "seed_eval", "flow", "alpha")


def _pin(args, out: Path, kind: str) -> None:
    if args.steps < 1 or args.snapshot_every < 1 or (args.ckpt_every is not None and args.ckpt_every < 1):
        raise SystemExit(f"{kind}: --steps, --snapshot-every and --ckpt-every must be >= 1")
    want = {k: getattr(args, k) for k in PINNED}
    path = out / "experiment.json"
    if path.exists():
        have = json.loads(path.read_text())
        changed = {k: (have[k], v) for k, v in want.items() if k in have and have[k] != v}
        if changed:
            raise SystemExit(f"{kind}: {out} holds an experiment with other settings: "
                             + ", ".join(f"{k} {a!r} (there) vs {b!r} (asked)" for k, (a, b) in changed.items())
                             + "; use another --out, or the same settings to continue it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(want, indent=1))


def key_sheet(args, arms, path: Path, videos: int = 2) -> Path:
    """A picture of what each arm's MoCo key looks like: for the first ``videos`` training videos,
    the clip (no augmentation) and the key every arm in ``arms`` makes of it; one row each."""
    from s2vc.engine import video_io

    from .datasets import build_dataset
    from .pretrain import KeyMaker
    from .synthetic import load_mask
    ds = build_dataset("synthetic", split="train", frames=args.frames, stride=args.stride, size=None,
                       two_clips=False, synthetic_kwargs=synthetic_kwargs(args))
    root = Path(ds.records[0].path).parents[2]
    rows, labels = [], []
    for i in range(videos):
        clip = ds.eval_clips(i * (len(ds) // videos), 1)["clips"][:1]                  # (1, C, T, H, W)
        record = ds.records[i * (len(ds) // videos)]
        rows.append(video_io.to_uint8_frames(clip[0]))
        labels.append(f"{record.video_id} (class {ds.classes[record.label]}): the clip")
        for arm in arms:
            if arm == "moco":
                continue
            if arm == "oracle":
                mask = torch.from_numpy(load_mask(root, record.video_id)[:ds.span:ds.stride]).float()
                key = clip * mask[None, None]
            else:
                extra = (["--flow", args.flow] if args.flow else []) + \
                    (["--alpha", str(args.alpha)] if args.alpha is not None else [])
                pa = pretrain_parser().parse_args(["--out", str(path.parent), "--mode", arm, "--device", "cpu", *extra])
                key, _ = KeyMaker(pa, torch.device("cpu"))(clip, {}, 0)
            rows.append(video_io.to_uint8_frames(key[0].clamp(0, 1)))
            labels.append(f"{arm} key")
    return video_io.write_contact_sheet(path, rows, labels)


def summarise(rows: list[dict], key: str) -> dict:
    """rows of {key, "seed", "step", metrics...} -> {value: {step: {metric: (mean, std, n)}}}."""
    out: dict = {}
    for r in rows:
        out.setdefault(r[key], {}).setdefault(r["step"], []).append(r)
    return {v: {s: {m: (float(np.mean([r[m] for r in rs])), float(np.std([r[m] for r in rs])), len(rs))
                    for m in METRICS} for s, rs in sorted(steps.items())} for v, steps in out.items()}


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:5.1f}" + (f" ± {100 * std:4.1f}" if n > 1 else "")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _final_table(summary: dict, ref: dict, label: str, extra: dict | None = None) -> str:
    header = [label, "step", "seeds"] + [m for m in METRICS] + (list(next(iter(extra.values()))) if extra else [])
    rows = []
    for value, steps in summary.items():
        last = max(steps)
        cells = steps[last]
        n = cells[METRICS[0]][2]
        row = [str(value), str(last), str(n)] + [_fmt(*cells[m]) for m in METRICS]
        if extra:
            row += [f"{x:.3f}" if isinstance(x, float) else str(x) for x in extra[value].values()]
        rows.append(row)
    fd = ref["frame_difference"]
    rows.append(["frame difference (no learning)", "-", "-"] + [f"{100 * fd[m]:5.1f}" for m in METRICS]
                + (["-"] * len(next(iter(extra.values()))) if extra else []))
    ch = ref["chance"]
    rows.append(["chance", "-", "-"] + ["-" if math.isnan(ch[m]) else f"{100 * ch[m]:5.1f}" for m in METRICS]
                + (["-"] * len(next(iter(extra.values()))) if extra else []))
    return _markdown_table(header, rows)


def _curve_table(summary: dict, metric: str) -> str:
    steps = sorted({s for v in summary.values() for s in v})
    rows = [[str(v)] + [_fmt(*cells[s][metric]) if s in cells else "" for s in steps] for v, cells in summary.items()]
    return _markdown_table([f"{metric} at step"] + [str(s) for s in steps], rows)


def _plot_curves(summary: dict, ref: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("R@1", "retrieval R@1 (test queries train)"), ("linear", "linear probe (train -> test)"),
              ("motion", "motion probe (test split, disjoint groups)"), ("look_scene", "look probe: scene"),
              ("look_colour", "look probe: actor colour")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (metric, name) in zip(axes, panels):
        for value, cells in summary.items():
            steps = sorted(cells)
            mean = np.array([cells[s][metric][0] for s in steps]) * 100
            std = np.array([cells[s][metric][1] for s in steps]) * 100
            ax.plot(steps, mean, marker="o", label=str(value))
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.axhline(100 * ref["frame_difference"][metric], color="k", ls="--", lw=1, label="frame difference")
        if not math.isnan(ref["chance"][metric]):
            ax.axhline(100 * ref["chance"][metric], color="grey", ls=":", lw=1, label="chance")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("%")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _budget_text(args) -> str:
    return (f"backbone {args.backbone}, {args.frames} frames (stride {args.stride}) at {args.size}², batch "
            f"{args.batch_size}, queue {args.queue}, m {args.moco_m}, lr {args.lr}, {args.steps} steps, snapshots "
            f"every {args.snapshot_every}; flow {args.flow or 'bundled'}, alpha "
            f"{args.alpha if args.alpha is not None else 'from the flow checkpoint'}; synthetic set seed {args.synthetic_seed}, {args.train_per_class} train / "
            f"{args.test_per_class} test videos per class, bias {args.bias}")


def reproduce(args: argparse.Namespace) -> dict:
    """Pretrain every arm with every seed and evaluate every snapshot; see the module docstring."""
    start = time.perf_counter()
    out = Path(args.out)
    for arm in args.arms:
        if arm not in MODES:
            raise SystemExit(f"reproduce: unknown arm {arm!r}; use some of {MODES}")
    _pin(args, out, "reproduce")
    evaluator = _LazyEvaluator(args)
    rows, runs = [], {}
    for seed in args.seeds:
        for arm in args.arms:
            run = out / "runs" / f"{arm}_seed{seed}"
            print(f"reproduce: {arm}, seed {seed} -> {run}", file=sys.stderr)
            runs[run.name] = _train(args, run, arm, seed, [])
            rows += [{"arm": arm, "seed": seed, **r} for r in _evaluate_run(run, evaluator, args.steps)]
    ref = _reference(args, out, evaluator)
    if not (out / "keys.png").exists():
        key_sheet(args, args.arms, out / "keys.png")
    summary = summarise(rows, "arm")
    wall = time.perf_counter() - start
    title = (f"{' vs '.join(args.arms)} on the synthetic static-bias set "
             f"({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''})")
    tables = {"final": _final_table(summary, ref, "arm"),
              **{f"curve {m}": _curve_table(summary, m) for m in CURVES}}
    _plot_curves(summary, ref, out / "curves.png", title)
    result = {"rows": rows, "runs": runs, "reference": ref, "budget": _budget_text(args),
              "command_wall_s": wall, "tables": tables}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    md = [f"# {title}", "", f"Budget: {_budget_text(args)}.", "",
          "Metrics in % (mean ± std over seeds) at the last snapshot; chance of R@k is not a constant.", "",
          tables["final"], ""]
    for m in CURVES:
        md += [f"Learning curve, {m}:", "", tables[f"curve {m}"], ""]
    md += ["Pretraining time per run (summed step time, s): " +
           ", ".join(f"{k} {v['train_s']:.0f}" for k, v in runs.items()), "",
           f"Curves: {out / 'curves.png'}; what each arm's key looks like: {out / 'keys.png'}"]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print(tables["final"])
    print(f"\nlearning curves: {out / 'curves.png'}; tables: {out / 'results.md'}; "
          f"{wall:.0f} s in this command", file=sys.stderr)
    return result


ABLATIONS = {"alpha": "--alpha", "strategy": "--strategy"}


def _plot_ablation(kind: str, summary: dict, ref: dict, preserved: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    values = list(summary)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    xs = np.arange(len(values)) if kind == "strategy" else np.array([float(v) for v in values])
    for j, metric in enumerate(HEADLINE):
        mean = np.array([summary[v][max(summary[v])][metric][0] for v in values]) * 100
        if kind == "strategy":
            ax.bar(xs + (j - 2) * 0.16, mean, width=0.16, label=metric)
        else:
            ax.plot(xs, mean, marker="o", label=metric)
    if kind == "strategy":
        ax.set_xticks(xs, values)
    else:
        ax.set_xlabel("α")
        twin = ax.twinx()
        twin.plot(xs, [100 * preserved[v] for v in values], "k--", marker="s", label="preserved latents")
        twin.set_ylabel("preserved latents (%)")
        twin.legend(fontsize=7, loc="upper right")
    ax.set_ylabel("%")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"S²VC {kind} ablation (last snapshot, mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablate(args: argparse.Namespace) -> dict:
    """Pretrain S²VC at every value of --alpha or --strategy (each seed), evaluate, tabulate."""
    start = time.perf_counter()
    kind, out = args.ablation, Path(args.out)
    if kind == "alpha":
        values = [float(v) for v in args.values]
    else:
        from s2vc.engine.suppression import STRATEGIES
        values = list(args.values)
        bad = [v for v in values if v not in STRATEGIES]
        if bad:
            raise SystemExit(f"ablate strategy: unknown strategies {bad}; use some of {STRATEGIES}")
    _pin(args, out, f"ablate {kind}")
    evaluator = _LazyEvaluator(args)
    rows, runs = [], {}
    for seed in args.seeds:
        for value in values:
            run = out / "runs" / f"{kind}_{value}_seed{seed}"
            print(f"ablate: {kind} = {value}, seed {seed} -> {run}", file=sys.stderr)
            runs[run.name] = _train(args, run, "s2vc", seed, [ABLATIONS[kind], str(value)])
            rows += [{kind: value, "seed": seed, **r} for r in _evaluate_run(run, evaluator, args.steps)]
    ref = _reference(args, out, evaluator)
    summary = summarise(rows, kind)
    preserved = {v: float(np.nanmean([runs[f"{kind}_{v}_seed{s}"]["preserved"] for s in args.seeds])) for v in values}
    table = _final_table(summary, ref, kind, {v: {"preserved": preserved[v]} for v in values})
    _plot_ablation(kind, summary, ref, preserved, out / "ablation.png")
    wall = time.perf_counter() - start
    result = {"rows": rows, "runs": runs, "preserved": preserved, "reference": ref, "budget": _budget_text(args),
              "command_wall_s": wall, "table": table}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(f"# S²VC {kind} ablation\n\nBudget: {_budget_text(args)}.\n\n{table}\n\n"
                                    f"preserved = mean fraction of latents kept per step of pretraining.\n"
                                    f"Plot: {out / 'ablation.png'}\n")
    print(table)
    print(f"\nplot: {out / 'ablation.png'}; tables: {out / 'results.md'}; {wall:.0f} s in this command", file=sys.stderr)
    return result


def _add_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="experiment folder (runs, cached evaluations, results)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300, help="pretraining steps per run")
    p.add_argument("--snapshot-every", type=int, default=100, help="steps between evaluated snapshots")
    p.add_argument("--ckpt-every", type=int, default=None,
                   help="steps between resumable checkpoints (default: --snapshot-every)")
    p.add_argument("--eval-only", action="store_true", help="train nothing; evaluate the snapshots there are")
    g = p.add_argument_group("pretraining budget (every run the same)")
    g.add_argument("--backbone", default="small")
    g.add_argument("--frames", type=int, default=16)
    g.add_argument("--stride", type=int, default=2)
    g.add_argument("--size", type=int, default=64)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--queue", type=int, default=64,
                   help="MoCo queue; keep it below the number of training videos, or each video's own "
                        "earlier keys sit in the queue as negatives")
    g.add_argument("--moco-m", type=float, default=0.99)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--flow", default=None, help="flow checkpoint of the s2vc (and tfd resolution) arms; default: bundled")
    g.add_argument("--alpha", type=float, default=None, help="s2vc arm's alpha; default: the flow checkpoint's")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--workers", type=int, default=0)
    g.add_argument("--device", default=None)
    g.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("data and evaluation")
    g.add_argument("--synthetic-seed", type=int, default=0)
    g.add_argument("--train-per-class", type=int, default=20)
    g.add_argument("--test-per-class", type=int, default=30)
    g.add_argument("--bias", default="strong")
    g.add_argument("--num-clips", type=int, default=4, help="evaluation windows per video")
    g.add_argument("--eval-batch-size", type=int, default=32)
    g.add_argument("--seed-eval", type=int, default=0, help="seed of the linear classifiers")


def add_reproduce_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--arms", nargs="+", default=list(MODES), help=f"pretraining modes to compare, of {MODES}")
    _add_budget(p)
    return p


def add_ablate_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("ablation", choices=tuple(ABLATIONS), help="what varies: alpha (Fig. 3) or strategy (Table 4)")
    p.add_argument("--values", nargs="+", required=True, help="the alphas or strategies")
    _add_budget(p)
    return p


def main_reproduce(args: argparse.Namespace) -> dict:
    return reproduce(args)


def main_ablate(args: argparse.Namespace) -> dict:
    return ablate(args)
