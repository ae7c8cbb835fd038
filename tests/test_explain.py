"""decur explain: numbers against an independent computation, every plot written and referenced."""

from __future__ import annotations

import json
import math

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
def runs(module_tmp):
    base = module_tmp("runs")
    common = ["trainer.max_epochs=1", "eval.enabled=false"]
    pretrain(load_config(REPO / "configs" / "smoke.yaml", common), base / "decur")
    pretrain(load_config(REPO / "configs" / "smoke.yaml", [*common, "method.common_dim=64"]), base / "all_common")
    return base


def test_explain_writes_every_plot_and_consistent_numbers(runs, tmp_path, capsys):
    out = tmp_path / "explain"
    assert main(["explain", str(runs / "decur"), "--out", str(out), "--samples", "48", "--batch-size", "24",
                 "--ig-steps", "4", "--compare", str(runs / "all_common")]) == 0  # fmt: skip
    numbers = json.loads((out / "explain.json").read_text())
    report = (out / "report.md").read_text()
    for plot in PLOTS:
        assert (out / plot).stat().st_size > 1000 and f"]({plot})" in report
    pair = numbers["alignment"]["pairs"]["optical-sar"]
    assert numbers["alignment"]["batch_size"] == 16 and numbers["alignment"]["batches"] == 3  # 48 samples / 16
    first = np.array(pair["per_batch"][0])
    assert first.shape == (64,) and numbers["common_dim"] == 48
    # independent computation on the first training-style batch: numpy's Pearson correlation of the first views
    module = PretrainModule.load_from_checkpoint(runs / "decur" / "checkpoints" / "last.ckpt", weights_only=True)
    module.eval()
    from decur.data.build import build_dataset

    ds = build_dataset(module.cfg, seed_offset=3_000, length=48)
    batch = {k: torch.stack([ds[i][k] for i in range(16)]) for k in ("optical", "sar")}
    torch.manual_seed(0)
    with torch.no_grad():
        views = module.make_views(batch)
        z = {m: module.model.embed(m, v[0]).double().numpy() for m, v in views.items()}
    pearson = np.array([np.corrcoef(z["optical"][:, d], z["sar"][:, d])[0, 1] for d in range(64)])
    np.testing.assert_allclose(first, (1 - pearson) ** 2, rtol=1e-6, atol=1e-9)
    assert pair["above_one"][0] == int(((1 - pearson) ** 2 > 1).sum())  # anti-correlated dims counted
    assert numbers["alignment"]["common_mean"] == pytest.approx(np.array(pair["per_batch"])[:, :48].mean())
    assert numbers["saliency_pairs"] == 48 and len(numbers["saliency_statistics"]["unique"]["scores"]) == 48
    assert all(0 <= v <= 1 for v in numbers["saliency_statistics"]["common"]["scores"])
    bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    assert numbers["spectral_bands"] == {"optical": bands, "sar": ["VV", "VH"]}
    assert list(numbers["spectral_saliency"]["unique"]["optical"]) == bands
    assert len(numbers["compare"]["per_dimension"]) == 64
    assert numbers["options"]["standardize"] is True and numbers["options"]["cam_relu"] is False
    truth = numbers["ground_truth"]
    assert truth["alignment_ratio"] > 0 and 0 < truth["optical_unique_band_share_unique"] <= 1
    assert "known factors" in report
    assert set(truth["factor_r2"]) == {"common/optical", "unique/optical", "common/sar", "unique/sar"}
    assert list(truth["factor_r2"]["unique/sar"]) == ["shared", "haze", "phenology", "soil_moisture", "roughness"]
    assert numbers["gradcam_layer"] == {"optical": "layer1", "sar": "layer1"}  # 32 px input: layer1 is 8 px wide


def test_run_without_unique_dims_says_so(runs, tmp_path, capsys):
    args = ["explain", str(runs / "all_common"), "--out", str(tmp_path / "e"), "--samples", "16",
            "--alignment-batches", "1", "--ig-steps", "2"]  # fmt: skip
    assert main(args) == 0
    assert "no unique dimensions" in capsys.readouterr().out
    numbers = json.loads((tmp_path / "e" / "explain.json").read_text())
    assert numbers["alignment"]["unique_mean"] is None and "unique" not in numbers["spectral_saliency"]


