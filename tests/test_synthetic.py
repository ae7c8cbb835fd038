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
