"""The synthetic dataset: deterministic, well-formed, and its factors act where the docstring says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decur.data import SyntheticMultimodal


def test_deterministic_per_seed_and_index():
    a, b = SyntheticMultimodal(8, 32, seed=3), SyntheticMultimodal(8, 32, seed=3)
    for key in ("optical", "sar", "mask", "label", "factors"):
        assert torch.equal(a[5][key], b[5][key])
    assert not torch.equal(a[5]["optical"], a[6]["optical"])
    assert not torch.equal(a[5]["sar"], SyntheticMultimodal(8, 32, seed=4)[5]["sar"])


def test_shapes_dtypes_ranges_and_consistency():
    ds = SyntheticMultimodal(4, 40, num_classes=6, optical_bands=10, sar_bands=3)
    s = ds[0]
    assert s["optical"].shape == (10, 40, 40) and s["optical"].dtype == torch.float32
    assert s["sar"].shape == (3, 40, 40)
    assert 0 <= float(s["optical"].min()) and float(s["optical"].max()) <= 1
    assert -60 < float(s["sar"].min()) and float(s["sar"].max()) < 20  # dB
    assert s["mask"].dtype == torch.int64 and s["mask"].shape == (40, 40)
    fractions = torch.bincount(s["mask"].flatten(), minlength=6).float() / 1600
    torch.testing.assert_close(s["factors"][:6], fractions)
    assert torch.equal(s["label"], (fractions >= 0.01).float())
    assert len(ds.factor_names) == s["factors"].numel() == 10
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="image_size"):
        SyntheticMultimodal(4, 4)


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_unique_factors_show_in_their_modality_only():
    ds = SyntheticMultimodal(300, 32)
    samples = [ds[i] for i in range(300)]
    f = torch.stack([s["factors"] for s in samples]).numpy()
    names = ds.factor_names
    haze, moisture = f[:, names.index("haze")], f[:, names.index("soil_moisture")]
    opt = torch.stack([s["optical"] for s in samples])
    sar = torch.stack([s["sar"] for s in samples])
    blue_over_swir = (opt[:, 0].mean((1, 2)) / opt[:, 12].mean((1, 2))).numpy()
    vv = sar[:, 0].mean((1, 2)).numpy()
    assert _corr(haze, blue_over_swir) > 0.6
    assert abs(_corr(haze, vv)) < 0.2
    assert _corr(moisture, vv) > 0.3
    assert abs(_corr(moisture, blue_over_swir)) < 0.2


def test_unique_strength_scales_haze_as_its_formula_says():
    """Blue (443 nm) of the documented model: ``surface x (1 - 0.35 haze) + 0.3 haze`` (path radiance (443/λ)^4 = 1
    there, phenology acts on red edge / NIR / red only). At strength 0 the scene has no haze; at strength 1 its blue
    band is that formula of the strength-0 band, pixel by pixel where nothing is clipped."""
    plain = SyntheticMultimodal(8, 32, unique_strength=0.0)
    hazy = SyntheticMultimodal(8, 32, unique_strength=1.0)
    for i in range(8):
        a, b = hazy[i], plain[i]
        haze = float(a["factors"][8])  # the first unique factor: haze
        assert torch.equal(a["factors"], b["factors"]) and torch.equal(a["mask"], b["mask"])
        inside = (b["optical"][0] > 0) & (b["optical"][0] < 1) & (a["optical"][0] < 1)
        expected = b["optical"][0] * (1 - 0.35 * haze) + 0.3 * haze
        assert torch.allclose(a["optical"][0][inside], expected[inside], atol=1e-4)
        assert inside.float().mean() > 0.9


def test_fewer_unique_factors_drop_the_named_ones_from_the_end():
    one = SyntheticMultimodal(4, 16, unique_factors=1)
    assert one.factor_names[8:] == ["haze", "soil_moisture"]
    assert one.factor_groups == {"shared": list(range(8)), "optical": [8], "sar": [9]}
    none = SyntheticMultimodal(4, 16, unique_factors=0, elevation=True)
    assert none.factor_names == [f"class_{c}_fraction" for c in range(8)] and none[0]["factors"].shape == (8,)
    with pytest.raises(ValueError, match="unique_factors"):
        SyntheticMultimodal(4, 16, unique_factors=-1)


def test_an_extra_unique_factor_is_a_texture_whose_amplitude_is_the_factor_with_its_own_band_pattern():
    """Extra factor v of the optical modality multiplies the image by ``1 + 0.3 v p_b f(x)``: one spatial field f for
    every band b, scaled by the world's band pattern p_b; invisible at strength 0."""
    two = SyntheticMultimodal(4, 32, unique_factors=2)
    three = SyntheticMultimodal(4, 32, unique_factors=3)
    assert three.factor_names[8:] == [
        "haze",
        "phenology",
        "optical_extra_1",
        "soil_moisture",
        "roughness",
        "sar_extra_1",
    ]
    pattern = three._extra_patterns["optical"][0]
    for i in range(4):
        a, b = three[i], two[i]
        v = float(a["factors"][10])
        ratio = a["optical"] / b["optical"].clamp_min(1e-6) - 1  # = 0.3 v p_b f(x) where nothing is clipped
        ok = ((b["optical"] > 1e-3) & (a["optical"] > 0) & (a["optical"] < 1) & (b["optical"] < 1)).all(dim=0)
        field = ratio[:, ok] / (0.3 * v * pattern[:, None])
        assert torch.allclose(field, field[:1].expand_as(field), atol=1e-3)  # the same field in every band
        assert float(field.abs().mean()) > 0.05
    silent = SyntheticMultimodal(4, 32, unique_factors=3, unique_strength=0.0)
    flat = SyntheticMultimodal(4, 32, unique_factors=2, unique_strength=0.0)
    assert torch.equal(silent[0]["optical"], flat[0]["optical"]) and torch.equal(silent[0]["sar"], flat[0]["sar"])
