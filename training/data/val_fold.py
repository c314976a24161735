"""A validation split for a set of one's own in UCF101's layout, held out of its training list
without touching the original lists: ``s2vc split-val`` writes a new fold (``trainlistNN.txt``
less the held-out videos, ``vallistNN.txt`` with them, ``testlistNN.txt`` a copy of the source
fold's), so every command reads it with ``--fold NN`` and the source fold stays as it was.

Videos are held out by *group*: UCF101-style ids (``v_<Class>_gXX_cYY``) share a group when they
are clips of one recording, and a group lies on one side only (as UCF101's own splits do), so a
validation video never has a near-copy in training. Per class, ``share`` of its groups
(``held_out_count``: rounded; at least one where the class has two or more groups, at least two
where it has ``PROBE_GROUPS`` or more; a class of one group keeps it in training) are drawn with
``seed``, of both parities where two or more are (the motion probe trains on a class's odd
groups and tests on its even ones: a class needs two held-out groups for the probe to score the
validation split, and the default share would hold out one of a class of up to 14 groups); ids
that are not UCF101-style are each their own group.

    written = write_val_fold(root, share=0.1)          # {"fold": 4, "train": N, "val": M, ...}
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from s2vc.engine.checkpoint import atomic_write_text

from .layouts import group_of, ucf101_records

__all__ = ["PROBE_GROUPS", "held_out_count", "write_val_fold", "next_free_fold"]

PROBE_GROUPS = 6     # a class with this many groups holds out two (the motion probe's two parities), keeping 4+


def held_out_count(groups: int, share: float) -> int:
    """How many of a class's ``groups`` are held out: ``share`` of them rounded, at least 1 (2 from
    ``PROBE_GROUPS`` groups on, so the motion probe can score the class), never all of them."""
    if groups < 2:
        return 0
    least = 2 if groups >= PROBE_GROUPS else 1
    return min(groups - 1, max(least, round(share * groups)))


def _group(video_id: str, label: int) -> tuple:
    """(class, group number) of a UCF101-style id; (class, the id) for any other."""
    try:
        return label, group_of(video_id)
    except ValueError:
        return label, video_id


def _parity(group: tuple):
    return group[1] % 2 if isinstance(group[1], int) else None


def _both_parities(chosen: list, groups: list, rng) -> list:
    """``chosen`` with, where it holds two or more UCF101-style groups all of one parity, its
    last one swapped for a group of the other parity (drawn with ``rng``) when the class has
    one: the motion probe trains on odd groups and tests on even ones, per class."""
    parities = {_parity(g) for g in chosen}
    if len(chosen) < 2 or len(parities) != 1 or None in parities:
        return chosen
    other = [g for g in groups if g not in chosen and _parity(g) not in (None, *parities)]
    if not other:
        return chosen
    return chosen[:-1] + [other[int(rng.integers(len(other)))]]


def next_free_fold(lists: Path) -> int:
    """The first fold number above 3 with none of its list files in ``lists``."""
    fold = 4
    while any((lists / f"{kind}list{fold:02d}.txt").exists() for kind in ("train", "val", "test")):
        fold += 1
    return fold


def write_val_fold(root: str | Path, *, fold: int = 1, share: float = 0.1, into: int | None = None,
                   seed: int = 0) -> dict:
    """Write fold ``into`` (None: ``next_free_fold``) of the UCF101-layout set at ``root``: fold
    ``fold``'s training list less ``share`` of each class's groups, which become its validation
    list, and a copy of its test list. Lines are kept as the source lists have them. Refuses a
    fold whose files exist, a share outside (0, 1) and a split that would hold out nothing
    (ValueError); returns {"fold", "train", "val", "groups", "classes", "probe" (whether every class
    held out groups of both parities: the motion probe can score the validation split), "files"}."""
    if not 0 < share < 1:
        raise ValueError(f"--share must lie in (0, 1), got {share}")
    root = Path(root)
    lists = root / "ucfTrainTestlist"
    records, _ = ucf101_records(root, "train", fold)                    # clear errors for a bad layout
    into = next_free_fold(lists) if into is None else into
    if into == fold or into < 1:
        raise ValueError(f"--into {into}: the new fold needs a number of its own (>= 1, not the source fold {fold})")
    targets = {kind: lists / f"{kind}list{into:02d}.txt" for kind in ("train", "val", "test")}
    test_list = lists / f"testlist{fold:02d}.txt"
    if not test_list.is_file():
        raise ValueError(f"{test_list} is missing: the new fold copies fold {fold}'s test list")
    taken = [str(p) for p in targets.values() if p.exists()]
    if taken:
        raise ValueError(f"fold {into} exists already ({', '.join(taken)}); choose another --into, or remove them")
    text = (lists / f"trainlist{fold:02d}.txt").read_text(encoding="utf-8-sig", errors="replace")
    source_lines = [line for line in text.splitlines() if line.strip()]            # as ucf101_records reads it
    if len(source_lines) != len(records):
        raise ValueError(f"trainlist{fold:02d}.txt: {len(source_lines)} lines but {len(records)} videos read")
    rng = np.random.default_rng(seed)
    group = [_group(r.video_id, r.label) for r in records]
    groups_of_class: dict[int, list] = {}
    for g in dict.fromkeys(group):
        groups_of_class.setdefault(g[0], []).append(g)
    held = set()
    for label in sorted(groups_of_class):
        groups = sorted(groups_of_class[label], key=str)
        if len(groups) < 2:
            continue      # held_out_count: 0
        count = held_out_count(len(groups), share)
        chosen = [groups[i] for i in sorted(rng.choice(len(groups), size=count, replace=False))]
        held.update(_both_parities(chosen, groups, rng))
    val = [line for line, g in zip(source_lines, group) if g in held]
    train = [line for line, g in zip(source_lines, group) if g not in held]
    if not val:
        raise ValueError(f"no class of trainlist{fold:02d}.txt has videos of two groups (v_<Class>_gXX_cYY; an id "
                         "of another form is a group of its own): nothing can be held out by group")
    atomic_write_text(targets["train"], "\n".join(train) + "\n")
    atomic_write_text(targets["val"], "\n".join(val) + "\n")
    tmp = targets["test"].with_name(f".{targets['test'].name}.tmp")
    shutil.copyfile(test_list, tmp)
    tmp.replace(targets["test"])
    probe = all(len({_parity(g) for g in held if g[0] == label} - {None}) == 2
                for label in {g[0] for g in held})
    return {"fold": into, "train": len(train), "val": len(val), "groups": len(held), "probe": probe,
            "classes": len({g[0] for g in held}),
            "files": [str(p) for p in targets.values()]}
