"""LARS, its parameter groups (exclusions of biases and norms) and the schedule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from decur.config import OptimConfig
from decur.optim import LARS, build_optimizer, lr_factor, parameter_groups


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))


def test_groups_exclude_biases_and_norms_from_lars_and_decay():
    net = _net()
    groups = parameter_groups([net], OptimConfig(), batch_size=512)
    weights, others = groups
    assert {id(p) for p in weights["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in others["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    assert weights["lars"] and not others["lars"]
    assert others["weight_decay"] == 0.0 and weights["weight_decay"] == 1e-6
    # linear scaling: base rates are for a batch of 256
    assert weights["lr"] == pytest.approx(0.4) and others["lr"] == pytest.approx(0.0096)


def test_shared_parameters_are_listed_once():
    net = _net()
    groups = parameter_groups([net, net[0]], OptimConfig(), batch_size=256)
    assert sum(len(g["params"]) for g in groups) == 5


def test_lars_step_matches_hand_computation():
    net = _net()
    opt = build_optimizer([net], OptimConfig(scale_lr=False), batch_size=256)
    assert isinstance(opt, LARS)
    w, b = net[0].weight, net[0].bias
    w0, b0 = w.detach().clone(), b.detach().clone()
    net(torch.randn(8, 4)).pow(2).sum().backward()
    gw, gb = w.grad.clone(), b.grad.clone()
    opt.step()
    # weights: decay, trust ratio eta*|w|/|g|, momentum buffer starts at the update, lr 0.2
    g = gw + 1e-6 * w0
    expected_w = w0 - 0.2 * (0.001 * w0.norm() / g.norm()) * g
    torch.testing.assert_close(w.detach(), expected_w)
    # biases: plain SGD with momentum, no decay, no trust ratio, lr 0.0048
    torch.testing.assert_close(b.detach(), b0 - 0.0048 * gb)


def test_adamw_option():
    opt = build_optimizer([_net()], OptimConfig(name="adamw"), batch_size=256)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]


def test_cosine_schedule_without_and_with_warmup():
    assert lr_factor(0, 100) == pytest.approx(1.0)
    assert lr_factor(50, 100) == pytest.approx(0.5 + 0.0005, abs=1e-3)
    assert lr_factor(100, 100) == pytest.approx(0.001)
    assert lr_factor(0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(9, 100, warmup_steps=10) == pytest.approx(1.0)
    values = [lr_factor(s, 100, 10) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
