"""Which set an experiment (``s2vc reproduce`` / ``s2vc ablate``) runs on, and what it needs
there: the built-in synthetic set (its own fitted flow by default) or a set of one's own in a
public layout (a flow fitted to it, no oracle arm, a validation split held out of training).
``cfg`` is a ``runner.ExperimentConfig``."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ..flow.fitted import flow_choice

__all__ = ["DEFAULT_DECODE_SIZE", "EXPERIMENT_DATASETS", "check_set", "experiment_flow", "set_text"]

# the short side a set of one's own is decoded at (the mirror's default: ``MirrorConfig``)
DEFAULT_DECODE_SIZE = 128
# the layouts a comparison on one's own set reads: they have a train and a test split (``folder`` has none)
EXPERIMENT_DATASETS = ("synthetic", "ucf101", "hmdb51", "kinetics")
# the arms whose key comes from the flow (tfd: at the flow's resolution); the others need none
FLOW_ARMS = ("s2vc", "tfd", "s2vc-keys", "tfd-keys", "s2vc-dynamic", "s2vc-topk", "s2vc-topk-keys")


def experiment_flow(cfg) -> str | None:
    """The flow checkpoint the runs use, as ``PretrainConfig.flow`` takes it: ``cfg.flow`` when a
    path; None (the bundled flow) for ``--flow bundled``; by default the synthetic set's own fitted
    flow (``training/flow/fitted.py``), trained and cached beside the set the first time. A flow
    that does not fit the data makes S²VC no better than MoCo, so the fitted one is the default.
    With ``eval_only`` nothing is trained, the flow included: a fitted flow not cached yet is a
    ValueError saying what to run first. On a set of one's own there is no fitted flow to build
    here: no ``--flow`` is a ValueError naming the ``train-flow`` command that fits one, unless no
    arm needs a flow (``cfg.arms`` without a ``FLOW_ARMS`` one: None, which no such arm reads)."""
    arms = getattr(cfg, "arms", None)            # None: an ablation, every run of it s2vc
    if not cfg.flow and cfg.dataset != "synthetic" and arms is not None and not set(arms) & set(FLOW_ARMS):
        return None
    if not cfg.flow and cfg.dataset != "synthetic":
        fit = (f"s2vc train-flow --dataset {cfg.dataset} --root {shlex.quote(str(cfg.root or 'ROOT'))}"
               + (f" --fold {cfg.fold}" if cfg.fold != 1 else "")
               + f" --resolution 64 --frames {cfg.frames} --stride {cfg.stride} --decode-size {cfg.decode_size}"
               + f" --out flow_{cfg.dataset}.pt")
        raise ValueError(f"a comparison on {cfg.dataset} needs a flow fitted to it (the s2vc and tfd keys come from "
                         f"it): fit one with `{fit}`, then add --flow flow_{cfg.dataset}.pt (--flow bundled forces "
                         f"the bundled one, fitted to a few sample clips)")
    from ..flow.fitted import fitted_flow_path, recipe_for_clip
    recipe = recipe_for_clip(cfg.frames, cfg.stride)        # alpha calibrated on the runs' clip
    if not cfg.flow and cfg.eval_only:
        path = fitted_flow_path(cfg.synthetic, root=cfg.root, recipe=recipe)
        if not path.is_file():
            raise ValueError(f"--eval-only trains nothing, and the synthetic set's own fitted flow is not there yet "
                             f"({path}): run the same command without --eval-only first (it fits the flow once, "
                             f"then pretrains), or name a flow with --flow FILE / --flow bundled")
        return str(path)
    if not cfg.flow:
        print("experiment: the synthetic set's own fitted flow (trained once, then cached beside the set)",
              file=sys.stderr)
    return flow_choice(cfg.flow, cfg.synthetic, progress=not cfg.no_progress, root=cfg.root, recipe=recipe)


def set_text(cfg) -> str:
    """The set the runs train and are scored on, in a few words."""
    if cfg.dataset != "synthetic":
        fold = f" fold {cfg.fold}" if cfg.dataset in ("ucf101", "hmdb51") else ""
        return f"{cfg.dataset} at {cfg.root}{fold}, decoded at {cfg.decode_size} px"
    syn = cfg.synthetic
    return (f"synthetic set seed {syn.seed}, {syn.train_per_class} train / {syn.test_per_class} test videos per "
            f"class, bias {syn.bias}" + (f", camera {syn.camera}" if syn.camera != "still" else ""))


EVAL_MEMORY_SHARE = 0.5   # of this machine's memory the evaluation windows may take at their peak


CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")   # v2, v1


def physical_memory() -> int:
    """The memory this process may use, in bytes: the machine's, or less where a container's
    cgroup limits it (Docker, Kubernetes, Slurm); 0 where the system does not say."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = 0
    for path in CGROUP_LIMITS:
        try:
            limit = int(Path(path).read_text().strip())      # "max" (no limit) is not a number
        except (OSError, ValueError):
            continue
        if 0 < limit and (memory == 0 or limit < memory):
            memory = limit
    return memory


def check_eval_memory(cfg, videos: int) -> None:
    """ValueError, before any run trains, when the evaluation windows of ``videos`` videos (both
    scored splits, ``num_clips`` windows each of ``frames`` frames at ``size``², float16, kept in
    memory for every snapshot's scoring; twice that at the peak, while a split's windows are
    joined into one tensor) would take more than ``EVAL_MEMORY_SHARE`` of the memory this process
    may use (``physical_memory``): better said now than an out-of-memory kill after a run's hours."""
    need = videos * cfg.num_clips * cfg.frames * 3 * cfg.size ** 2 * 2
    memory = physical_memory()
    if memory and 2 * need > EVAL_MEMORY_SHARE * memory:
        raise ValueError(f"the evaluation windows ({videos} videos x {cfg.num_clips} windows of {cfg.frames} frames "
                         f"at {cfg.size}², float16) would take about {need / 2 ** 30:.1f} GiB, twice that while they "
                         f"are assembled, more than half of the {memory / 2 ** 30:.0f} GiB this process may use: lower "
                         "--num-clips or --crop-size, or score on a machine with more memory")


