"""The MoCo key of each pretraining mode ("arm"): one code path for every arm, only the key differs.

    s2vc    key = motion-preserved version of the second clip (the paper)
    moco    key = the second clip as is (plain MoCo v2)
    tfd     key = the pixel-level TFD baseline of the paper's Table 4
    oracle  key = the second clip with the background removed through the synthetic set's actor
            masks (synthetic set only): the ceiling any static-cue suppression could reach
    be      key = Background Erasing (Wang et al., CVPR 2021): a frame of the clip mixed into
            every frame (``training/pretrain/peer_keys.py``, docs/PEERS.md)
    fame    key = FAME (Ding et al., CVPR 2022): the clip's moving foreground, from frame
            differences, pasted onto another clip's background (``training/pretrain/peer_keys.py``)

With pre-generated keys (``s2vc pretrain --keys MIRROR``, modes s2vc and tfd) the key clip was
read from the dataset's motion-preserved mirror (``training/pretrain/mirror.py``) and is used as it is.

A new arm is a name in ``MODES`` and a branch of ``KeyMaker``; ``s2vc pretrain --mode`` and
``s2vc reproduce --arms`` pick it up by name.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["MODES", "PREGENERATED_MODES", "KEYS_SUFFIX", "KeyMaker", "OracleKeys"]

MODES = ("s2vc", "moco", "tfd", "oracle", "be", "fame")
PREGENERATED_MODES = ("s2vc", "tfd")     # the modes whose key a mirror can hold
KEYS_SUFFIX = "-keys"                    # "<mode>-keys": an arm of such a mode on a mirror's keys


class KeyMaker:
    """Turns the second clip, float (B, 3, T, H, W) in [0, 1], into the MoCo key of ``mode``.

    flow: the s2vc generator's flow (and the TFD resolution's): a loaded flow, a checkpoint path,
    or None = the bundled one; alpha: None = the flow's calibrated one (``engine.defaults.resolve_alpha``);
    strategy / detail / gen_backend: of the generator; clamp: clip a generated key to [0, 1] (default:
    the key a mirror's 8-bit frames hold, so keys made here and read from a mirror agree); seed: the
    random strategies' seed (renewed every step; also of BE's and FAME's draws). ``self.alpha`` is
    the alpha in use (None for the arms without a flow threshold). ``pregenerated``: the key clip
    already is the s2vc / tfd key (read from a mirror): no generator runs, the alpha is the flow's.
    """

    def __init__(self, mode: str, *, flow=None, alpha: float | None = None, strategy: str = "zero",
                 keep_fraction: float | None = None, detail: str = "keep", gen_backend: str = "auto",
                 clamp: bool = True, seed: int | None = 0,
                 device: torch.device | str = "cpu", pregenerated: bool = False):
        if mode not in MODES:
            raise ValueError(f"unknown pretraining mode {mode!r}; expected one of {MODES}")
        if pregenerated and mode not in PREGENERATED_MODES:
            raise ValueError(f"pre-generated keys (--keys) are for modes {PREGENERATED_MODES}, not {mode!r}")
        self.mode, self.clamp, self.gen, self.alpha, self.seed = mode, clamp, None, None, seed
        self.keep_fraction = None
        self.pregenerated = pregenerated
        if mode not in PREGENERATED_MODES:
            return
        from s2vc.engine import load_flow
        from s2vc.engine.defaults import resolve_alpha
        # a loaded flow (the trainer's) or a checkpoint path / None (the bundled one)
        flow = flow.to(device) if isinstance(flow, torch.nn.Module) else load_flow(flow, device=device)
        if pregenerated:
            self.alpha = resolve_alpha(flow, alpha) if mode == "s2vc" else None
        elif mode == "s2vc":
            from s2vc.engine.generator import MotionPreservingGenerator
            # validate=False: the training step reads nothing back from the device (no host
            # synchronisation); the generator resolves alpha and topk's keep_fraction from the flow
            self.gen = MotionPreservingGenerator(flow, alpha=alpha, strategy=strategy, backend=gen_backend, seed=seed,
                                                 keep_fraction=keep_fraction, detail=detail, validate=False)
            self.alpha = self.gen.alpha
            self.keep_fraction = self.gen.keep_fraction if strategy == "topk" else None
        else:
            from s2vc.engine.tfd import tfd_generator
            self.gen = tfd_generator(resolution=flow.config.resolution)

    def __call__(self, k: torch.Tensor, batch: dict, step: int) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(key (B, 3, T, H, W), mean fraction of latents preserved: a 0-dim float tensor on the
        key's device for the generated keys, read by the training loop when it logs (reading it
        here would wait for the device), or the float nan without a flow).
        ``batch["k_mask"]`` (B, 1, T, H, W) in {0, 1}: the actor masks the oracle needs."""
        if self.mode == "oracle":
            mask = batch.get("k_mask")
            if mask is None:
                raise ValueError("mode 'oracle' needs actor masks: only the synthetic set has them")
            return k * mask.to(k.device, k.dtype), math.nan
        if self.mode in ("be", "fame"):
            from .peer_keys import background_erasing, fame_merge
            draw = torch.Generator().manual_seed((self.seed or 0) * 1_000_003 + step)
            peer = background_erasing if self.mode == "be" else fame_merge
            return peer(k, generator=draw), math.nan
        if self.gen is None:
            if self.pregenerated and self.clamp:
                k = k.clamp(0, 1)
            return k, math.nan
        # fresh randomness every step, and other randomness for another run seed (as BE's / FAME's)
        self.gen.seed = None if self.seed is None else self.seed * 1_000_003 + step
        out, stats = self.gen(k)
        if self.clamp:
            out = out.clamp(0, 1)
        return out, stats.preserved.mean()


class OracleKeys(torch.utils.data.Dataset):
    """The synthetic set with the key's actor mask: the key clip and its mask go through one
    key transform (crop and flip drawn once), so "k_mask" (1, T, H, W) covers the key's actor.

    dataset: a two-clip ``ClipDataset`` of the synthetic set built *without* a key transform;
    root: the set's folder (holding masks/); transform_k: the key transform to apply to both.
    """

    def __init__(self, dataset, root: str | Path, transform_k):
        self.dataset, self.root, self.transform_k = dataset, Path(root), transform_k

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, i):
        from ..data.synthetic import load_mask
        item = self.dataset[i]
        if not isinstance(item, dict):
            return item                                           # a Skipped record
        ds = self.dataset
        mask = load_mask(self.root, ds.records[i].video_id)       # (T_video, H, W)
        m = torch.from_numpy(mask[item["start_k"]:item["start_k"] + ds.span:ds.stride]).float()[None]
        k = item["k"]
        if m.shape[-2:] != k.shape[-2:]:
            m = F.interpolate(m, size=k.shape[-2:], mode="nearest")
        both = torch.cat([k, m], dim=0)                           # (4, T, H, W)
        if self.transform_k is not None:                          # crop/flip take any channel count
            both = self.transform_k.transform(both.transpose(0, 1)).transpose(0, 1)
        item["k"], item["k_mask"] = both[:3], (both[3:] > 0.5).float()
        return item
