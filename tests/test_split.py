"""``decur.train.split``: the warm-up statistics and the reordering (the rule itself: test_losses.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decur.train.split import SplitSearch, permute_rows


def test_reordering_permutes_the_projector_output_and_the_momentum_alike():
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 4, bias=False))
    other = nn.Sequential(nn.Linear(3, 4))
    opt = torch.optim.SGD([*shared.parameters(), *other.parameters()], lr=0.1, momentum=0.9)
    x = torch.randn(6, 3)
    (shared(x).sum() * 3 + other(x).pow(2).sum()).backward()
    opt.step()
    shared.eval()
    before_a, before_b = shared(x).detach(), other(x).detach()
    momentum = opt.state[shared[3].weight]["momentum_buffer"].clone()
    bias_momentum = opt.state[other[0].bias]["momentum_buffer"].clone()
    order = [2, 0, 3, 1]
    permute_rows([shared, shared, other], order, [opt])  # a shared projector is reordered once, not twice
    assert torch.equal(shared(x).detach(), before_a[:, order])
    assert torch.equal(other(x).detach(), before_b[:, order])
    assert torch.equal(opt.state[shared[3].weight]["momentum_buffer"], momentum[order])
    assert torch.equal(opt.state[other[0].bias]["momentum_buffer"], bias_momentum[order])


def test_the_search_uses_only_the_second_half_of_the_warm_up_and_keeps_its_state():
    search = SplitSearch(embed_dim=3, modalities=["a", "b"], warmup_steps=4)
    torch.manual_seed(0)
    base = torch.randn(64, 3)
    noise = [torch.randn(64, 3) * 0.05 for _ in range(4)]
    # dims 0, 1 shared by a and b; dim 2 of b is independent noise
    b = base.clone()
    b[:, 2] = torch.randn(64)
    z = {"a": [base + noise[0], base + noise[1]], "b": [b + noise[2], b + noise[3]]}
    for step in range(5):
        search.observe(z, step)
    assert search.count == 2  # steps 2 and 3 of a 4-step warm-up
    assert not search.due(3) and search.due(4)
    assert search.decide(4) == (2, [0, 1, 2])
    copy = SplitSearch(3, ["a", "b"], 99)
    copy.load_state_dict(search.state_dict())
    assert (copy.warmup_steps, copy.found, copy.order, copy.found_at) == (4, 2, [0, 1, 2], 4)
    assert copy.summary()["common_share"] == pytest.approx(2 / 3, abs=1e-4)
