"""Clear errors for bad input files, and the one checked raster reader every dataset uses."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from decur.errors import DecurError


class DatasetError(DecurError, ValueError):
    """A dataset file or folder is missing or wrong; the message names the path, the problem and the fix."""

    def __init__(self, path: str | Path, problem: str | None = None, fix: str | None = None) -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        if problem is None:  # rebuilt from its message alone (torch re-raising a DataLoader worker's error)
            super().__init__(str(path))
            return
        super().__init__(f"{path}: {problem} (fix: {fix})")

    def __reduce__(self) -> tuple[type[DatasetError], tuple[Path, str | None, str | None]]:
        """Pickled by its three fields, so that it crosses from a worker process to the caller whole."""
        return type(self), (self.path, self.problem, self.fix)


def read_band(path: Path, shape: tuple[int, int], dtype: type[np.generic]) -> np.ndarray:
    """Read the single band of a GeoTIFF and check its size, type and values.

    Args:
        path: The file.
        shape: Expected ``(height, width)``.
        dtype: Expected numpy dtype.

    Raises:
        DatasetError: Missing, unreadable or truncated file, more than one band, wrong size or type, NaN/Inf.

    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    if not path.is_file():
        raise DatasetError(path, "file is missing", "restore it from the dataset release")
    try:
        with warnings.catch_warnings(), rasterio.open(path) as src:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # damage shows up as a read error below
            if src.count != 1:
                raise DatasetError(path, f"has {src.count} bands, expected 1", "use the release's single-band files")
            data = src.read(1)
    except RasterioError as err:
        raise DatasetError(path, f"cannot be read as GeoTIFF ({err})", "re-download the file") from None
    if data.shape != shape:
        raise DatasetError(path, f"is {data.shape[0]}x{data.shape[1]} px, expected {shape[0]}x{shape[1]}", "check size")
    if data.dtype != np.dtype(dtype):
        raise DatasetError(path, f"has dtype {data.dtype}, expected {np.dtype(dtype)}", "use the release's files")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise DatasetError(path, f"holds {bad} NaN/Inf pixel(s)", "exclude this location (void_ids) or repair it")
    return data
