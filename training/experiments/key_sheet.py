"""A picture of what each pretraining arm's MoCo key looks like (``s2vc reproduce`` writes it as
OUT/keys.png)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..pretrain.keys import KEYS_SUFFIX, KeyMaker
from ..data.synthetic import SyntheticSet, load_mask

__all__ = ["key_sheet"]


def key_sheet(path: str | Path, arms, *, synthetic: SyntheticSet, frames: int, stride: int,
              flow: str | None = None, alpha: float | None = None, videos: int = 2) -> Path:
    """For ``videos`` training videos spread over the set, the clip (no augmentation, ``frames``
    frames every ``stride``) and the key every arm in ``arms`` makes of it, one row each, as a
    contact sheet at ``path``. ``flow`` / ``alpha`` are the s2vc arm's (None: bundled / calibrated)."""
    from s2vc.engine import video_io

    from ..data.datasets import build_dataset
    ds = build_dataset("synthetic", split="train", frames=frames, stride=stride, size=None, two_clips=False,
                       synthetic=synthetic)
    root = ds.root
    # a mirror's key is its mode's key (as made on the fly: the mirror's fixed windows aside)
    arms = list(dict.fromkeys(arm.removesuffix(KEYS_SUFFIX) for arm in arms))
    makers = {arm: KeyMaker(arm, flow=flow, alpha=alpha, device="cpu") for arm in arms if arm not in ("moco", "oracle")}
    picks = [i * (len(ds) // videos) for i in range(videos)]
    clips = torch.cat([ds.eval_clips(index, 1)["clips"][:1] for index in picks])   # (videos, C, T, H, W)
    # every maker sees the whole batch: FAME takes its backgrounds from the other clips
    keys = {arm: maker(clips, {}, 0)[0] for arm, maker in makers.items()}
    rows, labels = [], []
    for n, index in enumerate(picks):
        clip, record = clips[n:n + 1], ds.records[index]
        rows.append(video_io.to_uint8_frames(clip[0]))
        labels.append(f"{record.video_id} (class {ds.classes[record.label]}): the clip")
        for arm in arms:
            if arm == "moco":                                                       # its key is the clip
                continue
            if arm == "oracle":
                mask = torch.from_numpy(load_mask(root, record.video_id)[:ds.span:ds.stride]).float()
                key = clip * mask[None, None]
            else:
                key = keys[arm][n:n + 1]
            rows.append(video_io.to_uint8_frames(key[0].clamp(0, 1)))
            labels.append(f"{arm} key")
    return video_io.write_contact_sheet(path, rows, labels)
