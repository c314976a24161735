"""Experiments that pretrain several runs and evaluate each: the reproduction and the ablations.

    reproduce(ReproduceConfig(out=DIR, arms=("moco", "s2vc", "tfd", "oracle"), seeds=(0, 1, 2), steps=N))
    ablate(AblateConfig(out=DIR, ablation="alpha", values=(0.3, 0.5, 0.7)))           (the paper's Fig. 3)
    ablate(AblateConfig(out=DIR, ablation="preserve", values=(0.05, 0.227, 0.6)))     (Fig. 3 by fraction kept)
    ablate(AblateConfig(out=DIR, ablation="strategy", values=("zero", "noise", ...)))  (Table 4)

(``s2vc reproduce`` / ``s2vc ablate`` on the command line.) Every run is an ordinary pretraining
run folder (DIR/runs/<name>, ``training.pretrain``) with ``snapshot_every``, so each keeps the
model at step 0 and every N steps; each snapshot is evaluated once and its result cached beside
it (``eval/step_NNNNNN.json``, see ``training/experiments/scoring.py`` for the metrics). Both are
therefore resumable: killed, they are started again with the same settings and continue with
the first run or evaluation that is not finished (pretraining itself resumes mid-run). The
settings the results depend on are pinned in DIR/experiment.json: other ones are refused.

Results: DIR/results.json (every snapshot of every run), DIR/results.md (tables: mean ± sample
SD (ddof 1) over seeds; for a reproduction the paired differences of the pairs that matter with
95% t intervals and sign counts, ``training/experiments/paired.py``, and the step-0 check),
DIR/curves.png (learning curves) and DIR/keys.png (each arm's key, redrawn when the arms change),
or DIR/ablation.png; the tables on stdout. ``split="val"`` scores on the set's validation split
and writes DIR/results_val.* and DIR/curves_val.png (ablation_val.png); the evaluation windows are decoded once per call.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .scoring import LazyEvaluator, evaluate_runs
from .paired import paired_rows, paired_table, pairs_for, step0_line
from .report import CURVES, curve_table, final_table, plot_ablation, plot_curves, summarise
from .scoring import METRICS
from ..flow.fitted import BUNDLED_FLOW
from .sets import DEFAULT_DECODE_SIZE, cache_decision, check_set, experiment_flow, set_text
from .pins import PINNED, pin_experiment, pinned_settings  # noqa: F401  (PINNED, pinned_settings: re-exported)
from .report import missing_metrics_line
from .key_sheet import draw_key_sheet
from ..pretrain.keys import KEYS_SUFFIX, MODES, PREGENERATED_MODES
from ..pretrain.loop import PretrainConfig
from .runs import keep_record, train_run
from ..data.synthetic import SyntheticSet
from s2vc.engine.checkpoint import atomic_write_text

# the pre-registered primary metrics (docs/RESULTS.md), and the linear probe beside them
PAIRED_METRICS = ("R@1", "motion", "linear")

__all__ = ["ExperimentConfig", "ReproduceConfig", "AblateConfig", "ABLATIONS", "ARMS", "BUNDLED_FLOW", "PINNED",
           "experiment_flow", "reproduce", "ablate", "summarise"]

# the arms of a reproduction: every pretraining mode, and "<mode>-keys" for the modes whose keys
# can be pre-generated: the same arm trained on keys read from the set's mirror (generated once
# per experiment, training/pretrain/mirror.py) instead of made each step
# the project's own variants of the s2vc key, arms of their own (a candidate for --best)
VARIANTS = {"s2vc-dynamic": {"mode": "s2vc", "detail": "dynamic"}, "s2vc-topk": {"mode": "s2vc", "strategy": "topk"}}
# a variant read from a mirror made once, as s2vc-keys and tfd-keys are ("<variant>-keys"): the
# variant made the same way as the paper's key, so that a difference between them is the
# strategy's, not the way the key is made (the mirror takes a strategy; --detail is the
# generator's each step only, so s2vc-dynamic has no mirror)
KEYED_VARIANTS = {"s2vc-topk" + KEYS_SUFFIX: VARIANTS["s2vc-topk"]}
ARMS = MODES + tuple(mode + KEYS_SUFFIX for mode in PREGENERATED_MODES) + tuple(VARIANTS) + tuple(KEYED_VARIANTS)


@dataclass(kw_only=True)
class ExperimentConfig:
    """The budget every run of an experiment shares, and how it is evaluated (the flags of
    ``s2vc reproduce`` / ``s2vc ablate``). ``ckpt_every`` None = ``snapshot_every``; ``flow`` /
    ``alpha``: the s2vc arm's (flow None: the set's own fitted flow, "bundled": the bundled one —
    see ``experiment_flow``; alpha None: the flow's calibrated one); ``dataset`` / ``root`` /
    ``fold``: the set the runs train on and are evaluated on: the built-in ``synthetic`` set
    (``synthetic`` says which) or a set of one's own in a public layout (``ucf101``, ``hmdb51``,
    ``kinetics``: its train split trains, its test — or val — split is scored; ``--flow`` names
    a flow fitted to it); ``decode_size``: the short side frames are decoded at (None: as stored
    for the synthetic set, ``DEFAULT_DECODE_SIZE`` for the others)."""

    out: str                                   # experiment folder: runs, cached evaluations, results
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 300                           # pretraining steps per run
    snapshot_every: int = 100                  # steps between evaluated snapshots
    ckpt_every: int | None = None
    eval_only: bool = False                    # train nothing; evaluate the snapshots there are
    backbone: str = "small"
    frames: int = 16
    stride: int = 2
    size: int = 64
    batch_size: int = 16
    queue: int = 64
    moco_m: float = 0.99
    lr: float = 1e-3
    flow: str | None = None
    alpha: float | None = None
    threads: int | None = None
    workers: int = 0
    cache_videos: bool | None = None           # decoded training videos kept in memory; None: if they fit
    device: str | None = None
    no_progress: bool = False
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    dataset: str = "synthetic"
    root: str | None = None
    fold: int = 1
    decode_size: int | None = None
    num_clips: int = 4                         # evaluation windows per video
    eval_batch_size: int = 32
    seed_eval: int = 0                         # seed of the linear classifiers
    split: str = "test"                        # scored on: "test", or "val" (choosing budgets and variants)

    def __post_init__(self):
        self.seeds = tuple(self.seeds)
        if self.dataset != "synthetic" and self.decode_size is None:
            self.decode_size = DEFAULT_DECODE_SIZE
        if self.root:                     # one spelling of the set, whatever folder a command runs in
            self.root = str(Path(self.root).resolve())


@dataclass(kw_only=True)
class ReproduceConfig(ExperimentConfig):
    """``reproduce``: every arm (a pretraining mode of ``MODES``, or ``<mode>-keys``: see ``ARMS``)
    with every seed (an arm ``seeds_of`` names: with its seeds only); ``arms`` None: every mode
    (the oracle only on the synthetic set: it needs its actor masks)."""

    arms: tuple[str, ...] | None = None
    best: str | None = None                    # the arm that is the project's variant (its pairs are reported)
    # "ARM=S,S,..": that arm runs only these of ``seeds`` (the pre-registration lets oracle, be and
    # fame stay at seeds 0-2 when CPU time runs short; the deciding pairs take every seed)
    seeds_of: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if self.arms is None:
            self.arms = tuple(m for m in MODES if self.dataset == "synthetic" or m != "oracle")
        # an arm named twice (--arms ... s2vc-keys --best s2vc-keys: the paper's key chosen as the variant) runs once
        self.arms = tuple(dict.fromkeys(self.arms))
        self.seeds_of = tuple(self.seeds_of)
        self._arm_seeds = parse_seeds_of(self.seeds_of, self.arms, self.seeds)

    def seeds_for(self, arm: str) -> tuple[int, ...]:
        """The seeds ``arm`` runs: ``seeds``, or those ``seeds_of`` gives it."""
        return self._arm_seeds.get(arm, self.seeds)


def parse_seeds_of(specs, arms, seeds) -> dict[str, tuple[int, ...]]:
    """{arm: its seeds} of "ARM=S,S,.." specs (``--seeds-of``): each arm one of ``arms``, named
    once, with a non-empty subset of ``seeds`` (ValueError naming the spec otherwise)."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        arm, eq, values = str(spec).partition("=")
        try:
            chosen = tuple(int(v) for v in values.split(",")) if eq and values.strip() else ()
        except ValueError:
            chosen = ()
        if not chosen:
            raise ValueError(f"--seeds-of {spec!r}: write ARM=SEED,SEED,... (e.g. oracle=0,1,2)")
        if arm not in arms:
            raise ValueError(f"--seeds-of {spec!r}: {arm!r} is not one of the arms {list(arms)}")
        if arm in out:
            raise ValueError(f"--seeds-of names {arm!r} twice")
        extra = sorted(set(chosen) - set(seeds))
        if extra:
            raise ValueError(f"--seeds-of {spec!r}: seeds {extra} are not among --seeds {list(seeds)}")
        out[arm] = tuple(s for s in seeds if s in set(chosen))          # in --seeds' order
    return out