def check_set(cfg, arms: tuple[str, ...] = ()) -> None:
    """ValueError, before anything is written or trained, when the set cannot hold this
    experiment: a layout without a train and a test split, no root, a split list that is missing,
    a scored video without a class (Kinetics' unlabelled test rows), the oracle (it needs the
    synthetic set's actor masks) on another set, or ``--split val`` on a set without a validation
    split — or with one that shares videos with the training split it would be chosen against.
    Only the split lists are read."""
    if cfg.dataset not in EXPERIMENT_DATASETS:
        raise ValueError(f"--dataset {cfg.dataset}: a comparison trains on a train split and scores a test split; "
                         f"use one of {EXPERIMENT_DATASETS} (a folder of one's own videos has no splits: write it "
                         f"in UCF101's layout, ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt)")
    if cfg.dataset != "synthetic" and "oracle" in arms:
        raise ValueError(f"arm 'oracle' removes the background through the synthetic set's actor masks; "
                         f"{cfg.dataset} has none: leave it out of --arms")
    if cfg.dataset == "synthetic":
        if cfg.split == "val" and cfg.synthetic.val_per_class < 1:
            raise ValueError("--split val scores on the set's validation split: add --synthetic-val-per-class N")
        return
    from ..data.datasets import dataset_root, split_records
    from ..data.layouts import check_fold
    check_fold(cfg.dataset, cfg.fold)
    if cfg.split == "val" and cfg.dataset == "hmdb51":
        raise ValueError("hmdb51 has no validation split (its lists name train and test only): choose on a set "
                         "in UCF101's layout with a vallistNN.txt of videos held out of trainlistNN.txt, "
                         "or on Kinetics' val")
    root = dataset_root(cfg.dataset, cfg.root)
    if not root.is_dir():
        raise ValueError(f"--root {root}: no such folder")
    train = split_records(cfg.dataset, root, "train", cfg.fold)
    scored = split_records(cfg.dataset, root, cfg.split, cfg.fold)
    unlabelled = [r.video_id for r in scored if r.label < 0]
    if unlabelled:
        raise ValueError(f"{cfg.dataset} {cfg.split}: {len(unlabelled)} videos have no class of the training split "
                         f"(first: {unlabelled[0]}); retrieval and the probes score classes: score a labelled split"
                         + (" (--split val)" if cfg.split == "test" else ""))
    check_eval_memory(cfg, len(train) + len(scored))
    if cfg.split != "val":
        return
    # a video is its path in UCF101's layout (one name in two class folders is two videos), its
    # YouTube id in Kinetics' (train/ and val/ hold their own copies)
    def ident(r):
        return r.video_id if cfg.dataset == "kinetics" else str(r.path)

    shared = sorted({ident(r) for r in scored} & {ident(r) for r in train})
    if shared:
        raise ValueError(f"{cfg.dataset}: {len(shared)} videos of the validation split are also in the training split "
                         f"(first: {shared[0]}); a validation split holds videos out of training")


CACHE_SHARE = 0.25        # of this machine's memory the decoded training videos may take (auto)
CACHE_SAMPLE = 16         # videos probed to estimate it


def cache_decision(cfg, arms) -> bool:
    """Whether the runs keep every decoded training video in memory (faster: decoded once per
    run): ``cfg.cache_videos`` when given; the synthetic set always (a few MB); else when the
    training split, decoded at ``decode_size`` (twice for arms on a mirror's keys), is estimated
    from ``CACHE_SAMPLE`` probed videos to take at most ``CACHE_SHARE`` of this machine's memory
    (UCF101's split 1 at 128 px takes about 100 GB). Says which on stderr."""
    if cfg.cache_videos is not None or cfg.dataset == "synthetic":
        return cfg.cache_videos is not False
    from s2vc.engine import video_io
    from ..data.datasets import dataset_root, split_records
    from ..flow.data import spread
    records = split_records(cfg.dataset, dataset_root(cfg.dataset, cfg.root), "train", cfg.fold)
    per_video = []
    for r in spread(records, CACHE_SAMPLE):
        try:
            info = video_io.probe_video(r.path, exact=False)
        except (video_io.VideoDecodeError, OSError):
            continue
        short = min(info.width, info.height)
        scale = (cfg.decode_size or short) / short
        per_video.append(info.num_frames * round(info.width * scale) * round(info.height * scale) * 3)
    from ..pretrain.keys import KEYS_SUFFIX
    copies = 2 if any(str(a).endswith(KEYS_SUFFIX) for a in arms) else 1
    need = sum(per_video) / len(per_video) * len(records) * copies if per_video else 0.0
    memory = physical_memory()
    keep = bool(memory) and need <= CACHE_SHARE * memory
    print(f"reproduce: the {len(records)} training videos decoded at {cfg.decode_size} px take about "
          f"{need / 2 ** 30:.1f} GiB{' (with the keys)' if copies == 2 else ''} of this machine's "
          f"{memory / 2 ** 30:.0f} GiB: {'kept in memory' if keep else 'decoded per clip'} "
          f"(--cache-videos / --no-cache-videos to choose)", file=sys.stderr)
    return keep
