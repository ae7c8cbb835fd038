"""View pipelines: any channel count, shared geometry, multispectral-safe ops, standardisation."""

from __future__ import annotations

import pytest
import torch

from decur.augment import PRESETS, ViewPipeline, resized_crop, sample_geometry


def _pipe(preset, bands, crop=16, scale=(0.08, 1.0)):
    return ViewPipeline(preset, bands, crop, scale, [0.5] * bands, [0.25] * bands)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("bands", [1, 2, 3, 13])
def test_any_channel_count(preset, bands):
    torch.manual_seed(0)
    x = torch.rand(5, bands, 24, 20)
    for view in (0, 1):
        out = _pipe(preset, bands)(x, view=view)
        assert out.shape == (5, bands, 16, 16) and torch.isfinite(out).all()


def test_shared_geometry_gives_the_same_crop_in_both_modalities():
    torch.manual_seed(0)
    base = torch.rand(4, 1, 32, 32)
    dem, sar = _pipe("dem", 1), _pipe("none", 2)
    g = sample_geometry(4, (0.2, 0.6), PRESETS["dem"])
    a = dem(base, geometry=g)
    b = sar(torch.cat([base, base], 1), geometry=g)
    torch.testing.assert_close(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 0], b[:, 1])
    c = dem(base)  # independent geometry differs
    assert not torch.allclose(a, c)


def test_full_box_without_flip_is_identity_at_same_size():
    x = torch.rand(2, 3, 16, 16)
    pipe = _pipe("none", 3)
    g = sample_geometry(2, (1.0, 1.0), PRESETS["none"])
    g.boxes[:] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(pipe(x, geometry=g), pipe.normalize(x), rtol=1e-5, atol=1e-5)


def test_multispectral_grayscale_and_jitter_keep_values_in_range():
    pipe = ViewPipeline("optical", 13, 16, (0.5, 1.0), [0.0] * 13, [1.0] * 13)
    x = torch.rand(64, 13, 16, 16)
    gray = pipe._grayscale(x)
    torch.testing.assert_close(gray[:, 0], x.mean(1))
    out = pipe(x, view=1)
    assert float(out.min()) >= 0 and float(out.max()) <= 1  # jitter clamps, solarize stays in [0, 1]