def test_gradcam_and_ig_follow_algorithm_2(runs):
    module = PretrainModule.load_from_checkpoint(runs / "decur" / "checkpoints" / "last.ckpt", weights_only=True)
    x = {"optical": torch.rand(3, 13, 32, 32), "sar": torch.randn(3, 2, 32, 32)}
    cams = gradcam_maps(module, x, slice(0, 48))
    assert cams["optical"].shape == (3, 32, 32) and torch.isfinite(cams["sar"]).all()
    assert (cams["sar"] < 0).any() or (cams["optical"] < 0).any()  # signed: no ReLU unless asked
    assert (gradcam_maps(module, x, slice(0, 48), relu=True)["sar"] >= 0).all()
    ig = spectral_saliency(module, x, slice(48, 64))
    assert ig["optical"].shape == (3, 13) and np.isfinite(ig["sar"]).all()
    np.testing.assert_allclose(np.abs(ig["optical"]).sum(axis=1), 1.0, rtol=1e-5)  # normalised per sample
    # the scalar output is the mean of the batch-standardised dims: shifting every embedding changes nothing
    from decur.explain import _Slice

    net = _Slice(module.model.encoders["sar"], module.model.projectors["sar"], slice(0, 48)).eval()
    with torch.no_grad():
        z = module.model.projectors["sar"](module.model.encoders["sar"](x["sar"]))
    expected = ((z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5))[:, :48].mean(1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x["sar"]), expected)


def test_saliency_scores_one_per_pair_in_unit_range():
    from decur.explain import saliency_scores

    cams = {"a": torch.rand(5, 8, 8), "b": torch.rand(5, 8, 8) - 0.5}
    scores = saliency_scores(cams)
    assert scores.shape == (5,) and (scores >= 0).all() and (scores <= 1).all()
    same = saliency_scores({"a": cams["a"], "b": cams["a"] * 3 + 1})  # each map is normalised first
    torch.testing.assert_close(same, saliency_scores({"a": cams["a"], "b": cams["a"]}))


def test_ground_truth_check_on_hand_built_embeddings():
    """Embeddings whose answer is known: common dims = shared factors, unique dims = each modality's own."""
    from decur.data.synthetic import SyntheticMultimodal
    from decur.explain import ground_truth_check

    data = SyntheticMultimodal(200, 16)
    f = torch.stack([data[i]["factors"] for i in range(200)])
    g = data.factor_groups
    rng = torch.Generator().manual_seed(0)
    shared = f[:, g["shared"]] @ torch.randn(len(g["shared"]), 12, generator=rng)

    def own(m):
        return f[:, g[m]] @ torch.randn(2, 4, generator=rng)

    def noise():
        return 0.01 * torch.randn(200, 12, generator=rng)

    z = {"optical": torch.cat([shared + noise(), own("optical")], 1),
         "sar": torch.cat([shared + noise(), own("sar")], 1)}  # fmt: skip
    good = ground_truth_check(data, z, common_dim=12)
    assert good["alignment_ratio"] > 50
    r2 = good["factor_r2"]
    assert r2["common/optical"]["shared"] > 0.9 and r2["unique/optical"]["haze"] > 0.9
    assert r2["unique/sar"]["roughness"] > 0.9 and r2["common/sar"]["soil_moisture"] < 0.2
    assert r2["unique/optical"]["soil_moisture"] < 0.2  # SAR's factor is not in the optical unique dims
    scrambled = {m: v[torch.randperm(200, generator=rng)] for m, v in z.items()}  # pairs broken
    bad = ground_truth_check(data, scrambled, common_dim=12)
    assert bad["alignment_ratio"] < 2 and bad["factor_r2"]["common/optical"]["shared"] < 0.2


def test_cam_layer_is_the_deepest_stage_at_least_7_pixels_wide():
    from decur.models import create_encoder

    encoder = create_encoder("resnet18", 2)
    assert cam_layer(encoder, torch.rand(1, 2, 224, 224))[0] == "layer4"  # 7 x 7: the paper's last conv stage
    assert cam_layer(encoder, torch.rand(1, 2, 64, 64))[0] == "layer2"  # 8 x 8 (layer3 would be 4 x 4)
    name, module = cam_layer(encoder, torch.rand(1, 2, 8, 8))  # nothing is 7 wide: the first stage
    assert name == "conv1" and module is encoder.conv1


# ---- Algorithm 2 on hand-built models whose answers are known ---------------------------------------------------


