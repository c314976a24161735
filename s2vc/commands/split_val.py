"""``s2vc split-val``: a validation split for a set of one's own in UCF101's layout, held out of
its training list by group into a new fold (``training/data/val_fold.py``); the original lists
are left as they are."""
from __future__ import annotations

import argparse

HELP = "hold a validation split out of a UCF101-layout set's training list, into a new fold (--fold N)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="the set's folder (UCF-101/ and ucfTrainTestlist/)")
    p.add_argument("--fold", type=int, default=1, help="the fold whose training list is split (default 1)")
    p.add_argument("--share", type=float, default=0.1,
                   help="share of each class's groups (v_<Class>_gXX_...) held out (default 0.1)")
    p.add_argument("--into", type=int, default=None,
                   help="the new fold's number (default: the first free one above 3)")
    p.add_argument("--seed", type=int, default=0, help="which groups are drawn")


def run(args: argparse.Namespace) -> int:
    from s2vc.training.data.val_fold import write_val_fold

    done = write_val_fold(args.root, fold=args.fold, share=args.share, into=args.into, seed=args.seed)
    print(f"fold {done['fold']}: {done['train']} training videos, {done['val']} validation videos ({done['groups']} "
          f"groups of {done['classes']} classes held out of fold {args.fold}'s training list); the test list is fold "
          f"{args.fold}'s.\nwrote {', '.join(done['files'])}\nuse it with --fold {done['fold']} everywhere: "
          f"train-flow, pretrain, generate --dataset, and reproduce --split val (choose there), then --split test")
    if not done["probe"]:
        print("note: some class held out groups of one parity only, so the motion probe cannot score this validation "
              "split (its column will be nan); a larger --share holds out two or more groups per class")
    return 0
