"""SSL4EO-S12: the real release sample, generated fixtures, season pairing, bad input, end-to-end pretraining."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from decur.config import load_config
from decur.data.errors import DatasetError
from decur.data.ssl4eo_s12 import S2A_BANDS, S2C_BANDS, SSL4EOS12
from decur.train.run import pretrain

from .conftest import REAL_DATA, REPO
from .data.ssl4eo_s12.data import generate, write_tif

REAL = REAL_DATA / "ssl4eo-s12"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real SSL4EO-S12 sample not found at {REAL}")


@pytest.fixture(scope="module")
def fixture_root(module_tmp) -> Path:
    return generate(module_tmp("ssl4eo"))


@pytest.fixture
def broken(fixture_root, tmp_path) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(fixture_root, root)
    return root


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


# ---- the real sample --------------------------------------------------------------------------------------------


@needs_real
@pytest.mark.parametrize(("product", "bands"), [("s2c", S2C_BANDS), ("s2a", S2A_BANDS)])
def test_real_sample_shapes_values_and_band_order(product, bands):
    ds = SSL4EOS12(REAL, s2_product=product)
    assert len(ds) == 1 and ds.ids == ["0000200"]
    torch.manual_seed(0)
    s = ds[0]
    assert s["s1"].shape == (2, 2, 264, 264) and s["s1"].dtype == torch.float32
    assert s["s2"].shape == (2, len(bands), 264, 264)
    assert 0 <= float(s["s2"].min()) and float(s["s2"].max()) <= 1
    seasons = ds.seasons(0)
    assert [len(v) for v in seasons.values()] == [2, 2]
    # identify the season of view 0 and check B4 (10 m, index 3) against the file: 8-bit compression
    for folder in seasons[product]:
        raw = _read(folder / "B4.tif").astype(np.float32)
        expected = np.clip(np.round(raw / 10000 * 255), 0, 255) / 255
        if np.allclose(s["s2"][0, 3].numpy(), expected):
            break
    else:
        pytest.fail("view 0 of s2 matches no season's B4")
    vv = s["s1"][0, 0]
    assert -60 < float(vv.min()) < float(vv.max()) < 30  # dB, outliers cut


@needs_real
def test_real_sample_sar_outlier_cut():
    ds = SSL4EOS12(REAL)
    folder = ds.seasons(0)["s1"][0]
    raw = torch.from_numpy(_read(folder / "VV.tif"))
    out = ds._read_s1(folder)[0]
    assert float(out.max()) == pytest.approx(float(torch.quantile(raw.flatten(), 0.98)), rel=1e-5)
    assert float(out.min()) == pytest.approx(float(torch.quantile(raw.flatten(), 0.02)), rel=1e-5)


# ---- fixtures ---------------------------------------------------------------------------------------------------


def _season_of(ds: SSL4EOS12, index: int, tensor: torch.Tensor, modality: str) -> int:
    folders = ds.seasons(index)["s1" if modality == "s1" else ds.s2_product]
    for k, folder in enumerate(folders):
        ref = ds._read_s1(folder) if modality == "s1" else ds._read_s2(folder)
        if torch.allclose(ref, tensor):
            return k
    raise AssertionError("no season matches")


def test_seasons_are_paired_by_order_or_drawn_independently(fixture_root):
    paired = SSL4EOS12(fixture_root, size=36)
    independent = SSL4EOS12(fixture_root, size=36, pair_seasons=False)
    mismatches = 0
    for seed in range(6):
        torch.manual_seed(seed)
        s = paired[1]
        for v in range(2):
            assert _season_of(paired, 1, s["s1"][v], "s1") == _season_of(paired, 1, s["s2"][v], "s2")
        torch.manual_seed(seed)
        t = independent[1]
        mismatches += sum(
            _season_of(independent, 1, t["s1"][v], "s1") != _season_of(independent, 1, t["s2"][v], "s2")
            for v in range(2)
        )
    assert mismatches > 0


def test_seasons_pair_by_acquisition_date_not_by_sorted_name(fixture_root):
    from decur.data.ssl4eo_s12 import acquisition_date

    ds = SSL4EOS12(fixture_root, size=36)
    raw = sorted(p.name for p in (fixture_root / "s1" / "0000001").iterdir())
    dates = [acquisition_date(Path(n)) for n in raw]
    assert dates != sorted(dates)  # the fixture mixes S1A/S1B: sorting names would pair the wrong seasons
    seasons = ds.seasons(1)
    for s1, s2 in zip(seasons["s1"], seasons["s2c"], strict=True):
        assert abs((acquisition_date(s1) - acquisition_date(s2)).days) < 40  # the fixture's S2 is a month later
    assert [acquisition_date(f) for f in seasons["s1"]] == sorted(dates)


def test_pair_by_date_with_unequal_counts_keeps_the_closest_seasons():
    from decur.data.ssl4eo_s12 import pair_by_date

    s1 = [Path(f"S1B_IW_GRDH_1SDV_2020{m}01T000000_x") for m in ("10", "04", "01", "07")]
    s2 = [Path("20200720T000000_a_T1"), Path("20200110T000000_b_T1"), Path("20201005T000000_c_T1")]
    expected = [(s1[2], s2[1]), (s1[3], s2[0]), (s1[0], s2[2])]  # April's S1 has no S2 partner: unused
    assert pair_by_date(s1, s2) == expected
    assert pair_by_date(s2, s1) == [(b, a) for a, b in expected]  # symmetric


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=5), st.lists(st.integers(0, 400), min_size=1, max_size=9))
def test_pair_by_date_is_the_closest_order_preserving_pairing_found_by_brute_force(days_a, days_b):
    """The brute force the pairing rule states: every order-preserving subset, the least total gap, the first
    (lexicographically) on ties."""
    import itertools
    from datetime import datetime, timedelta

    from decur.data.ssl4eo_s12 import pair_by_date

    def folders(days, prefix):
        return [Path(f"{prefix}_{(datetime(2020, 1, 1) + timedelta(days=d)):%Y%m%dT%H%M%S}_{i}")
                for i, d in enumerate(days)]  # fmt: skip

    a, b = folders(days_a, "S1A"), folders(days_b, "S2")
    got = pair_by_date(a, b)
    short, long = (sorted(a, key=lambda f: f.name[4:]), sorted(b, key=lambda f: f.name[3:]))
    if len(a) > len(b):
        short, long = long, short
    day = {f: int((datetime.strptime(f.name.split("_")[1], "%Y%m%dT%H%M%S") - datetime(2020, 1, 1)).days)
           for f in a + b}  # fmt: skip
    ordered_long = sorted(long, key=lambda f: (day[f], str(f)))
    ordered_short = sorted(short, key=lambda f: (day[f], str(f)))
    best = min(itertools.combinations(ordered_long, len(short)),
               key=lambda c: sum(abs(day[x] - day[y]) for x, y in zip(ordered_short, c, strict=True)))  # fmt: skip
    expected = list(zip(ordered_short, best, strict=True))
    assert got == (expected if len(a) <= len(b) else [(y, x) for x, y in expected])


def test_pairing_a_location_with_hundreds_of_seasons_is_immediate():
    """C(300, 150) subsets: the brute force never ends; the pairing is quadratic."""
    from datetime import datetime, timedelta

    from decur.data.ssl4eo_s12 import pair_by_date

    s1 = [Path(f"S1A_{datetime(2019, 1, 1) + timedelta(days=2 * i):%Y%m%dT%H%M%S}") for i in range(150)]
    s2 = [Path(f"{datetime(2019, 1, 1) + timedelta(days=i, hours=1):%Y%m%dT%H%M%S}_x") for i in range(300)]
    pairs = pair_by_date(s1, s2)
    assert len(pairs) == 150 and all(y == s2[2 * i] for i, (_, y) in enumerate(pairs))


def test_season_folder_without_a_date_is_named(broken):
    season = sorted((broken / "s1" / "0000002").iterdir())[0]
    season.rename(season.with_name("my_scene"))
    ds = SSL4EOS12(broken, size=36)
    with pytest.raises(DatasetError, match=r"my_scene.*no acquisition date") as err:
        ds[2]
    assert err.value.fix.startswith("keep the release's names (S2 '20200604T054639_")
    from decur.data.check import check

    problems = check("ssl4eo_s12", broken, size=36).problems
    assert any("my_scene" in p and "acquisition date" in p for p in problems)


def test_s2_compression_clips_instead_of_wrapping(fixture_root):
    ds = SSL4EOS12(fixture_root, size=36)
    folder = ds.seasons(0)["s2c"][0]
    raw = _read(folder / "B2.tif")
    out = ds._read_s2(folder)[1]
    assert (raw > 10000).any()
    assert torch.all(out[torch.from_numpy(raw > 10000)] == 1.0)


def test_void_ids_and_l2a(fixture_root):
    ds = SSL4EOS12(fixture_root, size=36, void_ids=["1", "0000002"])
    assert ds.ids == ["0000000", "0000003"]
    assert SSL4EOS12(fixture_root, s2_product="s2a", size=36)[0]["s2"].shape == (2, 12, 36, 36)


# ---- bad input --------------------------------------------------------------------------------------------------


def _first_s2_season(root: Path) -> Path:
    return sorted((root / "s2c" / "0000000").iterdir())[0]


def _all_seasons_load(root: Path) -> None:
    ds = SSL4EOS12(root, size=36)
    for i in range(len(ds)):
        for folder in ds.seasons(i)["s2c"]:
            ds._read_s2(folder)
        for folder in ds.seasons(i)["s1"]:
            ds._read_s1(folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: shutil.rmtree(r / "s2c"), "s2c/ folder of SSL4EO-S12 is missing"),
        (lambda r: shutil.rmtree(r / "s1" / "0000002"), "exist in only one modality"),
        (lambda r: (_first_s2_season(r) / "B8.tif").unlink(), "B8.tif: file is missing"),
        (lambda r: (_first_s2_season(r) / "B8.tif").write_bytes(b"II*\x00garbage"), "cannot be read as GeoTIFF"),
        (
            lambda r: (_first_s2_season(r) / "B8.tif").write_bytes((_first_s2_season(r) / "B8.tif").read_bytes()[:300]),
            "cannot be read as GeoTIFF",
        ),
        (lambda r: write_tif(_first_s2_season(r) / "B8.tif", np.zeros((20, 20), np.uint16), "EPSG:32643", 10),
         "is 20x20 px, expected 36x36"),
        (lambda r: write_tif(_first_s2_season(r) / "B8.tif", np.zeros((36, 36), np.float32), "EPSG:32643", 10),
         "has dtype float32, expected uint16"),
        (
            lambda r: write_tif(
                sorted((r / "s1" / "0000000").iterdir())[0] / "VV.tif",
                np.full((36, 36), np.nan, np.float32), "EPSG:4326", 1e-4,
            ),
            "NaN/Inf",
        ),
        (lambda r: ([p.unlink() for p in _first_s2_season(r).iterdir()] and _first_s2_season(r).rmdir())
         or [shutil.rmtree(p) for p in (r / "s2c" / "0000000").iterdir()], "holds no season folders"),
    ],
)  # fmt: skip
def test_bad_input_names_file_and_problem(broken, damage, message):
    damage(broken)
    with pytest.raises(DatasetError, match=message):
        _all_seasons_load(broken)


def test_multiband_file_is_rejected(broken):
    path = _first_s2_season(broken) / "B8.tif"
    profile = {"driver": "GTiff", "height": 36, "width": 36, "count": 2, "dtype": "uint16"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((2, 36, 36), np.uint16))
    with pytest.raises(DatasetError, match="has 2 bands, expected 1"):
        _all_seasons_load(broken)


def test_unpaired_locations_can_be_skipped_and_are_reported(broken):
    shutil.rmtree(broken / "s1" / "0000002")
    shutil.rmtree(broken / "s2c" / "0000003")
    with pytest.raises(DatasetError) as err:  # refused by default, naming where each lone location is
        SSL4EOS12(broken, size=36)
    assert (
        err.value.path == broken
        and err.value.problem == ("2 location(s) exist in only one modality, e.g. s2c/0000002, s1/0000003")
        and err.value.fix == "restore the missing folders, or set data.skip_bad=true to leave them out"
    )
    ds = SSL4EOS12(broken, size=36, skip_bad=True)
    assert "0000002" not in ds.ids and ds.skipped == ["0000002: unpaired", "0000003: unpaired"]


@pytest.mark.parametrize("product", ["s1", "s2c", "s2a"])
def test_a_missing_product_folder_is_named(fixture_root, tmp_path, product):
    root = tmp_path / "root"
    shutil.copytree(fixture_root, root)
    shutil.rmtree(root / product, ignore_errors=True)
    with pytest.raises(DatasetError) as err:
        SSL4EOS12(root, s2_product="s2a" if product == "s2a" else "s2c")
    assert err.value.path == root / product and err.value.problem == f"the {product}/ folder of SSL4EO-S12 is missing"
    assert err.value.fix == "point root at the release"
    with pytest.raises(ValueError, match=r"s2_product must be 's2c' \(L1C\) or 's2a' \(L2A\), got 's2b'"):
        SSL4EOS12(fixture_root, s2_product="s2b")


def test_empty_root(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2c").mkdir()
    with pytest.raises(DatasetError, match="no paired locations"):
        SSL4EOS12(tmp_path)


# ---- end to end -------------------------------------------------------------------------------------------------


def _ssl4eo_overrides(root: Path, size: int) -> list[str]:
    return [
        "data.dataset=ssl4eo_s12",
        f"data.root={root}",
        "data.modalities=[{name: s1, bands: 2, augment: sar}, {name: s2, bands: 13, augment: optical}]",
        f"data.image_size={size}",
        "data.crop_size=32",
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "eval.enabled=false",
    ]


def test_pretrain_runs_on_fixture(fixture_root, tmp_path):
    summary = pretrain(load_config(REPO / "configs" / "smoke.yaml", _ssl4eo_overrides(fixture_root, 36)), tmp_path)
    assert np.isfinite(summary["final_loss"]["train/total"])


def test_the_shipped_vit_s16_config_pretrains_on_the_release_layout(fixture_root, tmp_path):
    """configs/ssl4eo_s12_vit_s16_decur.yaml as shipped, shrunk only in size: ViT-Ti for ViT-S, 32-px crops,
    projector 64³, batch 4, one process on the CPU in fp32, one epoch."""
    shrink = ["model.arch=vit_tiny_patch16_224", "data.image_size=36", "data.crop_size=32", "data.batch_size=4",
              "data.num_workers=0", "model.projector=[64, 64, 64]", "method.common_dim=48", "trainer.devices=1",
              "trainer.strategy=auto", "trainer.precision=32-true", "trainer.max_epochs=1"]  # fmt: skip
    cfg = load_config(REPO / "configs" / "ssl4eo_s12_vit_s16_decur.yaml", [f"data.root={fixture_root}", *shrink])
    summary = pretrain(cfg, tmp_path / "run")
    assert np.isfinite(summary["final_loss"]["train/total"])
    assert cfg.optim.name == "adamw" and list(cfg.data.crop_scale) == [0.2, 1.0]  # the release's values stay


@needs_real
def test_pretrain_runs_on_real_pixels(tmp_path):
    root = tmp_path / "real"
    for product in ("s1", "s2c"):
        for i in range(4):  # the one real location, linked under 4 ids to fill a batch
            (root / product).mkdir(parents=True, exist_ok=True)
            (root / product / f"{i:07d}").symlink_to(REAL / product / "0000200")
    summary = pretrain(load_config(REPO / "configs" / "smoke.yaml", _ssl4eo_overrides(root, 264)), tmp_path / "run")
    assert np.isfinite(summary["final_loss"]["train/total"])


def test_data_check_cli_summarises_and_names_bad_files(fixture_root, broken, capsys):
    from decur.cli import main

    assert main(["data", "check", str(fixture_root), "--dataset", "ssl4eo_s12", "--size", "36"]) == 0
    out = capsys.readouterr().out
    assert "4 sample(s)" in out and "no problems found" in out and "2x36x36" in out
    shutil.rmtree(broken / "s1" / "0000003")
    bad_file = _first_s2_season(broken) / "B4.tif"
    bad_file.write_bytes(bad_file.read_bytes()[:200])
    assert main(["data", "check", str(broken), "--dataset", "ssl4eo_s12", "--size", "36"]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out and "0000003: unpaired" in out and str(bad_file) in out


# ---- the packed store --------------------------------------------------------------------------------------------


def test_pack_reproduces_raw_samples_and_reads_only_drawn_seasons(fixture_root, tmp_path, capsys):
    from decur.augment import as_float
    from decur.cli import main
    from decur.data.pack import PackedSSL4EOS12

    assert main(["data", "pack", str(fixture_root), str(tmp_path / "pack"), "--size", "36", "--workers", "1"]) == 0
    packed, raw = PackedSSL4EOS12(tmp_path / "pack"), SSL4EOS12(fixture_root, size=36)
    assert packed.ids == raw.ids and packed.counts == [4] * 4
    assert __import__("json").loads((tmp_path / "pack" / "index.json").read_text())["pairing"] == "acquisition-date"
    for index in range(4):
        torch.manual_seed(index)
        a = raw[index]
        torch.manual_seed(index)
        b = packed[index]
        assert b["s2"].dtype == torch.uint8 and b["s1"].dtype == torch.float16  # compact between processes
        assert torch.equal(a["s2"], as_float(b["s2"]))  # 8-bit S2 is stored exactly
        torch.testing.assert_close(a["s1"], as_float(b["s1"]), atol=0.02, rtol=0)  # float16 dB
    # the training config picks the packed store when root holds one
    summary = pretrain(
        load_config(REPO / "configs" / "smoke.yaml", _ssl4eo_overrides(tmp_path / "pack", 36)), tmp_path / "run"
    )
    assert np.isfinite(summary["final_loss"]["train/total"])


def test_packed_store_errors(tmp_path):
    from decur.data.pack import PackedSSL4EOS12

    with pytest.raises(DatasetError, match="not a packed store"):
        PackedSSL4EOS12(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "something-else"}')
    with pytest.raises(DatasetError, match="re-pack"):
        PackedSSL4EOS12(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot be read as JSON"):
        PackedSSL4EOS12(tmp_path)


def test_store_packed_by_name_sorting_must_be_repacked(tmp_path):
    from decur.data.check import check
    from decur.data.pack import PackedSSL4EOS12

    old = {"format": "decur-ssl4eo-s12-pack/1", "ids": ["0000000"], "seasons": [4], "s2_product": "s2c", "size": 8}
    (tmp_path / "index.json").write_text(__import__("json").dumps(old))
    with pytest.raises(DatasetError, match=r"sorted folder name.*re-pack"):
        PackedSSL4EOS12(tmp_path)
    problems = check("ssl4eo_s12", tmp_path).problems
    assert len(problems) == 1 and "re-pack" in problems[0]


def test_skip_bad_replaces_and_reports_broken_samples(broken, tmp_path, capsys):
    (_first_s2_season(broken) / "B8.tif").write_bytes(b"not a tiff")
    overrides = [*_ssl4eo_overrides(broken, 36), "data.pair_seasons=true"]
    with pytest.raises(DatasetError, match=r"B8\.tif"):
        pretrain(load_config(REPO / "configs" / "smoke.yaml", overrides), tmp_path / "strict")
    # all 4 seasons of location 0 hold the broken file only in season 0: make every season bad to be certain
    for season in sorted((broken / "s2c" / "0000000").iterdir()):
        (season / "B8.tif").write_bytes(b"not a tiff")
    summary = pretrain(
        load_config(REPO / "configs" / "smoke.yaml", [*overrides, "data.skip_bad=true"]), tmp_path / "lenient"
    )
    assert summary["skipped_samples"] and all("B8.tif" in s for s in summary["skipped_samples"])
    assert "bad sample(s) were skipped" in capsys.readouterr().out


@pytest.mark.parametrize("shape", [(2, 264, 264), (3, 2, 17, 9), (1, 1, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cut_outliers_clips_to_torch_quantiles(shape, dtype):
    from decur.data.preprocess import cut_outliers

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4 - 15
    flat = x.flatten(-2)
    lo = torch.quantile(flat, 0.02, dim=-1)[..., None, None]
    hi = torch.quantile(flat, 0.98, dim=-1)[..., None, None]
    out = cut_outliers(x)
    assert out.dtype == dtype and out.shape == x.shape
    # the same values as clipping at torch.quantile's bounds, up to rounding of the interpolation (float eps x |x|)
    tol = 4 * torch.finfo(dtype).eps * x.abs().max().item()
    torch.testing.assert_close(out, torch.maximum(torch.minimum(x, hi), lo), atol=tol, rtol=0)
    if shape[-1] * shape[-2] > 1000:  # 2 % of the pixels clipped at each end, per band
        clipped = (x < lo).flatten(-2).float().mean(-1)
        assert torch.allclose(clipped, torch.full_like(clipped, 0.02), atol=1 / shape[-1])


@pytest.mark.parametrize("shape", [(2, 264, 264), (3, 17, 9), (1, 1, 5)])
@pytest.mark.parametrize("values", ["backscatter", "ties_and_signed_zeros", "extremes"])
def test_cut_outliers_half_equals_cut_outliers_exactly(shape, values):
    from decur.data.preprocess import cut_outliers, cut_outliers_half

    rng = np.random.default_rng(len(values) + shape[0])
    if values == "backscatter":
        x = rng.normal(-15, 4, shape).astype(np.float16)
    elif values == "ties_and_signed_zeros":  # few distinct values: every rank lands on a tie
        x = rng.choice(np.array([-0.0, 0.0, -1.5, 2.0, 7.25], np.float16), shape)
    else:
        x = rng.choice(np.array([-65504, -np.inf, np.inf, 65504, 6e-8, -6e-8], np.float16), shape)
    expected = cut_outliers(torch.from_numpy(x.astype(np.float32)))
    got = cut_outliers_half(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0, rtol=0, equal_nan=True)  # bit for bit (inf - inf: NaN in both)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_pack_stops_at_a_bad_file_naming_it_and_leaves_no_partial_store(broken, tmp_path, capsys, workers):
    """A worker's error crosses to the command (it used to hang: the error did not unpickle in the parent)."""
    from decur.cli import main

    bad = _first_s2_season(broken) / "B4.tif"
    bad.write_bytes(bad.read_bytes()[:200])
    out = tmp_path / "pack"
    args = ["data", "pack", str(broken), str(out), "--size", "36", "--workers", workers]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and err.count("\n") == 0 and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_packed_store_is_replaced_only_with_overwrite_and_survives_a_failed_repack(fixture_root, broken, tmp_path):
    import hashlib

    from decur.cli import main

    out = tmp_path / "pack"
    assert main(["data", "pack", str(fixture_root), str(out), "--size", "36", "--workers", "0"]) == 0
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert main(["data", "pack", str(fixture_root), str(out), "--size", "36", "--workers", "0"]) == 1
    bad = _first_s2_season(broken) / "B4.tif"
    bad.write_bytes(b"not a tiff")
    assert main(["data", "pack", str(broken), str(out), "--size", "36", "--workers", "0", "--overwrite"]) == 1
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} == digest
    import decur.data.pack as pack

    real = pack._read_location

    def interrupted(index):  # Ctrl-C while the third location is read
        if index == 2:
            raise KeyboardInterrupt
        return real(index)

    pack._read_location = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            pack.pack_ssl4eo_s12(fixture_root, out, size=36, workers=0, progress=False, overwrite=True)
    finally:
        pack._read_location = real
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} == digest
    assert main(["data", "pack", str(fixture_root), str(out), "--size", "36", "--workers", "0", "--overwrite"]) == 0


