"""Fixture generator for GeoNRW in the release layout: one tiny tile per city of the official split.

    python -m tests.data.geonrw.data OUT_DIR

``<city>/<E>_<N>_rgb.jp2`` (3-band uint8 JPEG2000), ``_dem.tif`` (float32 elevation, m), ``_seg.tif`` (uint8
classes 0-10), ``TILE`` px instead of 1000, EPSG:25832 like the release.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from decur.data.geonrw import TEST_CITIES, TRAIN_CITIES

TILE = 40


def _write(path: Path, data: np.ndarray, driver: str) -> None:
    c, h, w = data.shape
    profile = {"driver": driver, "height": h, "width": w, "count": c, "dtype": data.dtype.name,
               "crs": "EPSG:25832", "transform": from_origin(300000, 5700000, 1, 1)}  # fmt: skip
    if driver == "JP2OpenJPEG":
        profile |= {"REVERSIBLE": "YES", "QUALITY": "100"}  # lossless, so tests can compare pixel values
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def generate(root: Path, tile: int = TILE) -> Path:
    rng = np.random.default_rng(0)
    for i, city in enumerate(TRAIN_CITIES + TEST_CITIES):
        folder = root / city
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{300 + i}_{5650 + i}"
        seg = rng.integers(0, 11, (1, tile, tile)).astype(np.uint8)
        rgb = (rng.integers(0, 256, (3, tile, tile)) // 2 + seg * 10).astype(np.uint8)
        dem = (rng.normal(80 + 10 * i, 3, (1, tile, tile)) + seg).astype(np.float32)
        _write(folder / f"{stem}_rgb.jp2", rgb, "JP2OpenJPEG")
        _write(folder / f"{stem}_dem.tif", dem, "GTiff")
        _write(folder / f"{stem}_seg.tif", seg, "GTiff")
    return root


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