# what an ablation varies -> the pretraining setting it sets
# ablation -> the pretraining setting it varies ("preserve": the fraction of latents kept, turned
# into the alpha that keeps it on the set's training clips: ``preserve_alphas``)
ABLATIONS = {"alpha": "alpha", "preserve": "alpha", "strategy": "strategy", "detail": "detail"}


@dataclass(kw_only=True)
class AblateConfig(ExperimentConfig):
    """``ablate``: S²VC at every value of ``ablation`` ("alpha": floats, Fig. 3; "preserve":
    fractions of latents kept in (0, 1), each run at the alpha that keeps it (``preserve_alphas``);
    "strategy": names of ``engine.suppression.STRATEGIES``, Table 4; "detail": the generator's
    ``engine.generator.DETAILS``) with every seed."""

    ablation: str
    values: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        self.values = tuple(self.values)


def seeds_text(cfg: ReproduceConfig) -> str:
    """"3 seeds", or "6 seeds; oracle, be: 3 seeds" when ``seeds_of`` gives some arms fewer."""
    def n(k):
        return f"{k} seed{'s' if k > 1 else ''}"
    fewer = {}
    for arm in cfg.arms:
        if cfg.seeds_for(arm) != cfg.seeds:
            fewer.setdefault(len(cfg.seeds_for(arm)), []).append(arm)
    return "; ".join([n(len(cfg.seeds))] + [f"{', '.join(arms)}: {n(k)}" for k, arms in fewer.items()])


