"""Backbones and the MoCo module."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2vc.training.models import BACKBONES, Encoder, build_backbone
from s2vc.training.pretrain.moco import MoCo


@pytest.mark.parametrize("name,shape,dim", [("small", (2, 3, 8, 32, 32), 256), ("r3d_18", (1, 3, 4, 32, 32), 512),
                                             ("s3d", (1, 3, 8, 128, 128), 1024)])
def test_backbones_pool_to_features(name, shape, dim):
    net = build_backbone(name).eval()
    with torch.no_grad():
        out = net(torch.rand(shape))
    assert out.shape == (shape[0], dim) and net.out_dim == dim


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'r50'.*small"):
        build_backbone("r50")
    assert set(BACKBONES) == {"r3d_18", "s3d", "small"}


def test_moco_logits_queue_and_momentum():
    torch.manual_seed(0)
    model = MoCo(Encoder("small"), dim=128, K=8, m=0.9)
    q, k = torch.rand(4, 3, 4, 16, 16), torch.rand(4, 3, 4, 16, 16)
    before = [p.clone() for p in model.encoder_k.parameters()]
    logits, labels = model(q, k)
    assert logits.shape == (4, 9) and torch.all(labels == 0)
    assert int(model.queue_ptr) == 4
    # the enqueued keys are the normalised key features
    with torch.no_grad():
        keys = F.normalize(model.encoder_k(k), dim=1)
    torch.testing.assert_close(model.queue[:, :4].T, keys, rtol=1e-4, atol=1e-4)
    # the key encoder moved towards the query encoder by (1 - m), and only then
    for p_k, p0, p_q in zip(model.encoder_k.parameters(), before, model.encoder_q.parameters()):
        torch.testing.assert_close(p_k, 0.9 * p0 + 0.1 * p_q)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert any(p.grad is not None for p in model.encoder_q.parameters())
    model(q, k)
    assert int(model.queue_ptr) == 0                 # wrapped around K = 8


def test_batch_must_divide_queue():
    model = MoCo(Encoder("small"), K=10)
    with pytest.raises(ValueError, match="multiple of the global batch 4"):
        model(torch.rand(4, 3, 4, 16, 16), torch.rand(4, 3, 4, 16, 16))
