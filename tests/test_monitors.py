"""Collapse monitors: their values on known embeddings, and a run forced to collapse warns and records it."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from decur.config import load_config
from decur.train import monitors
from decur.train.run import pretrain

from .conftest import REPO


def test_monitor_values_on_known_embeddings():
    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(512, 64, generator=g)
    assert monitors.embedding_std(healthy) == pytest.approx(1 / math.sqrt(64), rel=0.05)
    point = torch.ones(512, 64) + 1e-6 * torch.randn(512, 64, generator=g)
    assert monitors.embedding_std(point) < 1e-5 and monitors.collapsed(float(monitors.embedding_std(point)), 64)
    assert not monitors.collapsed(float(monitors.embedding_std(healthy)), 64)
    assert monitors.effective_rank(healthy) > 50  # nearly all 64 dimensions in use
    low = torch.randn(512, 3, generator=g) @ torch.randn(3, 64, generator=g)  # rank 3
    assert 1.5 < monitors.effective_rank(low) < 3.01
    # alignment: common dims equal across modalities (C_ii = 1), unique dims independent (|C_ii| small)
    a = torch.randn(4096, 8, generator=g)
    b = torch.cat([a[:, :4] * 2 + 1, torch.randn(4096, 4, generator=g)], dim=1)
    common, unique = monitors.cross_alignment(a, b, common_dim=4)
    assert common == pytest.approx(1.0, abs=1e-4) and unique < 0.05


def test_the_collapse_threshold_is_a_tenth_of_the_healthy_spread():
    # unit-variance embeddings of K dims have emb_std 1/sqrt(K); collapse is declared below a tenth of that
    for k in (4, 64, 8192):
        healthy = 1 / math.sqrt(k)
        assert monitors.collapsed(0.0999 * healthy, k) and not monitors.collapsed(0.1001 * healthy, k)
    assert monitors.collapsed(0.005, 64) and not monitors.collapsed(0.005, 8192)  # the same std, another K


def test_a_collapsing_run_warns_and_records_the_monitors(tmp_path, monkeypatch):
    from decur.models import MultimodalModel

    original = MultimodalModel.embed

    def towards_one_point(self, m, x):  # the projector output shrinks onto one fixed direction
        z = original(self, m, x)
        return 1e-4 * z + torch.ones_like(z)

    monkeypatch.setattr(MultimodalModel, "embed", towards_one_point)
    overrides = ["data.length=32", "trainer.max_epochs=1", "eval.enabled=false", "trainer.log_every_n_steps=1",
                 "trainer.rank_every=2"]  # fmt: skip
    cfg = load_config(REPO / "configs" / "smoke.yaml", overrides)
    with pytest.warns(UserWarning, match="the optical embedding has collapsed at step 1"):
        pretrain(cfg, tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for key in ("emb_std_optical", "emb_std_sar", "rank_optical", "rank_sar", "align_common", "align_unique"):
        assert key in rows[0], key
    assert all(float(r["emb_std_sar"]) < 1e-3 for r in rows)
    assert (tmp_path / "monitors.png").stat().st_size > 1000
