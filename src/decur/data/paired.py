"""Users' own co-registered data: one folder per modality, files matched by stem.

    root/sar/tile_0001.tif    root/optical/tile_0001.tif    root/dem/tile_0001.png    ...

GeoTIFFs are read with rasterio (all bands), PNG/JPEG with Pillow (grayscale as one band). Every file of a
modality must have the same band count and size; values are multiplied by the modality's ``scale`` (e.g. 1/255 for
8-bit images, 1e-4 for Sentinel-2 reflectance) so that photometric augmentations see [0, 1]. Band statistics are
computed once by ``compute_stats`` (``decur data stats``) and cached in ``root/.decur-stats.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from decur.data.errors import DatasetError

EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
STATS_FILE = ".decur-stats.json"


def read_image(path: Path) -> Tensor:
    """``C x H x W`` float32 from a GeoTIFF (rasterio) or PNG/JPEG (Pillow); errors name the file."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio
        from rasterio.errors import RasterioError

        try:
            with rasterio.open(path) as src:
                data = src.read()
        except RasterioError as err:
            raise DatasetError(path, f"cannot be read as GeoTIFF ({err})", "re-export the file") from None
        x = torch.from_numpy(data.astype(np.float32))
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                array = np.asarray(img, dtype=np.float32)
        except (OSError, UnidentifiedImageError) as err:
            raise DatasetError(path, f"cannot be decoded as an image ({err})", "re-export the file") from None
        x = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
    if not torch.isfinite(x).all():
        raise DatasetError(path, f"holds {int((~torch.isfinite(x)).sum())} NaN/Inf value(s)", "fill or mask them")
    return x


class PairedFolders(Dataset[dict[str, Tensor]]):
    """Samples ``{modality: C x H x W}`` from files with the same stem in every modality folder.

    Args:
        root: Parent folder.
        folders: Modality name → sub-folder of ``root`` (e.g. ``{"sar": "s1", "optical": "s2"}``).
        scale: Modality name → factor applied to the raw values (default 1).
        skip_unpaired: Leave out stems missing in some modality (listed in ``skipped``) instead of raising.
        keep_unpaired: Keep every stem; a sample lacks the modalities that have no file of its stem
            (``decur embed`` writes nulls for them).

    Raises:
        DatasetError: Missing folder, no files, unpaired files (unless skipped).

    """

    def __init__(
        self,
        root: str | Path,
        folders: Mapping[str, str],
        scale: Mapping[str, float] | None = None,
        skip_unpaired: bool = False,
        keep_unpaired: bool = False,
    ) -> None:
        self.root = Path(root)
        self.folders = dict(folders)
        self.scale = {m: (scale or {}).get(m, 1.0) for m in self.folders}
        files: dict[str, dict[str, Path]] = {}
        for m, sub in self.folders.items():
            folder = self.root / sub
            if not folder.is_dir():
                raise DatasetError(folder, f"folder of modality {m!r} is missing", "check root and the folder names")
            files[m] = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in EXTENSIONS}
            if not files[m]:
                raise DatasetError(folder, f"holds no {'/'.join(EXTENSIONS)} files", "check the folder")
        stems = [set(f) for f in files.values()]
        common = set.intersection(*stems)
        unpaired = sorted(set.union(*stems) - common)
        self.skipped = [f"{s}: missing in {[m for m in files if s not in files[m]]}" for s in unpaired]
        if unpaired and not (skip_unpaired or keep_unpaired):
            raise DatasetError(
                self.root,
                f"{len(unpaired)} file stem(s) are not present in every modality, e.g. {self.skipped[0]}",
                "add the missing files, or set data.skip_bad=true to leave them out",
            )
        if not common and not keep_unpaired:
            raise DatasetError(self.root, "no file stem is present in every modality folder", "check the names")
        self.stems = sorted(set.union(*stems) if keep_unpaired else common)
        self.files = files
        self._shapes: dict[str, tuple[int, ...]] = {}

    @property
    def stats(self) -> dict[str, tuple[list[float], list[float]]] | None:
        """Cached band statistics (``decur data stats``), or ``None`` when not computed yet."""
        path = self.root / STATS_FILE
        if not path.is_file():
            return None
        cached = json.loads(path.read_text())
        if set(cached) >= set(self.folders):
            return {m: (cached[m]["mean"], cached[m]["std"]) for m in self.folders}
        return None

    def __len__(self) -> int:
        return len(self.stems)

    def locate(self, index: int) -> tuple[str, Path]:
        """Sample ``index``'s id (its file stem) and its first modality's file (the footprint; ``decur embed``)."""
        stem = self.stems[index]
        return stem, next(self.files[m][stem] for m in self.folders if stem in self.files[m])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        stem = self.stems[index]
        out = {}
        for m in self.folders:
            if stem not in self.files[m]:  # kept unpaired: this modality is absent from the sample
                continue
            path = self.files[m][stem]
            x = read_image(path) * self.scale[m]
            expected = self._shapes.setdefault(m, tuple(x.shape))
            if tuple(x.shape) != expected:
                raise DatasetError(
                    path,
                    f"has shape {tuple(x.shape)} (bands x H x W), other {m!r} files have {expected}",
                    "give every file of a modality the same band count and size",
                )
            out[m] = x
        return out


def compute_stats(dataset: PairedFolders) -> dict[str, dict[str, list[float]]]:
    """Per-band mean and std of every modality over the whole dataset; written to ``root/.decur-stats.json``."""
    sums: dict[str, Tensor] = {}
    squares: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    for i in range(len(dataset)):
        for m, x in dataset[i].items():
            flat = x.double().flatten(1)
            sums[m] = sums.get(m, 0) + flat.sum(1)
            squares[m] = squares.get(m, 0) + flat.pow(2).sum(1)
            counts[m] = counts.get(m, 0) + flat.shape[1]
    stats = {}
    for m in sums:
        mean = sums[m] / counts[m]
        std = (squares[m] / counts[m] - mean.pow(2)).clamp_min(1e-12).sqrt()
        stats[m] = {"mean": mean.tolist(), "std": std.tolist()}
    (dataset.root / STATS_FILE).write_text(json.dumps(stats, indent=2))
    return stats


def pretrain_dataset(cfg: Any, **_: Any) -> PairedFolders:
    """The pairs of ``cfg`` (a ``PretrainConfig``): one folder per modality (``folder`` or its name)."""
    d = cfg.data
    return PairedFolders(
        str(d.root),
        {m.name: m.folder or m.name for m in d.modalities},
        {m.name: m.scale for m in d.modalities},
        skip_unpaired=d.skip_bad,
    )
