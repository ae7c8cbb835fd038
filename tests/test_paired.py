"""Users' own paired folders: stem matching, formats, scaling, statistics, errors, end-to-end pretraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from decur.cli import main
from decur.config import load_config
from decur.data.errors import DatasetError
from decur.data.paired import PairedFolders, compute_stats
from decur.train.run import pretrain

from .conftest import REPO
from .data import write_tif


@pytest.fixture
def pairs(tmp_path) -> Path:
    """8 pairs: 2-band float32 GeoTIFF 'sar' and 3-band 8-bit PNG 'rgb', one unpaired extra file."""
    rng = np.random.default_rng(0)
    for i in range(8):
        write_tif(tmp_path / "sar" / f"tile_{i:03d}.tif", rng.normal(-12, 4, (2, 32, 32)).astype(np.float32))
        (tmp_path / "rgb").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "rgb" / f"tile_{i:03d}.png")
    write_tif(tmp_path / "sar" / "extra.tif", np.zeros((2, 32, 32), np.float32))
    return tmp_path


def test_matching_reading_and_scaling(pairs):
    ds = PairedFolders(pairs, {"sar": "sar", "rgb": "rgb"}, {"rgb": 1 / 255}, skip_unpaired=True)
    assert len(ds) == 8 and ds.skipped == ["extra: missing in ['rgb']"]
    s = ds[3]
    assert s["sar"].shape == (2, 32, 32) and s["rgb"].shape == (3, 32, 32)
    assert 0 <= float(s["rgb"].min()) and float(s["rgb"].max()) <= 1
    with rasterio.open(pairs / "sar" / "tile_003.tif") as src:
        np.testing.assert_array_equal(s["sar"].numpy(), src.read())


def test_stats_are_computed_once_and_cached(pairs):
    ds = PairedFolders(pairs, {"sar": "sar"})
    assert ds.stats is None
    stats = compute_stats(ds)
    everything = torch.stack([ds[i]["sar"] for i in range(len(ds))]).transpose(0, 1).flatten(1).double()
    np.testing.assert_allclose(stats["sar"]["mean"], everything.mean(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats["sar"]["std"], everything.std(1, unbiased=False).numpy(), rtol=1e-5)
    assert ds.stats == {"sar": (stats["sar"]["mean"], stats["sar"]["std"])}
    assert json.loads((pairs / ".decur-stats.json").read_text())["sar"]["mean"] == stats["sar"]["mean"]


def test_errors(pairs, tmp_path):
    with pytest.raises(DatasetError, match="not present in every modality"):
        PairedFolders(pairs, {"sar": "sar", "rgb": "rgb"})
    with pytest.raises(DatasetError, match="folder of modality 'dem' is missing"):
        PairedFolders(pairs, {"sar": "sar", "dem": "dem"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no"):
        PairedFolders(tmp_path, {"x": "empty"})
    write_tif(pairs / "sar" / "tile_005.tif", np.zeros((3, 32, 32), np.float32))
    ds = PairedFolders(pairs, {"sar": "sar"})
    ds[0]
    with pytest.raises(DatasetError, match=r"tile_005\.tif: has shape \(3, 32, 32\)"):
        ds[ds.stems.index("tile_005")]
    write_tif(pairs / "sar" / "tile_006.tif", np.full((2, 32, 32), np.nan, np.float32))
    with pytest.raises(DatasetError, match="NaN/Inf"):
        ds[ds.stems.index("tile_006")]
    (pairs / "rgb" / "tile_007.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match="cannot be decoded"):
        PairedFolders(pairs, {"rgb": "rgb"})[7]


def test_stats_command_and_pretraining(pairs, tmp_path, capsys):
    (pairs / "sar" / "extra.tif").unlink()
    overrides = [
        "data.dataset=paired_folders",
        f"data.root={pairs}",
        "data.modalities=[{name: sar, bands: 2, augment: sar}, {name: rgb, bands: 3, augment: rgb, scale: 0.00392}]",
        "data.crop_size=24",
        "data.batch_size=4",
        "trainer.max_epochs=1",
        "eval.enabled=false",
    ]
    config = str(REPO / "configs" / "smoke.yaml")
    assert main(["data", "stats", "--config", config, *overrides]) == 0
    assert "cached in" in capsys.readouterr().out
    summary = pretrain(load_config(config, overrides), tmp_path / "run")
    assert np.isfinite(summary["final_loss"]["train/total"])
