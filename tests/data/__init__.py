"""Fixture generators in the real layouts of the datasets decur reads, and the GeoTIFF writer they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tif(path: Path, data: np.ndarray) -> None:
    """A ``bands x H x W`` array as a GeoTIFF (folders created), without georeference."""
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
               "dtype": data.dtype.name}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
