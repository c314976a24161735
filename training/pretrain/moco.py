"""MoCo v2 (He et al. 2020) as one module, in the style of facebookresearch/moco's builder.

The positive of a query clip is the key clip, which for S²VC is the motion-preserved version of
a second clip of the same video (eq. 6 of the paper); negatives come from a queue of past keys.
The same module runs on one CPU and under DistributedDataParallel (shuffle-BN and the all-gather
of keys only when torch.distributed is initialised).
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def concat_all_gather(t: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 (no gradient); the identity on one process."""
    if not _distributed():
        return t
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out, dim=0)


class MoCo(nn.Module):
    """encoder_q/encoder_k: ``Encoder`` modules (backbone + head); K: queue size; m: momentum;
    T: temperature (0.07, eq. 6)."""

    def __init__(self, encoder: nn.Module, dim: int = 128, K: int = 2048, m: float = 0.999, T: float = 0.07):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = encoder
        self.encoder_k = copy.deepcopy(encoder)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            p_k.mul_(self.m).add_(p_q.detach(), alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        keys = concat_all_gather(keys)
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        if self.K % n:
            raise ValueError(f"the queue size K={self.K} must be a multiple of the global batch {n}")
        self.queue[:, ptr:ptr + n] = keys.T
        self.queue_ptr[0] = (ptr + n) % self.K

    @torch.no_grad()
    def _batch_shuffle_ddp(self, x: torch.Tensor):
        """Shuffle-BN: keys are encoded on a random permutation of the global batch, so a
        process's BN statistics do not mix a query with its own key."""
        local = x.shape[0]
        x_gather = concat_all_gather(x)
        idx_shuffle = torch.randperm(x_gather.shape[0], device=x.device)
        dist.broadcast(idx_shuffle, src=0)
        idx_unshuffle = torch.argsort(idx_shuffle)
        rank = dist.get_rank()
        return x_gather[idx_shuffle.view(-1, local)[rank]], idx_unshuffle

    @torch.no_grad()
    def _batch_unshuffle_ddp(self, x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
        local = x.shape[0]
        x_gather = concat_all_gather(x)
        return x_gather[idx_unshuffle.view(-1, local)[dist.get_rank()]]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """im_q, im_k: clips (N, 3, T, H, W), normalised. Returns logits (N, 1+K), labels (N,)."""
        q = F.normalize(self.encoder_q(im_q), dim=1)                    # queries: NxC
        with torch.no_grad():
            self._momentum_update_key_encoder()
            if _distributed():
                im_k, idx_unshuffle = self._batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k), dim=1)                # keys: NxC
            if _distributed():
                k = self._batch_unshuffle_ddp(k, idx_unshuffle)
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)            # positive logits: Nx1
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())  # negative logits: NxK
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T              # Nx(1+K)
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return logits, labels
