"""GeoNRW on generated fixtures in the release layout (no real sample is shared): split, patches, DEM, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from decur.config import load_config
from decur.data.errors import DatasetError
from decur.data.geonrw import TEST_CITIES, TRAIN_CITIES, GeoNRW
from decur.train.run import pretrain

from .conftest import REPO
from .data.geonrw.data import generate


@pytest.fixture(scope="module")
def root(module_tmp) -> Path:
    return generate(module_tmp("geonrw"))


def test_split_patches_and_values(root):
    train, test = GeoNRW(root, "train", patch_size=20), GeoNRW(root, "test", patch_size=20)
    assert len(train) == len(TRAIN_CITIES) * 4 and len(test) == len(TEST_CITIES) * 4
    s = train[5]  # tile 1, patch (0, 1)
    assert s["rgb"].shape == (3, 20, 20) and s["dem"].shape == (3, 20, 20) and s["mask"].shape == (20, 20)
    base = train.tiles[1]
    with rasterio.open(f"{base}_rgb.jp2") as src:
        rgb = src.read()[:, :20, 20:40]
    with rasterio.open(f"{base}_dem.tif") as src:
        dem = src.read(1)[:20, 20:40]
    with rasterio.open(f"{base}_seg.tif") as src:
        seg = src.read(1)[:20, 20:40]
    np.testing.assert_allclose(s["rgb"].numpy(), rgb / 255, atol=1e-6)
    np.testing.assert_allclose(s["dem"][0].numpy(), dem - dem.mean(), atol=1e-4)
    assert torch.equal(s["dem"][0], s["dem"][2])
    assert torch.equal(s["mask"], torch.from_numpy(seg.astype(np.int64)))
    whole = GeoNRW(root, "test", patch_size=None, dem_channels=1)
    assert len(whole) == 3 and whole[0]["dem"].shape == (1, 40, 40)


def test_errors(root, tmp_path):
    broken = tmp_path / "geonrw"
    shutil.copytree(root, broken)
    shutil.rmtree(broken / "herne")
    with pytest.raises(DatasetError, match=r"city folder\(s\) of the test split are missing \(herne\)"):
        GeoNRW(broken, "test")
    next((broken / "neuss").glob("*_seg.tif")).unlink()
    with pytest.raises(DatasetError, match=r"_seg\.tif: is missing"):
        GeoNRW(broken, "test", cities=("neuss",))
    dem = next((broken / "duesseldorf").glob("*_dem.tif"))
    with rasterio.open(dem, "w", driver="GTiff", height=30, width=30, count=1, dtype="float32") as dst:
        dst.write(np.zeros((1, 30, 30), np.float32))
    ds = GeoNRW(broken, "test", patch_size=20, cities=("duesseldorf",))
    with pytest.raises(DatasetError, match="is 1 x 30 x 30, expected 1 x 40 x 40"):
        ds[0]
    with pytest.raises(DatasetError, match="does not divide"):
        GeoNRW(root, "test", patch_size=30)


@pytest.mark.slow  # the RGB-DEM config end to end; the reader itself is tested above
def test_pretrain_runs_on_fixture(root, tmp_path):
    overrides = [
        "data.dataset=geonrw",
        f"data.root={root}",
        "data.modalities=[{name: rgb, bands: 3, augment: rgb}, {name: dem, bands: 3, augment: dem}]",
        "data.image_size=20",
        "data.crop_size=16",
        "data.batch_size=8",
        "trainer.max_epochs=1",
        "eval.enabled=false",
    ]
    summary = pretrain(load_config(REPO / "configs" / "smoke.yaml", overrides), tmp_path)
    assert np.isfinite(summary["final_loss"]["train/total"])


def test_data_check_walks_every_patch(root, tmp_path, capsys):
    from decur.cli import main

    assert main(["data", "check", str(root), "--dataset", "geonrw", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "3 sample(s)" in out and "no problems found" in out and "mask" in out
    broken = tmp_path / "g"
    shutil.copytree(root, broken)
    bad = next((broken / "herne").glob("*_dem.tif"))
    bad.write_bytes(b"garbage")
    assert main(["data", "check", str(broken), "--dataset", "geonrw", "--split", "test"]) == 1
    assert str(bad) in capsys.readouterr().out