def test_a_dataset_error_crosses_process_boundaries_whole():
    import pickle

    err = pickle.loads(pickle.dumps(DatasetError("/x/B4.tif", "cannot be read", "re-download it")))
    assert (err.path, err.problem, err.fix) == (Path("/x/B4.tif"), "cannot be read", "re-download it")
    assert str(err) == "/x/B4.tif: cannot be read (fix: re-download it)"


def test_a_run_resumes_on_its_data_moved_but_not_on_other_data(fixture_root, tmp_path):
    from decur.config import ConfigError

    first = tmp_path / "first"
    shutil.copytree(fixture_root, first)
    run = tmp_path / "run"
    pretrain(load_config(REPO / "configs" / "smoke.yaml", _ssl4eo_overrides(first, 36)), run)
    moved = tmp_path / "scratch" / "staged"
    shutil.copytree(first, moved)
    more = [*_ssl4eo_overrides(moved, 36)[:-2], "trainer.max_epochs=2", "eval.enabled=false"]
    assert pretrain(load_config(REPO / "configs" / "smoke.yaml", more), run)["resumed_from"]["epoch"] == 1
    other = tmp_path / "other"  # the same size, one location another
    shutil.copytree(first, other)
    for product in ("s1", "s2c"):
        (other / product / "0000003").rename(other / product / "0000042")
    more = [*_ssl4eo_overrides(other, 36)[:-2], "trainer.max_epochs=3", "eval.enabled=false"]
    with pytest.raises(ConfigError, match=r"holds other data than the run .* a moved dataset may resume"):
        pretrain(load_config(REPO / "configs" / "smoke.yaml", more), run)