def run_settings(cfg: ExperimentConfig, run: Path, *, mode: str, seed: int, **changes) -> PretrainConfig:
    """The pretraining settings of one run of the experiment (resumed if it exists); ``changes``
    (e.g. alpha=0.3) override the budget's."""
    settings = PretrainConfig(
        out=str(run), resume=True, mode=mode, seed=seed, dataset=cfg.dataset, root=cfg.root, fold=cfg.fold,
        decode_size=cfg.decode_size, backbone=cfg.backbone,
        frames=cfg.frames, stride=cfg.stride, size=cfg.size, batch_size=cfg.batch_size, queue=cfg.queue,
        moco_m=cfg.moco_m, lr=cfg.lr, epochs=100000, max_steps=cfg.steps, snapshot_every=cfg.snapshot_every,
        ckpt_every=cfg.ckpt_every or cfg.snapshot_every, synthetic=cfg.synthetic, workers=cfg.workers,
        cache_videos=cfg.cache_videos is not False, threads=cfg.threads or None, flow=cfg.flow or None, alpha=cfg.alpha,
        device=cfg.device or None, no_progress=cfg.no_progress)
    return dataclasses.replace(settings, **changes)


def _evaluator(cfg: ExperimentConfig) -> LazyEvaluator:
    return LazyEvaluator(synthetic=cfg.synthetic, dataset=cfg.dataset, root=cfg.root, fold=cfg.fold,
                         decode_size=cfg.decode_size, frames=cfg.frames, stride=cfg.stride, size=cfg.size,
                         num_clips=cfg.num_clips, seed_eval=cfg.seed_eval, batch_size=cfg.eval_batch_size,
                         workers=cfg.workers, device=cfg.device, progress=not cfg.no_progress, split=cfg.split)


def budget_text(cfg: ExperimentConfig) -> str:
    """The budget in one sentence, for the reports."""
    return (f"backbone {cfg.backbone}, {cfg.frames} frames (stride {cfg.stride}) at {cfg.size}², batch "
            f"{cfg.batch_size}, queue {cfg.queue}, m {cfg.moco_m}, lr {cfg.lr}, {cfg.steps} steps, snapshots "
            f"every {cfg.snapshot_every}; flow {cfg.flow or 'bundled'}, alpha "
            f"{cfg.alpha if cfg.alpha is not None else 'from the flow checkpoint'}; {set_text(cfg)}")


