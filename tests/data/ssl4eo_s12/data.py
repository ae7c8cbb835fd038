"""Fixture generator for SSL4EO-S12 in the raw release layout (tiny rasters, fixed seed).

    python -m tests.data.ssl4eo_s12.data OUT_DIR

Writes ``s1/`` (VV, VH float32 dB, EPSG:4326), ``s2c/`` (13 bands) and ``s2a/`` (12 bands, uint16, UTM) for
``LOCATIONS`` locations x 4 seasons, with native 10/20/60 m raster sizes for a ``SIZE`` px tile and season folder
names that differ between the modalities (as in the release). S1 scenes alternate between Sentinel-1A and -1B
(``S1B_…`` for even seasons), so sorting the S1 folder names does not sort them in time: seasons must be paired by
the acquisition date in the names (a reader pairing by sorted name pairs January SAR with August optical).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

SIZE = 36
LOCATIONS = ("0000000", "0000001", "0000002", "0000003")
SEASONS = 4
S2C = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
GSD = {"B1": 60, "B9": 60, "B10": 60, "B5": 20, "B6": 20, "B7": 20, "B8A": 20, "B11": 20, "B12": 20}


def write_tif(path: Path, data: np.ndarray, crs: str, pixel: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1, "dtype": data.dtype.name,
        "crs": crs, "transform": from_origin(500000, 3000000, pixel, pixel),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def generate(root: Path, size: int = SIZE, locations: tuple[str, ...] = LOCATIONS) -> Path:
    rng = np.random.default_rng(0)
    for loc in locations:
        for season in range(SEASONS):
            day = 10 + season
            sat, stamp = "S1B" if season % 2 == 0 else "S1A", f"2020{3 * season + 1:02d}{day}T010800"
            s1 = root / "s1" / loc / f"{sat}_IW_GRDH_1SDV_{stamp}_{stamp}_032904_03CFBA_D{season}{loc[-2:]}"
            for band, mean in (("VV", -12.5), ("VH", -20.2)):
                db = rng.normal(mean, 5.0, (size, size)).astype(np.float32)
                write_tif(s1 / f"{band}.tif", db, "EPSG:4326", 0.0001)
            for product, bands in (("s2c", S2C), ("s2a", tuple(b for b in S2C if b != "B10"))):
                folder = (
                    root / product / loc / f"2020{3 * season + 2:02d}{day}T054639_2020{3 * season + 2:02d}{day}_T43RCP"
                )
                for band in bands:
                    side = size * 10 // GSD.get(band, 10)
                    refl = rng.integers(0, 12000, (side, side)).astype(np.uint16)  # some above 10000: clipping
                    write_tif(folder / f"{band}.tif", refl, "EPSG:32643", GSD.get(band, 10))
    return root


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
