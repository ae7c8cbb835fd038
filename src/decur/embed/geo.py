"""Footprints of samples as GeoParquet geometries: corners of a raster in longitude / latitude, encoded as WKB.

GeoParquet (1.1.0) stores geometries as Well-Known Binary in a binary column and describes them in the file's
``geo`` metadata. Without a ``crs`` entry the coordinates are OGC:CRS84 (longitude, latitude on WGS 84), which
is what every footprint here is reprojected to: an archive spans many UTM zones, and one column holds one CRS.
Each footprint is the raster's full extent, its four corners taken through the raster's affine transform (rotated
grids stay exact) and reprojected corner by corner, closed as a five-point ring.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

WGS84 = "EPSG:4326"
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def raster_corners(path: str | Path) -> tuple[np.ndarray, str] | None:
    """The four corners of a GeoTIFF in (longitude, latitude), counter-clockwise from the lower left, and its CRS.

    Returns:
        ``(4 x 2 array, the file's CRS as text)``, or ``None`` when the file has no CRS or no transform (a plain
        image: its sample gets no footprint).

    """
    import rasterio
    from rasterio.warp import transform

    with rasterio.open(path) as src:
        if src.crs is None or src.transform.is_identity:
            return None
        t, w, h = src.transform, src.width, src.height
        pixels = [(0, h), (w, h), (w, 0), (0, 0)]  # (col, row): lower left, lower right, upper right, upper left
        xs, ys = zip(*(t @ p for p in pixels), strict=True)
        crs = src.crs
        lon, lat = transform(crs, WGS84, list(xs), list(ys)) if crs.to_epsg() != 4326 else (xs, ys)
        return np.column_stack([lon, lat]).astype(np.float64), crs.to_string()


def polygon_wkb(corners: np.ndarray) -> bytes:
    """A closed polygon of ``corners`` (``K x 2``, the first point not repeated) as little-endian WKB (ISO type 3)."""
    ring = [*map(tuple, corners.tolist()), tuple(corners[0].tolist())]
    head = struct.pack("<BIII", 1, 3, 1, len(ring))  # byte order 1 = little endian, type 3 = Polygon, one ring
    return head + b"".join(struct.pack("<dd", x, y) for x, y in ring)


def bbox(corners: np.ndarray) -> dict[str, float]:
    """The bounding box of ``corners`` as GeoParquet 1.1's covering struct (``xmin, ymin, xmax, ymax``)."""
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return {"xmin": float(lo[0]), "ymin": float(lo[1]), "xmax": float(hi[0]), "ymax": float(hi[1])}


def geo_metadata(boxes: list[dict[str, float] | None]) -> dict[str, Any]:
    """GeoParquet 1.1.0 ``geo`` metadata of a ``geometry`` column of polygons with a ``bbox`` covering column."""
    present = [b for b in boxes if b is not None]
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "covering": {"bbox": {k: ["bbox", k] for k in BBOX_FIELDS}},
    }
    if present:
        column["bbox"] = [
            min(b["xmin"] for b in present),
            min(b["ymin"] for b in present),
            max(b["xmax"] for b in present),
            max(b["ymax"] for b in present),
        ]
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def corners_or_nan(where: str | Path | tuple[np.ndarray, str] | None) -> tuple[np.ndarray, str]:
    """A sample's footprint for a loader: a ``4 x 2`` array (NaN without one) and the CRS text ('' if none).

    ``where``: the sample's GeoTIFF (``raster_corners``), or its corners and CRS as the reader knows them.
    """
    if isinstance(where, tuple):
        return np.asarray(where[0], dtype=np.float64), where[1]
    found = raster_corners(where) if where is not None else None
    if found is None:
        return np.full((4, 2), math.nan), ""
    return found