def _train_and_evaluate(cfg: ExperimentConfig, out: Path, plan: dict[str, tuple[str, dict, dict]]):
    """Train every run of ``plan`` {name: (what it is, row labels, settings)} in order, then
    evaluate them all; returns (rows, {name: train summary}, reference scores)."""
    runs = {}
    evaluator = _evaluator(cfg)
    for name, (what, labels, settings) in plan.items():
        run = out / "runs" / name
        print(f"{what} -> {run}", file=sys.stderr)
        runs[name] = train_run(cfg, run_settings(cfg, run, seed=labels["seed"], **settings))
        if not cfg.eval_only:
            # scored as soon as it has trained, then recorded: the record and the scores are all a
            # study killed later (or continued in a fresh clone, without the weights) needs of it
            evaluate_runs({name: run}, evaluator, cfg.steps, out, progress=not cfg.no_progress)
            keep_record(run, cfg.steps)
    scores, ref = evaluate_runs({name: out / "runs" / name for name in plan}, evaluator, cfg.steps, out,
                                progress=not cfg.no_progress)
    rows = [{**labels, **r} for name, (_, labels, _) in plan.items() for r in scores[name]]
    return rows, runs, ref


def _arm_settings(cfg: ExperimentConfig, out: Path, arm: str) -> dict:
    """The pretraining settings an arm sets: its mode, and for ``<mode>-keys`` the mirror of the
    training split (generated now unless the experiment folder already holds it)."""
    if arm in VARIANTS:
        return dict(VARIANTS[arm])
    if not arm.endswith(KEYS_SUFFIX):
        return {"mode": arm}
    from ..pretrain.mirror import MirrorConfig, describe, generate_mirror
    name = arm.removesuffix(KEYS_SUFFIX)                     # the mirror's folder: the mode's or the variant's
    settings = dict(KEYED_VARIANTS.get(arm, {"mode": name}))
    mirror = out / "mirrors" / name
    if not (mirror / "manifest.json").exists() and not cfg.eval_only:    # eval_only trains nothing
        print(f"reproduce: generating the {name} keys of the training split once -> {mirror}", file=sys.stderr)
        report = generate_mirror(MirrorConfig(dataset=cfg.dataset, root=cfg.root, fold=cfg.fold, out=str(mirror),
                                              synthetic=cfg.synthetic, frames=cfg.frames, stride=cfg.stride,
                                              decode_size=cfg.decode_size, method=settings["mode"],
                                              strategy=settings.get("strategy", "zero"),
                                              flow=cfg.flow, alpha=cfg.alpha, device=cfg.device or "cpu",
                                              progress=not cfg.no_progress))
        print(describe(report), file=sys.stderr)
    return {**settings, "keys": str(mirror)}


