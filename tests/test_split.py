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
    assert copy.summary()["common_share"] == 0.6667  # 4 decimals


def test_the_statistics_are_cross_view_correlations_across_modalities_and_view_to_view_within():
    # exactly orthogonal +-1 columns over 4 samples: each standardises to itself / sqrt(1 + 1e-5)
    x = torch.tensor([1.0, 1, -1, -1], dtype=torch.float64)
    y = torch.tensor([1.0, -1, 1, -1], dtype=torch.float64)
    # dim 0: everything x; dim 1: view 1 = x, view 2 = y in both; dim 2: a = (x, x), b = (y, x)
    a0, a1 = torch.stack([x, x, x], 1), torch.stack([x, y, x], 1)
    b0, b1 = torch.stack([x, x, y], 1), torch.stack([x, y, x], 1)
    search = SplitSearch(embed_dim=3, modalities=["a", "b"], warmup_steps=2)  # window: step 1 only
    search.observe({"a": [a0, a1], "b": [b0, b1]}, 0)
    assert search.count == 0
    search.observe({"a": [a0, a1], "b": [b0, b1]}, 1)
    c = 1 / (1 + 1e-5)
    # cross: (a0.b1 + a1.b0) / 2 -- never the same view's pair a0.b0 (which shares the crop)
    assert torch.allclose(search.cross, torch.tensor([[c, 0.0, c / 2]], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(search.intra, torch.tensor([[c, 0.0, c], [c, 0.0, 0.0]], dtype=torch.float64), atol=1e-12)
    assert search.cross.dtype == torch.float64  # sums over many steps
    assert search.summary() == {
        "common_dim": None, "embed_dim": 3, "common_share": None, "found_at_step": None, "warmup_steps": 2,
        "window_steps": 1, "rule": "decur.losses.split_dimensions",
    }  # fmt: skip


def test_a_warm_up_is_at_least_two_steps_and_a_window_without_steps_keeps_every_dimension_common():
    search = SplitSearch(embed_dim=4, modalities=["a", "b"], warmup_steps=1)
    assert search.warmup_steps == 2 and search.window_start == 1
    assert search.estimate() is None and search.decide(2) == (4, [0, 1, 2, 3])
    assert search.summary()["common_share"] == 1.0 and search.summary()["found_at_step"] == 2


def test_reordering_with_adam_moves_both_moments_and_leaves_its_step_count_and_stateless_parameters():
    from decur.train.split import last_linear

    torch.manual_seed(1)
    head = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    unused = nn.Linear(2, 3)  # no gradient, so no optimiser state
    opt = torch.optim.Adam([*head.parameters(), *unused.parameters()], lr=0.01)
    head(torch.randn(5, 3)).pow(2).sum().backward()
    opt.step()
    state = {k: v.clone() for k, v in opt.state[head[2].weight].items()}
    bias = head[2].bias.detach().clone()
    permute_rows([head, unused], [2, 0, 1], [opt])
    assert torch.equal(opt.state[head[2].weight]["exp_avg"], state["exp_avg"][[2, 0, 1]])
    assert torch.equal(opt.state[head[2].weight]["exp_avg_sq"], state["exp_avg_sq"][[2, 0, 1]])
    assert torch.equal(opt.state[head[2].weight]["step"], state["step"])
    assert torch.equal(head[2].bias, bias[[2, 0, 1]])
    with pytest.raises(ValueError, match="needs a projector"):
        last_linear(nn.Identity())
