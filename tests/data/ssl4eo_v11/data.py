"""Fixture generator for SSL4EO-S12 v1.1 in the release's layout (Zarr-v2 zip files), made at test time.

    python -m tests.data.ssl4eo_v11.data OUT_DIR [FILES] [SAMPLES] [SIZE]

``OUT_DIR/train/{S1GRD,S2L1C,S2L2A,S2RGB}/ssl4eos12_train_seasonal_data_<6 digits>.zarr.zip``, every file with the
release's variables and dimensions: ``bands (sample, time, band, y, x)`` (S1GRD float16 dB, S2 int16 DN, S2RGB
uint8), ``cloud_mask (sample, time, y, x)`` uint8 in the S2 products, ``center_lat``/``center_lon``/``crs`` per
sample, ``sample_id``/``file_id``/``time_`` per (sample, time), coordinates ``band``, ``sample`` (7-digit ids),
``time``, ``x``, ``y``; each timestamp its own chunk. The zip holds the Zarr v2 directory tree (stored, not
deflated), as the release's files. Timestamp ``t`` of every location is cloudy over ``t / 3`` of the tile (3 is
fully cloudy), so cloud filtering and its least-cloudy fallback are observable; S1's VV is about ``-20 + 3 t`` dB;
the S2 digital numbers of location ``i`` at timestamp ``t`` are ``1000 · (t + 1) + i`` in band 0, i.e. a reflectance
of ``(1000 · t + i) / 10000`` after the release's +1000 DN offset (a fingerprint that tests read back). The other S2
DN lie in [1000, 7000): reflectances of 0-0.6 plus the offset, as the release.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FOLDERS = {"S1GRD": 2, "S2L1C": 13, "S2L2A": 12, "S2RGB": 3}
BAND_NAMES = {
    "S1GRD": ["vv", "vh"],
    "S2L1C": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"],
    "S2L2A": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"],
    "S2RGB": ["R", "G", "B"],
}


def write_shard(
    path: Path,
    folder: str,
    ids: list[str],
    size: int,
    rng: np.random.Generator,
    times: int = 4,
    empty: tuple[int, int] | None = None,
) -> None:
    """One ``.zarr.zip`` file of ``folder``'s modality for the locations ``ids`` (``empty``: the (sample, time)
    whose S1 VV band is NaN everywhere, as a no-data acquisition)."""
    import xarray as xr

    n, c = len(ids), FOLDERS[folder]
    if folder == "S1GRD":
        bands = (rng.normal(-15, 4, (n, times, c, size, size))).astype(np.float16)
        for t in range(times):  # the timestamp fingerprint of S1: VV around -20 + 3 t dB
            bands[:, t, 0] = rng.normal(-20 + 3 * t, 0.5, (n, size, size)).astype(np.float16)
        if empty is not None:
            bands[empty[0], empty[1], 0] = np.nan
    elif folder == "S2RGB":
        bands = rng.integers(0, 256, (n, times, c, size, size)).astype(np.uint8)
    else:
        bands = rng.integers(1000, 7000, (n, times, c, size, size)).astype(np.int16)
        for i in range(n):
            for t in range(times):
                bands[i, t, 0] = 1000 * (t + 1) + int(ids[i]) % 1000
    data = {
        "bands": (("sample", "time", "band", "y", "x"), bands),
        "center_lat": (("sample",), rng.uniform(-60, 60, n)),
        "center_lon": (("sample",), rng.uniform(-180, 180, n)),
        "crs": (("sample",), np.full(n, 32632, np.int64)),
        "sample_id": (("sample", "time"), np.array([[f"{s}_{t}" for t in range(times)] for s in ids])),
        "file_id": (("sample", "time"), np.array([[f"{folder}_{s}_{t}" for t in range(times)] for s in ids])),
        "time_": (("sample", "time"), np.full((n, times), np.datetime64("2020-06-01T10:00:00", "ns"))),
    }
    encoding = {"bands": {"chunks": (n, 1, c, size, size)}}
    if folder in ("S2L1C", "S2L2A"):
        cloud = np.zeros((n, times, size, size), np.uint8)
        for t in range(times):  # cloud shares 0, 1/3, 2/3, 1: timestamp 3 is cloudy everywhere
            cloud[:, t, : round(t / (times - 1) * size)] = 1
        data["cloud_mask"] = (("sample", "time", "y", "x"), cloud)
        encoding["cloud_mask"] = {"chunks": (n, 1, size, size)}
    coords = {"band": BAND_NAMES[folder], "sample": ids, "time": np.arange(times), "y": np.arange(size),
              "x": np.arange(size)}  # fmt: skip
    ds = xr.Dataset(data, coords=coords)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "store"
        ds.to_zarr(tree, zarr_format=2, consolidated=True, encoding=encoding)
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted(tree.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tree).as_posix())


def make_v11(
    out: Path,
    files: int = 3,
    samples: int = 4,
    size: int = 16,
    folders: tuple[str, ...] = tuple(FOLDERS),
    seed: int = 0,
) -> Path:
    """A ``train/`` split of ``files`` shards x ``samples`` locations for ``folders``; returns the split folder."""
    rng = np.random.default_rng(seed)
    split = Path(out) / "train"
    for k in range(files):
        ids = [f"{k * 1000 + i * 7:07d}" for i in range(samples)]
        name = f"ssl4eos12_train_seasonal_data_{k + 1:06d}.zarr.zip"
        for folder in folders:
            write_shard(split / folder / name, folder, ids, size, rng)
    return split


if __name__ == "__main__":
    out = Path(sys.argv[1])
    shutil.rmtree(out / "train", ignore_errors=True)
    args = [int(a) for a in sys.argv[2:5]]
    print(make_v11(out, *args))
