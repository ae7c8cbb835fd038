"""decur explain: numbers against an independent computation, every plot written and referenced."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from decur.cli import main
from decur.config import load_config
from decur.explain import cam_layer, gradcam_maps, spectral_saliency
from decur.train.module import PretrainModule
from decur.train.run import pretrain

from .conftest import REPO

PLOTS = ("alignment.png", "tsne_dimensions.png", "gradcam.png", "saliency_statistics.png", "spectral_saliency.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    common = ["trainer.max_epochs=1", "eval.enabled=false"]
    pretrain(load_config(REPO / "configs" / "smoke.yaml", common), base / "decur")
    pretrain(load_config(REPO / "configs" / "smoke.yaml", [*common, "method.common_dim=64"]), base / "all_common")
    return base


def test_explain_writes_every_plot_and_consistent_numbers(runs, tmp_path, capsys):
    out = tmp_path / "explain"
    assert main(["explain", str(runs / "decur"), "--out", str(out), "--samples", "48",
                 "--compare", str(runs / "all_common")]) == 0  # fmt: skip
    numbers = json.loads((out / "explain.json").read_text())
    report = (out / "report.md").read_text()
    for plot in PLOTS:
        assert (out / plot).stat().st_size > 1000 and f"]({plot})" in report
    align = np.array(numbers["alignment"]["per_dimension"])
    assert align.shape == (64,) and numbers["common_dim"] == 48
    # independent computation of (1 - C_ii)^2 with numpy's Pearson correlation
    module = PretrainModule.load_from_checkpoint(runs / "decur" / "checkpoints" / "last.ckpt", weights_only=True)
    module.eval()
    from decur.data.build import build_dataset

    ds = build_dataset(module.cfg, seed_offset=3_000, length=48)
    with torch.no_grad():
        z = {m: torch.cat([module.model.embed(m, module.views[m].normalize(ds[i][m][None])) for i in range(48)])
             for m in ("optical", "sar")}  # fmt: skip
    pearson = np.array([np.corrcoef(z["optical"][:, d], z["sar"][:, d])[0, 1] for d in range(64)])
    np.testing.assert_allclose(align, (1 - pearson) ** 2, rtol=1e-3, atol=1e-4)
    assert numbers["alignment"]["common_mean"] == pytest.approx(align[:48].mean())
    spectral = numbers["spectral_saliency"]["unique"]["optical"]
    assert list(spectral) == ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    assert len(numbers["compare"]["per_dimension"]) == 64
    truth = numbers["ground_truth"]
    assert truth["alignment_ratio"] > 0 and 0 < truth["optical_unique_band_share_unique"] <= 1
    assert "known factors" in report
    assert set(truth["factor_r2"]) == {"common/optical", "unique/optical", "common/sar", "unique/sar"}
    assert list(truth["factor_r2"]["unique/sar"]) == ["shared", "haze", "phenology", "soil_moisture", "roughness"]
    assert numbers["gradcam_layer"] == {"optical": "layer1", "sar": "layer1"}  # 32 px input: layer1 is 8 px wide


def test_run_without_unique_dims_says_so(runs, tmp_path, capsys):
    assert main(["explain", str(runs / "all_common"), "--out", str(tmp_path / "e"), "--samples", "32"]) == 0
    assert "no unique dimensions" in capsys.readouterr().out
    numbers = json.loads((tmp_path / "e" / "explain.json").read_text())
    assert numbers["alignment"]["unique_mean"] is None and "unique" not in numbers["spectral_saliency"]


def test_gradcam_and_ig_shapes_and_finiteness(runs):
    module = PretrainModule.load_from_checkpoint(runs / "decur" / "checkpoints" / "last.ckpt", weights_only=True)
    x = {"optical": torch.rand(3, 13, 32, 32), "sar": torch.randn(3, 2, 32, 32)}
    cams = gradcam_maps(module, x, slice(0, 48))
    assert cams["optical"].shape == (3, 32, 32) and torch.isfinite(cams["sar"]).all() and (cams["sar"] >= 0).all()
    ig = spectral_saliency(module, x, slice(48, 64))
    assert ig["optical"].shape == (13,) and np.isfinite(ig["sar"]).all()


def test_cam_layer_is_the_deepest_stage_at_least_7_pixels_wide():
    from decur.models import create_encoder

    encoder = create_encoder("resnet18", 2)
    assert cam_layer(encoder, torch.rand(1, 2, 224, 224))[0] == "layer4"  # 7 x 7: the paper's last conv stage
    assert cam_layer(encoder, torch.rand(1, 2, 64, 64))[0] == "layer2"  # 8 x 8 (layer3 would be 4 x 4)
    name, module = cam_layer(encoder, torch.rand(1, 2, 8, 8))  # nothing is 7 wide: the first stage
    assert name == "conv1" and module is encoder.conv1
