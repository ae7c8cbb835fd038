"""BigEarthNet-MM v1.0 on the real example patches: pairing, band order, 19-class labels, exclusions, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from decur.data.bigearthnet import LABELS_19, BigEarthNetMM
from decur.data.errors import DatasetError

from .conftest import REAL_DATA

REAL = REAL_DATA / "bigearthnet-mm-v1"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real BigEarthNet-MM sample not found at {REAL}")
PATCH = "S2A_MSIL2A_20170613T101031_87_48"


@pytest.fixture
def root(tmp_path) -> Path:
    """The release layout, built from links to the real example patches, with a split list of all six."""
    for src, dst in (("BigEarthNet-S2-Example", "BigEarthNet-v1.0"), ("BigEarthNet-S1-Example", "BigEarthNet-S1-v1.0")):
        (tmp_path / dst).mkdir()
        for patch in (REAL / src).iterdir():
            (tmp_path / dst / patch.name).symlink_to(patch)
    names = sorted(p.name for p in (REAL / "BigEarthNet-S2-Example").iterdir())
    (tmp_path / "train.csv").write_text("\n".join(names) + "\n")
    return tmp_path


def test_real_patches_shapes_band_order_and_labels(root):
    ds = BigEarthNetMM(root, "train")
    assert len(ds) == 6
    s = ds[ds.patches.index(PATCH)]
    assert s["s1"].shape == (2, 120, 120) and s["s2"].shape == (13, 120, 120) and s["label"].shape == (19,)
    assert torch.all(s["s2"][10] == 0)  # the inserted B10
    s1_folder = ds.s1_root / ds.s1_of[PATCH]
    with rasterio.open(s1_folder / f"{s1_folder.name}_VV.tif") as src:
        vv = torch.from_numpy(src.read(1))
    lo, hi = torch.quantile(vv.flatten(), 0.02), torch.quantile(vv.flatten(), 0.98)
    torch.testing.assert_close(s["s1"][0], vv.clamp(lo, hi))  # VV first, although sorting names puts VH first
    with rasterio.open(ds.s2_root / PATCH / f"{PATCH}_B04.tif") as src:
        b4 = src.read(1).astype(np.float32)
    np.testing.assert_allclose(s["s2"][3].numpy(), np.clip(np.round(b4 / 10000 * 255), 0, 255) / 255)
    names = list(LABELS_19)
    expected = {
        names.index("Arable land"),
        names.index("Land principally occupied by agriculture, with significant areas of natural vegetation"),
    }
    assert set(torch.nonzero(s["label"]).flatten().tolist()) == expected


def test_twelve_bands_without_b10(root):
    assert BigEarthNetMM(root, "train", insert_b10=False)[0]["s2"].shape == (12, 120, 120)


def test_official_lists_and_exclusions(root):
    excluded = BigEarthNetMM(root, "train", exclude=[REAL / "metadata" / "patches_with_seasonal_snow.csv.bz2"])
    assert "S2B_MSIL2A_20180204T94161_57_38" not in excluded.patches and len(excluded) == 5
    # the official bz2 split lists parse; the test split holds one of the examples
    shutil.copy(REAL / "metadata" / "test.csv.bz2", root / "test.csv.bz2")
    with pytest.raises(DatasetError, match="have no S1 patch"):  # 125,866 names, only the examples exist here
        BigEarthNetMM(root, "test")


def test_torchgeo_split_list(root):
    ds = BigEarthNetMM(root, "train")
    (root / "bigearthnet-val.csv").write_text("".join(f"{p},{ds.s1_of[p]}\n" for p in ds.patches[:2]))
    assert len(BigEarthNetMM(root, "val")) == 2


def test_bad_inputs(root, tmp_path):
    with pytest.raises(DatasetError, match="split list is missing"):
        BigEarthNetMM(root, "val")
    with pytest.raises(DatasetError, match=r"BigEarthNet-v1\.0: folder is missing"):
        BigEarthNetMM(tmp_path / "nothing", "train")
    # a patch whose metadata names an unknown label
    broken = root / "BigEarthNet-v1.0" / PATCH
    broken.unlink()
    shutil.copytree(REAL / "BigEarthNet-S2-Example" / PATCH, broken)
    meta = broken / f"{PATCH}_labels_metadata.json"
    meta.write_text(json.dumps({"labels": ["Martian dust"]}))
    ds = BigEarthNetMM(root, "train")
    with pytest.raises(DatasetError, match="unknown label"):
        ds[ds.patches.index(PATCH)]
    meta.unlink()
    with pytest.raises(DatasetError, match="labels metadata is missing"):
        ds[ds.patches.index(PATCH)]
    (broken / f"{PATCH}_B05.tif").unlink()
    meta.write_text(json.dumps({"labels": ["Pastures"]}))
    with pytest.raises(DatasetError, match=r"B05\.tif: file is missing"):
        ds[ds.patches.index(PATCH)]


V2 = REAL_DATA / "bigearthnet-v2-format"


def test_v2_release_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from decur.data.bigearthnet import BigEarthNetV2

    root = tmp_path / "reben"
    shutil.copytree(V2, root, ignore=shutil.ignore_patterns("*.md", "*.txt"))
    s2 = next((root / "BigEarthNet-S2").glob("*/*")).name
    s1 = next((root / "BigEarthNet-S1").glob("*/*")).name
    rows = [  # the shared S1 and S2 patches are different places: a format test, not a real pair
        {"patch_id": s2, "labels": ["Arable land", "Pastures"], "split": "train", "s1_name": s1,
         "contains_seasonal_snow": False, "contains_cloud_or_shadow": False},
        {"patch_id": s2, "labels": ["Pastures"], "split": "train", "s1_name": s1,
         "contains_seasonal_snow": True, "contains_cloud_or_shadow": False},
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata.parquet")
    ds = BigEarthNetV2(root, "train")
    assert len(ds) == 1 and len(BigEarthNetV2(root, "train", exclude_snow=False)) == 2
    s = ds[0]
    assert s["s1"].shape == (2, 120, 120) and s["s2"].shape == (13, 120, 120)
    assert s["label"].sum() == 2 and s["label"][list(LABELS_19).index("Pastures")] == 1
    with pytest.raises(DatasetError, match="holds no test patches"):
        BigEarthNetV2(root, "test")
    (root / "metadata.parquet").unlink()
    with pytest.raises(DatasetError, match=r"metadata\.parquet: is missing"):
        BigEarthNetV2(root)