class _Halves(torch.nn.Module):
    """Channel 0 sees only the left half of the image, channel 1 only the right half."""

    def __init__(self, bands: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(bands, 2, 1, bias=False)
        torch.nn.init.constant_(self.conv.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        left = torch.zeros_like(a[:, :1])
        left[..., : a.shape[-1] // 2] = 1
        return torch.cat([a[:, :1] * left, a[:, 1:] * (1 - left)], 1)


class _Encoder(torch.nn.Module):
    def __init__(self, bands: int) -> None:
        super().__init__()
        self.stage = _Halves(bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x).mean(dim=(2, 3))  # z_0: left half, z_1: right half


def _hand_built(bands: dict[str, int]):
    from types import SimpleNamespace

    model = SimpleNamespace(
        modalities=list(bands),
        encoders={m: _Encoder(c) for m, c in bands.items()},
        projectors={m: torch.nn.Identity() for m in bands},
    )
    views = {m: SimpleNamespace(normalize=lambda x: x) for m in bands}
    return SimpleNamespace(model=model, views=views)


def test_gradcam_explains_the_dims_it_is_asked_about():
    from decur.explain import ExplainConfig, Parts, saliency_over_set

    module = _hand_built({"a": 2, "b": 1})
    g = torch.Generator().manual_seed(0)
    data = [{"a": torch.rand(2, 16, 16, generator=g) + 0.5, "b": torch.rand(1, 16, 16, generator=g) + 0.5}
            for _ in range(6)]  # fmt: skip
    options = ExplainConfig(batch_size=3, standardize=False)  # raw outputs: a linear map, the answer is exact
    sal = saliency_over_set(module, data, 6, Parts(kc=1, k=2), options, torch.device("cpu"))
    for m in ("a", "b"):
        common, unique = sal.shown["common"][m].abs(), sal.shown["unique"][m].abs()
        # dim 0 (common, K_c = 1) depends on the left half only, dim 1 (unique) on the right half only
        assert float(common[:, 9:].max()) <= 1e-4 * float(common[:, :7].min()) and common[:, :7].min() > 0
        assert float(unique[:, :7].max()) <= 1e-4 * float(unique[:, 9:].min()) and unique[:, 9:].min() > 0
    assert set(sal.scores) == {"common", "unique"} and len(sal.scores["common"]) == 6
    assert sal.layers == {"a": "stage", "b": "stage"}


def test_integrated_gradients_keep_the_sign_of_each_band():
    from decur.explain import spectral_saliency

    module = _hand_built({"a": 3})
    w = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    module.model.encoders["a"].stage.conv.weight.data = w[:, :, None, None]
    x = {"a": torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5}
    left = torch.zeros(8, 8)
    left[:, :4] = 1
    ig = spectral_saliency(module, x, slice(0, 1), standardize=False, steps=8)["a"]
    # a linear output: IG is exactly (x - 0) · gradient; per band w_c · mean over the left half of x_c, normalised
    per_band = w[0] * (x["a"] * left).mean(dim=(2, 3))
    expected = per_band / per_band.abs().sum(1, keepdim=True)
    np.testing.assert_allclose(ig, expected.numpy(), rtol=1e-4)
    assert (ig[:, 1] < 0).all() and (ig[:, 0] > 0).all()  # the negative band stays negative


def test_saliency_score_is_the_mean_of_the_normalised_log_product():
    from decur.explain import saliency_scores

    # unit maps a = [0, 0.5, 1], b = [0, 0.5, 1] (already in [0, 1]): product [0, 0.25, 1]; log(p + 1e-6)
    # normalised to [0, 1] gives [0, 1 - ln 4 / ln 1e6 ... ]: mean = (0 + (ln 0.25 - ln 1e-6) / -ln 1e-6 + 1) / 3
    a = torch.tensor([[[0.0, 0.5, 1.0]]])
    score = float(saliency_scores({"a": a, "b": a * 4 - 2})[0])  # b: another scale and offset, the same unit map
    lo = math.log(1e-6)
    expected = (0 + (math.log(0.25 + 1e-6) - lo) / (math.log(1 + 1e-6) - lo) + 1) / 3
    assert score == pytest.approx(expected, rel=1e-5)
    assert abs(score - (0 + 0.25 + 1) / 3) > 0.1  # without the log it would be 0.417


def test_the_explain_helpers_leave_the_model_in_the_mode_they_found_it():
    """embeddings, alignment_per_batch, gradcam_maps and spectral saliency run in eval mode and restore every
    submodule's own flag (a module in training, with one frozen BatchNorm in eval, comes back exactly so)."""
    from decur.data.build import build_dataset, dataset_stats
    from decur.explain import alignment_per_batch, embeddings

    cfg = load_config(REPO / "configs" / "smoke.yaml", ["data.length=8"])
    dataset = build_dataset(cfg)
    module = PretrainModule(cfg, dataset_stats(dataset, ["optical", "sar"])).train()
    frozen = module.model.encoders["sar"].bn1.eval()
    flags = {name: sub.training for name, sub in module.named_modules()}
    embeddings(module, dataset, 4)
    alignment_per_batch(module, dataset, 1, 4)
    x = {m: torch.randn(2, b, 24, 24) for m, b in (("optical", 13), ("sar", 2))}
    gradcam_maps(module, x, slice(0, 4))
    spectral_saliency(module, x, slice(0, 4), steps=2)
    assert {name: sub.training for name, sub in module.named_modules()} == flags
    assert module.training and not frozen.training