def test_a_bad_file_met_in_a_dataloader_worker_is_one_line_naming_it(broken, tmp_path, capsys):
    """torch re-raises a worker's error with the worker's traceback in the message; the command prints its last
    line (it used to end in a RuntimeError traceback: DatasetError could not be rebuilt from one message)."""
    from decur.cli import main

    for season in sorted((broken / "s2c" / "0000000").iterdir()):
        (season / "B8.tif").write_bytes(b"not a tiff")
    overrides = [*_ssl4eo_overrides(broken, 36)[:-3], "data.num_workers=2", "trainer.max_epochs=1",
                 "eval.enabled=false"]  # fmt: skip
    args = ["pretrain", "--config", str(REPO / "configs" / "smoke.yaml"), "--output", str(tmp_path / "run")]
    assert main([*args, *overrides]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("decur: error: ") and "B8.tif: cannot be read as GeoTIFF" in err[0]


def test_the_paper_config_runs_unchanged_on_a_cpu_and_says_how_its_4_devices_were_mapped(
    fixture_root, tmp_path, capsys
):
    """configs/ssl4eo_s12_decur.yaml (4 GPUs, DDP, bf16 in the paper) shrunk in size only: one CPU process here,
    the global batch kept on it, and the mapping said at the start."""
    from decur.cli import main

    shrunk = [f"data.root={fixture_root}", "data.image_size=36", "data.crop_size=32", "data.batch_size=4",
              "data.num_workers=0", "model.arch=resnet18", "model.projector=[64, 64, 64]",
              "trainer.max_epochs=1"]  # fmt: skip
    config = REPO / "configs" / "ssl4eo_s12_decur.yaml"
    assert main(["pretrain", "--config", str(config), "--output", str(tmp_path / "run"), *shrunk]) == 0
    out = capsys.readouterr().out
    assert (
        "decur: the config asks for 4 devices (ddp); no GPU here: one CPU process runs it with the global batch of 4 "
        "kept (4 per device instead of 1)"
    ) in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_step"] == 1  # 4 locations, one full batch of 4 in one process


def test_a_full_disk_during_a_repack_is_one_line_and_leaves_the_previous_store(
    fixture_root, tmp_path, capsys, monkeypatch
):
    """ENOSPC while the index is written (the last file of a pack): one true line, the old store byte-identical."""
    import errno
    import hashlib

    from decur.cli import main

    out = tmp_path / "pack"
    assert main(["data", "pack", str(fixture_root), str(out), "--size", "36", "--workers", "0"]) == 0
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    capsys.readouterr()
    assert main(["data", "pack", str(fixture_root), str(out), "--size", "36", "--workers", "0", "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("decur: error:") and "No space left on device" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(Path, "write_text", real)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} == digest


def test_20_and_60_m_bands_are_resampled_bilinearly_to_the_10_m_grid(fixture_root):
    """B5 (20 m, 18 px) and B1 (60 m, 6 px) of a 36-px tile: bilinear with half-pixel centres (OpenCV's INTER_LINEAR,
    torch's align_corners=False), then the paper's 8 bit — not nearest neighbour."""
    import rasterio
    import torch.nn.functional as F

    ds = SSL4EOS12(fixture_root, size=36)
    season = _first_s2_season(fixture_root)
    s2 = ds._read_s2(season)
    for band, index in (("B5", 4), ("B1", 0)):
        with rasterio.open(season / f"{band}.tif") as src:
            raw = torch.from_numpy(src.read(1).astype(np.float32))
        up = F.interpolate(raw[None, None], size=(36, 36), mode="bilinear", align_corners=False)[0, 0]
        want = (up / 10000 * 255).round().clamp(0, 255) / 255
        torch.testing.assert_close(s2[index], want)
        nearest = F.interpolate(raw[None, None], size=(36, 36), mode="nearest")[0, 0]
        assert not torch.allclose(s2[index], (nearest / 10000 * 255).round().clamp(0, 255) / 255)


def test_a_location_without_seasons_and_a_root_without_pairs_name_their_fix(fixture_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(fixture_root, root)
    for season in (root / "s2c" / "0000001").iterdir():
        shutil.rmtree(season)
    ds = SSL4EOS12(root, size=36)
    with pytest.raises(DatasetError) as err:
        ds.seasons(ds.ids.index("0000001"))
    assert (err.value.problem, err.value.fix) == ("holds no season folders", "re-extract this location")
    for product in ("s1", "s2c"):
        shutil.rmtree(root / product)
        (root / product).mkdir()
    with pytest.raises(DatasetError) as err:
        SSL4EOS12(root)
    assert (err.value.problem, err.value.fix) == ("no paired locations found", "check root and the s2 product folder")
