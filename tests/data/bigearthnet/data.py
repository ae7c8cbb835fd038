"""Fixture generator for BigEarthNet in its release layouts: v1.0 (BigEarthNet-MM) and v2.0 (reBEN).

    python -m tests.data.bigearthnet.data OUT_DIR

- ``v1/``: ``BigEarthNet-v1.0/<S2 patch>/<patch>_B01.tif ... _B8A.tif`` (uint16; 120 px at 10 m, 60 px at 20 m,
  20 px at 60 m) with ``<patch>_labels_metadata.json`` (43-class names), ``BigEarthNet-S1-v1.0/<S1 patch>/`` with
  ``_VV.tif`` / ``_VH.tif`` (float32 dB) and metadata naming ``corresponding_s2_patch``, ``train.csv`` /
  ``val.csv`` / ``test.csv``;
- ``v2/``: ``BigEarthNet-S2/<product>/<patch>/...``, ``BigEarthNet-S1/<product>/<s1 patch>/...`` and
  ``metadata.parquet`` (``patch_id``, ``labels`` as 19-class names, ``split``, ``s1_name``, snow/cloud flags).

Labels follow the bands a little (water patches are dark in B08), so a classifier has something to learn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from decur.data.bigearthnet import LABELS_43, S2_BANDS, S2_SIDE

SPLITS = {"train": 8, "val": 2, "test": 4}
LABEL_CHOICES = (
    ("Non-irrigated arable land", "Pastures"),
    ("Coniferous forest", "Mixed forest"),
    ("Sea and ocean", "Intertidal flats"),
    ("Salt marshes", "Water bodies"),
    ("Discontinuous urban fabric", "Bare rock"),
)


def _tif(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1,
               "dtype": data.dtype.name, "crs": "EPSG:32633",
               "transform": from_origin(500000, 5000000, 10, 10)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _patch(s2_folder: Path, s1_folder: Path, labels: tuple[str, ...], rng: np.random.Generator) -> None:
    water = any("ocean" in x or "Water" in x or "marshes" in x for x in labels)
    for band in S2_BANDS:
        side = S2_SIDE.get(band, 120)
        level = 300 if water and band in ("B08", "B8A") else 2500
        _tif(
            s2_folder / f"{s2_folder.name}_{band}.tif", rng.integers(level // 2, level, (side, side)).astype(np.uint16)
        )
    for band in ("VV", "VH"):
        _tif(s1_folder / f"{s1_folder.name}_{band}.tif", rng.normal(-20 if water else -10, 3, (120, 120)).astype("f4"))


def make_v1(root: Path, seed: int = 0) -> Path:
    """BigEarthNet-MM v1.0 fixture."""
    rng = np.random.default_rng(seed)
    k = 0
    for split, n in SPLITS.items():
        names = []
        for _ in range(n):
            labels = LABEL_CHOICES[k % len(LABEL_CHOICES)]
            s2 = f"S2A_MSIL2A_20170613T101031_{k}_{k + 3}"
            s1 = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{k}_{k + 3}"
            s2_folder, s1_folder = root / "BigEarthNet-v1.0" / s2, root / "BigEarthNet-S1-v1.0" / s1
            _patch(s2_folder, s1_folder, labels, rng)
            assert all(label in LABELS_43 for label in labels)
            (s2_folder / f"{s2}_labels_metadata.json").write_text(json.dumps({"labels": list(labels)}))
            (s1_folder / f"{s1}_labels_metadata.json").write_text(
                json.dumps({"labels": list(labels), "corresponding_s2_patch": s2})
            )
            names.append(s2)
            k += 1
        (root / f"{split}.csv").write_text("".join(f"{n}\n" for n in names))
    return root


def make_v2(root: Path, seed: int = 1) -> Path:
    """BigEarthNet v2.0 (reBEN) fixture; labels are 19-class names as in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from decur.data.bigearthnet import labels_to_19

    names19 = list(__import__("decur.data.bigearthnet", fromlist=["LABELS_19"]).LABELS_19)
    rng = np.random.default_rng(seed)
    rows = []
    k = 0
    for split, n in {"train": 6, "validation": 2, "test": 3}.items():
        for _ in range(n):
            labels = LABEL_CHOICES[k % len(LABEL_CHOICES)]
            s2 = f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{k}_{k + 3}"
            s1 = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{k}_{k + 3}"
            _patch(root / "BigEarthNet-S2" / s2.rsplit("_", 2)[0] / s2,
                   root / "BigEarthNet-S1" / "_".join(s1.split("_")[:5]) / s1, labels, rng)  # fmt: skip
            target = labels_to_19(labels, root)
            rows.append({"patch_id": s2, "labels": [names19[i] for i in target.nonzero().flatten().tolist()],
                         "split": split, "s1_name": s1, "contains_seasonal_snow": k == 1,
                         "contains_cloud_or_shadow": False})  # fmt: skip
            k += 1
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata.parquet")
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1])
    make_v1(out / "v1")
    make_v2(out / "v2")
    print(f"wrote {out / 'v1'} and {out / 'v2'}")