def test_mismatched_input_is_rejected():
    with pytest.raises(ValueError, match="expects N x 13"):
        _pipe("optical", 13)(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        _pipe("colour", 3)


def test_solarize_and_contrast_match_their_definitions():
    from decur.augment import _solarize

    x = torch.rand(1000)
    torch.testing.assert_close(_solarize(x.clone()), torch.where(x < 0.5, x, 1 - x))
    pipe = ViewPipeline("optical", 13, 16, (0.5, 1.0), [0.0] * 13, [1.0] * 13)
    pipe.spec = PRESETS["optical"].__class__(brightness=0.0, contrast=0.5)  # contrast only
    torch.manual_seed(3)
    x = torch.rand(4, 13, 8, 8) * 0.5 + 0.25
    torch.manual_seed(3)
    torch.empty(4).uniform_(1.0, 1.0)  # the brightness draw comes first (a factor of 1 here), then contrast
    factor = torch.empty(4).uniform_(0.5, 1.5).view(-1, 1, 1, 1)
    torch.manual_seed(3)
    out = pipe._color_jitter(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, ((x - mean) * factor + mean).clamp(0, 1))


@pytest.mark.parametrize("size", [24, 56, 224])
def test_blur_matches_kornia(size):  # 24, 56 px: one 2-D pass; 224 px: separable
    import kornia.filters

    from decur.augment import _gaussian_blur

    torch.manual_seed(2)
    x = torch.rand(6, 3, size, size)
    sigma = torch.rand(6) * 2 + 0.05
    k = max(3, (size // 10) | 1)
    ref = kornia.filters.gaussian_blur2d(x, (k, k), torch.stack([sigma, sigma], 1), border_type="reflect")
    torch.testing.assert_close(_gaussian_blur(x, sigma, size), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("size", "crop"), [(64, 56), (264, 224), (40, 56), (120, 24)])
def test_crop_is_bilinear_and_antialiased_where_shrunk_twice(size, crop):
    """Against torchvision's roi_align: one sample per pixel below a 2x shrink, adaptive averaging from 2x."""
    from torchvision.ops import roi_align

    torch.manual_seed(1)
    x = torch.rand(32, 3, size, size + 4)
    pipe = _pipe("none", 3, crop=crop)
    g = pipe.sample_geometry(32)
    px = g.boxes * torch.tensor([size + 4, size, size + 4, size])
    rois = torch.cat([torch.arange(32.0)[:, None], px], 1)
    single = roi_align(x, rois, (crop, crop), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    adaptive = roi_align(x, rois, (crop, crop), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    shrunk = (px[:, 2] - px[:, 0] >= 2 * crop) | (px[:, 3] - px[:, 1] >= 2 * crop)
    expected = torch.where(shrunk.view(-1, 1, 1, 1), adaptive, single)
    torch.testing.assert_close(resized_crop(x, g, pipe.crop_size), expected, rtol=0, atol=1e-4)  # float32 coordinates
    if size == 120:
        assert shrunk.any() and not shrunk.all()


@pytest.mark.parametrize("size", [64, 120])
def test_flips_folded_into_the_crop_equal_flipping_the_crop(size):
    torch.manual_seed(3)
    x = torch.rand(32, 2, size, size)
    pipe = _pipe("none", 2, crop=24)
    g = sample_geometry(32, (0.08, 1.0), PRESETS["dem"])  # hflip and vflip with p 0.5
    plain = resized_crop(
        x, type(g)(g.boxes, torch.zeros(32, dtype=torch.bool), torch.zeros(32, dtype=torch.bool)), pipe.crop_size
    )
    expected = torch.where(g.hflip.view(-1, 1, 1, 1), plain.flip(-1), plain)
    expected = torch.where(g.vflip.view(-1, 1, 1, 1), expected.flip(-2), expected)
    assert g.hflip.any() and g.vflip.any()
    torch.testing.assert_close(resized_crop(x, g, pipe.crop_size), expected, rtol=0, atol=1e-5)


def _applied_fractions(monkeypatch, preset: str, bands: int, view: int, n: int = 4000) -> dict[str, float]:
    """Fraction of the batch each op of one view pipeline was applied to (recorded where ops are dispatched)."""
    from decur import augment, geometry

    seen: dict[str, list[float]] = {}
    original = geometry.on_subset

    def recording(x, chosen, op):
        name = getattr(op, "__name__", "op")
        if name == "<lambda>":  # the flips, applied in this order by resized_crop
            name = "hflip" if "hflip" not in seen else "vflip"
        seen.setdefault(name, []).append(float(chosen.float().mean()))
        return original(x, chosen, op)

    monkeypatch.setattr(augment, "on_subset", recording)  # photometric ops
    monkeypatch.setattr(geometry, "on_subset", recording)  # the flips of resized_crop
    torch.manual_seed(0)
    pipe = ViewPipeline(preset, bands, 8, (0.5, 1.0), [0.5] * bands, [0.25] * bands)
    pipe(torch.rand(n, bands, 12, 12), view=view)
    return {k: v[0] for k, v in seen.items()}


@pytest.mark.parametrize(
    ("preset", "bands", "view", "expected"),
    [
        ("optical", 13, 0, {"_blur": 1.0, "_solarize": 0.0, "_color_jitter": 0.8, "_grayscale": 0.2, "hflip": 0.5}),
        ("optical", 13, 1, {"_blur": 0.1, "_solarize": 0.2, "_color_jitter": 0.8, "_grayscale": 0.2}),
        ("rgb", 3, 1, {"_blur": 0.1, "_solarize": 0.2}),
        ("sar", 2, 0, {"_blur": 0.5, "_grayscale": 0.2, "hflip": 0.5, "vflip": 0.5, "_solarize": 0.0}),
        ("hha", 3, 0, {"hflip": 0.5, "vflip": 0.0, "_blur": 0.0, "_color_jitter": 0.0}),
    ],
)
def test_presets_apply_their_documented_probabilities(monkeypatch, preset, bands, view, expected):
    fractions = _applied_fractions(monkeypatch, preset, bands, view)
    for op, p in expected.items():
        got = fractions.get(op, 0.0)
        sigma = (p * (1 - p) / 4000) ** 0.5
        assert abs(got - p) <= 5 * sigma + 1e-9, f"{preset} view {view + 1}: {op} applied to {got:.3f}, expected {p}"