def reproduce(cfg: ReproduceConfig) -> dict:
    """Pretrain every arm with each of its seeds (``seeds``, or ``seeds_of``'s) and evaluate every
    snapshot (see the module docstring);
    returns {"rows", "runs", "reference", "budget", "command_wall_s", "tables"}."""
    start = time.perf_counter()
    out = Path(cfg.out)
    bad = [arm for arm in cfg.arms if arm not in ARMS]
    if bad:
        raise ValueError(f"unknown arms {bad}; use some of {ARMS}")
    if cfg.best is not None and cfg.best not in cfg.arms:
        raise ValueError(f"--best {cfg.best} names the project's variant among the arms; it is not one of {cfg.arms}")
    check_set(cfg, cfg.arms)
    cfg = dataclasses.replace(cfg, flow=experiment_flow(cfg), cache_videos=cache_decision(cfg, cfg.arms))
    pin_experiment(cfg, out)
    plan = {f"{arm}_seed{seed}": (f"reproduce: {arm}, seed {seed}", {"arm": arm, "seed": seed}, _arm_settings(cfg, out, arm))
            for seed in cfg.seeds for arm in cfg.arms if seed in cfg.seeds_for(arm)}
    rows, runs, ref = _train_and_evaluate(cfg, out, plan)
    _draw_keys(cfg, out)
    summary = summarise(rows, "arm")
    where = "the synthetic static-bias set" if cfg.dataset == "synthetic" else f"{cfg.dataset} ({cfg.root})"
    title = (f"{' vs '.join(cfg.arms)} on {where}, {cfg.split} split "
             f"({seeds_text(cfg)})")
    preserved = {arm: float(np.nanmean([runs[f"{arm}_seed{s}"]["preserved"] for s in cfg.seeds_for(arm)]))
                 if any(not math.isnan(runs[f"{arm}_seed{s}"]["preserved"]) for s in cfg.seeds_for(arm)) else math.nan
                 for arm in cfg.arms}
    last = min(max(steps) for steps in summary.values())
    paired = paired_rows(rows, "arm", pairs_for(cfg.arms, cfg.best), PAIRED_METRICS, last)
    tables = {"final": final_table(summary, ref, "arm", {a: {"preserved": preserved[a]} for a in summary}),
              "paired": paired_table(paired) if paired else
              "(none: no pre-registered pair — s2vc/moco, s2vc/tfd, s2vc/fame, oracle/moco, --best/tfd, --best/s2vc, "
              "<arm>/--best <arm>-keys — has both arms here)", "step0": step0_line(rows, "arm", METRICS),
              **{f"curve {m}": curve_table(summary, m) for m in CURVES}}
    name, curves = _split_file("results", cfg.split), out / f"{_split_file('curves', cfg.split)}.png"
    plot_curves(summary, ref, curves, title)
    wall = time.perf_counter() - start
    result = {"rows": rows, "runs": runs, "reference": ref, "budget": budget_text(cfg), "split": cfg.split,
              "preserved": preserved, "paired": paired, "command_wall_s": wall, "tables": tables}
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=1))
    md = [f"# {title}", "", f"Budget: {budget_text(cfg)}.", "",
          "Metrics in % at the last snapshot: mean ± sample SD (ddof 1) over seeds; chance of R@k is not a "
          "constant; preserved = the mean fraction of latents the keys kept (nan: no flow threshold).", "",
          tables["final"], "", tables["step0"], "",
          f"Paired differences at step {last} (arm − arm, seed by seed; 95% Student t interval; \"beats\" only "
          "where it excludes zero):", "", tables["paired"], ""]
    md += [line for line in [missing_metrics_line(rows, PAIRED_METRICS)] if line]
    for m in CURVES:
        md += [f"Learning curve, {m}:", "", tables[f"curve {m}"], ""]
    md += ["Pretraining time per run (summed step time, s): " +
           ", ".join(f"{k} {v['train_s']:.0f}" for k, v in runs.items()), "",
           f"Curves: {curves}; what each arm's key looks like: {out / 'keys.png'}"]
    atomic_write_text(out / f"{name}.md", "\n".join(md) + "\n")
    print(tables["final"])
    print(f"\n{tables['step0']}\n\npaired differences at step {last}:\n{tables['paired']}")
    print(f"\nlearning curves: {curves}; tables: {out / (name + '.md')}; "
          f"{wall:.0f} s in this command", file=sys.stderr)
    return result


def _split_file(base: str, split: str) -> str:
    """A result file's name for a split: ``base`` for the test split, ``base_<split>`` otherwise
    (a validation call and a test call in one folder never overwrite each other's files)."""
    return base if split == "test" else f"{base}_{split}"


def _draw_keys(cfg: ReproduceConfig, out: Path) -> None:
    """DIR/keys.png, (re)drawn when it is missing or shows another set of arms (DIR/keys.json);
    a variant arm is drawn with its own settings."""
    draw_key_sheet(out / "keys.png", list(cfg.arms), synthetic=cfg.synthetic, frames=cfg.frames, stride=cfg.stride,
                   flow=cfg.flow, alpha=cfg.alpha, variants={**VARIANTS, **KEYED_VARIANTS}, dataset=cfg.dataset, root=cfg.root,
                   fold=cfg.fold, decode_size=cfg.decode_size)


def _ablation_values(cfg: AblateConfig) -> list:
    """The values as the setting takes them (floats for alpha); ValueError for unknown ones."""
    if cfg.ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {cfg.ablation!r}; expected one of {tuple(ABLATIONS)}")
    if cfg.ablation in ("alpha", "preserve"):
        try:
            values = [float(v) for v in cfg.values]
        except ValueError:
            raise ValueError(f"ablate {cfg.ablation}: the values must be numbers, got {list(cfg.values)}") from None
        if cfg.ablation == "preserve" and not all(0.0 < v < 1.0 for v in values):
            raise ValueError(f"ablate preserve: the fractions must be in (0, 1), got {values}")
        return values
    from s2vc.engine.generator import DETAILS
    from s2vc.engine.suppression import STRATEGIES
    allowed = STRATEGIES if cfg.ablation == "strategy" else DETAILS
    bad = [v for v in cfg.values if v not in allowed]
    if bad:
        raise ValueError(f"ablate {cfg.ablation}: unknown {'strategies' if cfg.ablation == 'strategy' else 'values'} "
                         f"{bad}; use some of {allowed}")
    return list(cfg.values)


