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
    groups = parameter_groups([net], OptimConfig(lr_weights=0.2), batch_size=512)
    weights, others = groups
    assert {id(p) for p in weights["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in others["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    assert weights["lars"] and not others["lars"]
    assert others["weight_decay"] == 0.0 and weights["weight_decay"] == 1e-6
    # linear scaling: base rates are for a batch of 256
    assert weights["lr"] == pytest.approx(0.4) and others["lr"] == pytest.approx(0.0096)


def test_shared_parameters_are_listed_once():
    net = _net()
    groups = parameter_groups([net, net[0]], OptimConfig(lr_weights=0.2), batch_size=256)
    assert sum(len(g["params"]) for g in groups) == 5


def test_lars_step_matches_hand_computation():
    net = _net()
    opt = build_optimizer([net], OptimConfig(lr_weights=0.2, scale_lr=False), batch_size=256)
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


def test_lars_three_steps_follow_the_momentum_recurrence_in_float64():
    """w ← w − lr·m, m ← μ m + trust·(g + wd·w), trust = η‖w‖/‖g + wd·w‖; written out independently, 3 steps."""
    torch.manual_seed(1)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    opt = LARS([{"params": [w], "lars": True}], lr=0.3, momentum=0.9, weight_decay=0.01, eta=0.02)
    x = torch.randn(7, 5, dtype=torch.float64)
    ref_w, ref_m = w.detach().clone(), torch.zeros(5, 3, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        (x @ w).sin().sum().backward()
        g = w.grad.detach().clone() + 0.01 * ref_w  # the gradient at the current (equal) weights, decayed
        trust = 0.02 * ref_w.norm() / g.norm()
        ref_m = 0.9 * ref_m + trust * g
        ref_w = ref_w - 0.3 * ref_m
        opt.step()
        torch.testing.assert_close(w.detach(), ref_w, rtol=1e-12, atol=0)
    assert float(ref_m.norm()) > 0  # momentum carried over three steps (a LARS without momentum fails above)


def test_lars_zero_norm_branches_use_a_trust_ratio_of_one():
    w0 = torch.zeros(2, 2, requires_grad=True)  # ‖w‖ = 0: trust 1, plain momentum SGD
    opt = LARS([{"params": [w0], "lars": True}], lr=0.5, momentum=0.9, weight_decay=0.0)
    w0.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(w0.detach(), torch.full((2, 2), -0.5))
    w1 = torch.ones(2, 2, requires_grad=True)  # ‖g‖ = 0: no update, no NaN
    opt = LARS([{"params": [w1], "lars": True}], lr=0.5, momentum=0.9, weight_decay=0.0)
    w1.grad = torch.zeros(2, 2)
    opt.step()
    torch.testing.assert_close(w1.detach(), torch.ones(2, 2))


def test_the_learning_rate_used_in_training_is_the_documented_schedule(tmp_path):
    """Read from metrics.csv (every step): lr_group0 = lr_weights · batch/256 · lr_factor(step - 1)."""
    import csv

    from decur.config import load_config
    from decur.train.run import pretrain

    from .conftest import REPO

    warmup = 1.0
    overrides = ["trainer.max_epochs=2", "eval.enabled=false", "trainer.log_every_n_steps=1",
                 f"optim.warmup_epochs={warmup}"]  # fmt: skip
    pretrain(load_config(REPO / "configs" / "smoke.yaml", overrides), tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    total, warm = 8, int(warmup * 4)
    assert [int(r["step"]) for r in rows] == list(range(1, total + 1))
    base = 0.2 * 16 / 256
    for r in rows:  # the row of step s is written after s optimiser steps: the rate the next step will use
        step = int(r["step"])
        assert float(r["lr_group0"]) == pytest.approx(base * lr_factor(step, total, warm), rel=1e-9), step
    # warm-up changes the first steps' rate: half the peak after one of four warm-up steps
    assert float(rows[0]["lr_group0"]) == pytest.approx(base / 2) and float(rows[2]["lr_group0"]) == pytest.approx(base)


def test_pretraining_rates_scale_with_the_global_batch_not_the_per_process_one():
    """Barlow Twins' rule, lr = base · global batch / 256: batch 64 over 2 processes is 0.2 · 64 / 256 = 0.05 for
    the weights and 0.0048 · 64 / 256 = 0.0012 for biases and norms, whatever the world size."""
    from types import SimpleNamespace

    from decur.config import load_config
    from decur.train.module import PretrainModule

    cfg = load_config(None, ["data.batch_size=64", "model.arch=resnet18", "optim.lr_weights=0.2"])
    stats = {m.name: ([0.0] * m.bands, [1.0] * m.bands) for m in cfg.data.modalities}
    for world in (1, 2, 4):
        module = PretrainModule(cfg, stats)
        module._trainer = SimpleNamespace(world_size=world, estimated_stepping_batches=10, global_rank=0)
        groups = module.configure_optimizers()["optimizer"].param_groups
        assert [g["lr"] for g in groups] == pytest.approx([0.05, 0.0012]), world
