"""Pretraining's DataLoader keeps its workers across epochs (``persistent_workers``): the workers'
copies of the dataset must still see each new epoch, or every epoch would draw the same clips."""
from __future__ import annotations

import torch

from s2vc.training.data.datasets import build_dataset, collate_clips
from s2vc.training.data.synthetic import SyntheticSet


def test_persistent_workers_draw_the_epochs_clips(tmp_path):
    ds = build_dataset("synthetic", tmp_path / "set", split="train", frames=2, stride=1, size=None, two_clips=True,
                       synthetic=SyntheticSet(classes=2, train_per_class=2, test_per_class=1), seed=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=1, persistent_workers=True,
                                         collate_fn=collate_clips)
    seen = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        batch = next(iter(loader))
        # what the main process draws for this epoch: the worker must agree
        expected = [(ds[i]["start_q"], ds[i]["start_k"]) for i in range(len(ds))]
        assert list(zip(batch["start_q"].tolist(), batch["start_k"].tolist())) == expected, epoch
        seen.append(expected)
    assert seen[0] != seen[1] or seen[1] != seen[2], "the clips do not change with the epoch"