def preserve_alphas(cfg: ExperimentConfig, fractions: list[float]) -> dict[float, float]:
    """{fraction: the alpha at which the experiment's flow (``cfg.flow`` resolved: a path or None
    for the bundled one) keeps that fraction of the latents}, measured as ``train-flow`` calibrates:
    on windows of ``cfg.frames`` frames ``cfg.stride`` apart (the runs' clip) of the synthetic set's
    training videos (never a test one),
    decoded at ``cfg.size``. It spreads its windows over all of the training split, where the
    fitted flow's own calibration used the videos it was trained on (the split less its held-out
    ones), so the two alphas for one fraction differ a little (22.7% on the built-in set: 0.360
    here, 0.351 in the flow)."""
    from s2vc.engine.checkpoint import default_checkpoint_path, flow_from_checkpoint, read_checkpoint
    from ..flow.alpha_clip import alphas_on_training_split

    path = cfg.flow or str(default_checkpoint_path())
    flow = flow_from_checkpoint(read_checkpoint(path), path)
    alphas, windows = alphas_on_training_split(flow, cfg.dataset, cfg.root, fractions=fractions, frames=cfg.frames,
                                               stride=cfg.stride, size=cfg.decode_size or cfg.size, fold=cfg.fold,
                                               synthetic=cfg.synthetic)
    print(f"ablate preserve: alphas on {windows} training windows: "
          + ", ".join(f"{v:.1%} -> {a:.4f}" for v, a in alphas.items()), file=sys.stderr)
    return alphas


def ablate(cfg: AblateConfig) -> dict:
    """Pretrain S²VC at every value of ``cfg.ablation`` (each seed), evaluate, tabulate; returns
    {"rows", "runs", "preserved" {value: mean fraction kept}, "reference", "budget",
    "command_wall_s", "table"}."""
    start = time.perf_counter()
    kind, out = cfg.ablation, Path(cfg.out)
    values = _ablation_values(cfg)
    check_set(cfg)
    cfg = dataclasses.replace(cfg, flow=experiment_flow(cfg), cache_videos=cache_decision(cfg, ("s2vc",)))
    pin_experiment(cfg, out)
    setting = {v: v for v in values} if kind != "preserve" else preserve_alphas(cfg, values)
    plan = {f"{kind}_{value}_seed{seed}": (f"ablate: {kind} = {value}, seed {seed}", {kind: value, "seed": seed},
                                           {"mode": "s2vc", ABLATIONS[kind]: setting[value]})
            for seed in cfg.seeds for value in values}
    rows, runs, ref = _train_and_evaluate(cfg, out, plan)
    summary = summarise(rows, kind)
    preserved = {v: float(np.nanmean([runs[f"{kind}_{v}_seed{s}"]["preserved"] for s in cfg.seeds]))
                 for v in values}
    extra = {v: ({"alpha": setting[v]} if kind == "preserve" else {}) | {"preserved": preserved[v]} for v in values}
    table = final_table(summary, ref, kind, extra)
    name, plot = _split_file("results", cfg.split), out / f"{_split_file('ablation', cfg.split)}.png"
    plot_ablation(kind, summary, preserved, plot)
    wall = time.perf_counter() - start
    result = {"rows": rows, "runs": runs, "preserved": preserved, "reference": ref, "budget": budget_text(cfg),
              "command_wall_s": wall, "table": table}
    if kind == "preserve":
        result["alphas"] = setting
    atomic_write_text(out / f"{name}.json", json.dumps({**result, "split": cfg.split}, indent=1))
    atomic_write_text(out / f"{name}.md", f"# S²VC {kind} ablation ({cfg.split} split)\n\n"
                      f"Budget: {budget_text(cfg)}.\n\n{table}\n\n"
                      f"preserved = mean fraction of latents kept per step of pretraining.\n"
                      f"Plot: {plot}\n")
    print(table)
    print(f"\nplot: {plot}; tables: {out / (name + '.md')}; {wall:.0f} s in this command",
          file=sys.stderr)
    return result
