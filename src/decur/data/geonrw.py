"""GeoNRW (Baier et al., IEEE TGRS 2021): aerial RGB + elevation + land-cover masks of North Rhine-Westphalia.

Layout of the release::

    root/<city>/<E>_<N>_rgb.jp2    3 x 1000 x 1000 uint8 orthophoto, 1 m
    root/<city>/<E>_<N>_dem.tif    1 x 1000 x 1000 elevation (m)
    root/<city>/<E>_<N>_seg.tif    1 x 1000 x 1000 classes 1-10, 0 = unlabelled (ignored)

The official split is by city (``TRAIN_CITIES``, ``TEST_CITIES``). As in the paper, tiles are cut into
``patch_size`` patches (250 px → 16 per tile) read with windowed reads, so a patch never decodes its whole tile.

Samples: ``rgb`` in [0, 1]; ``dem`` as height relative to the patch's mean elevation in metres (absolute terrain
height varies by ~850 m across the state and says little about land cover; the band statistics then standardise
it), duplicated to 3 channels by default (the paper's choice, ``dem_channels=1`` keeps one); ``mask`` int64 with
0 = ignore.

Why not ``torchgeo.datasets.GeoNRW``: it returns whole 1000 px tiles, decodes full JPEG2000 tiles per sample and
leaves the DEM unnormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from decur.data.errors import DatasetError

TRAIN_CITIES = (
    "aachen",
    "bergisch",
    "bielefeld",
    "bochum",
    "bonn",
    "borken",
    "bottrop",
    "coesfeld",
    "dortmund",
    "dueren",
    "duisburg",
    "ennepetal",
    "erftstadt",
    "essen",
    "euskirchen",
    "gelsenkirchen",
    "guetersloh",
    "hagen",
    "hamm",
    "heinsberg",
    "herford",
    "hoexter",
    "kleve",
    "koeln",
    "krefeld",
    "leverkusen",
    "lippetal",
    "lippstadt",
    "lotte",
    "moenchengladbach",
    "moers",
    "muelheim",
    "muenster",
    "oberhausen",
    "paderborn",
    "recklinghausen",
    "remscheid",
    "siegen",
    "solingen",
    "wuppertal",
)
TEST_CITIES = ("duesseldorf", "herne", "neuss")
CLASSES = (
    "unlabelled",
    "forest",
    "water",
    "agricultural",
    "residential, commercial, industrial",
    "grassland, swamp, shrubbery",
    "railway, train station",
    "highway, squares",
    "airport, shipyard",
    "roads",
    "buildings",
)
IGNORE_INDEX = 0


class GeoNRW(Dataset[dict[str, Tensor]]):
    """GeoNRW patches: ``rgb``, ``dem`` and ``mask``.

    Args:
        root: Folder with one sub-folder per city.
        split: ``train`` or ``test`` (the official city split).
        patch_size: Side of the patches cut from each tile (``None``: whole tiles).
        dem_channels: 3 duplicates the DEM like the paper, 1 keeps one channel.
        cities: Override the split's city list (e.g. a subset).

    Raises:
        DatasetError: Missing cities or files, wrong sizes.

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        patch_size: int | None = 250,
        dem_channels: int = 3,
        cities: tuple[str, ...] | None = None,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {split!r}")
        if dem_channels not in (1, 3):
            raise ValueError(f"dem_channels must be 1 or 3, got {dem_channels}")
        self.dem_channels = dem_channels
        self.modalities = ("rgb", "dem") if modalities is None else tuple(modalities)
        if not self.modalities or not set(self.modalities) <= {"rgb", "dem"}:
            raise ValueError(f"modalities must be among ('rgb', 'dem'), got {list(self.modalities)}")
        wanted = cities if cities is not None else (TRAIN_CITIES if split == "train" else TEST_CITIES)
        missing = [c for c in wanted if not (self.root / c).is_dir()]
        if missing:
            raise DatasetError(
                self.root / missing[0],
                f"{len(missing)} city folder(s) of the {split} split are missing ({', '.join(missing[:5])})",
                "extract the GeoNRW release under root, or name a subset (transfer: train_cities / test_cities; "
                "pretraining: data.cities)",
            )
        self.tiles: list[Path] = []
        for city in wanted:
            for rgb in sorted((self.root / city).glob("*_rgb.jp2")):
                stem = rgb.name.removesuffix("_rgb.jp2")
                for kind in ("dem.tif", "seg.tif"):
                    if not (rgb.parent / f"{stem}_{kind}").is_file():
                        raise DatasetError(rgb.parent / f"{stem}_{kind}", "is missing", "restore the tile's files")
                self.tiles.append(rgb.parent / stem)
        if not self.tiles:
            raise DatasetError(self.root, f"no *_rgb.jp2 tiles in the {split} cities", "check root")
        import rasterio

        with rasterio.open(f"{self.tiles[0]}_rgb.jp2") as src:
            self.tile_size = int(src.height)  # 1000 in the release
        self.patch = patch_size or self.tile_size
        if self.patch > self.tile_size or self.tile_size % self.patch:
            raise DatasetError(
                f"{self.tiles[0]}_rgb.jp2",
                f"tiles are {self.tile_size} px, which patch_size {self.patch} does not divide",
                f"set the patch size (data.image_size) to a divisor of {self.tile_size} (the release's 1000 px "
                "tiles: 250, 500 or 1000)",
            )
        self.per_tile = (self.tile_size // self.patch) ** 2

    def __len__(self) -> int:
        return len(self.tiles) * self.per_tile

    def locate(self, index: int) -> tuple[str, Path | None]:
        """Sample ``index``'s id (``<city>/<tile>/<patch>``) and, for whole tiles, the tile's RGB file.

        A patch smaller than the tile gets no file: its footprint would be the tile's, not its own.
        """
        tile, k = divmod(index, self.per_tile)
        base = self.tiles[tile]
        name = f"{base.parent.name}/{base.name}" + (f"/{k}" if self.per_tile > 1 else "")
        return name, Path(f"{base}_rgb.jp2") if self.per_tile == 1 else None

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        tile, k = divmod(index, self.per_tile)
        per_row = self.tile_size // self.patch
        row, col = divmod(k, per_row)
        base = self.tiles[tile]
        window = (row * self.patch, col * self.patch)
        sample = {}
        if "rgb" in self.modalities:
            sample["rgb"] = torch.from_numpy(self._read(Path(f"{base}_rgb.jp2"), window, 3).astype(np.float32) / 255)
        if "dem" in self.modalities:
            dem = torch.from_numpy(self._read(Path(f"{base}_dem.tif"), window, 1).astype(np.float32))
            if not torch.isfinite(dem).all():
                raise DatasetError(f"{base}_dem.tif", "holds NaN/Inf elevations", "fill the DEM's no-data pixels")
            sample["dem"] = (dem - dem.mean()).expand(self.dem_channels, -1, -1).clone()
        mask = torch.from_numpy(self._read(Path(f"{base}_seg.tif"), window, 1)[0].astype(np.int64))
        if int(mask.max()) >= len(CLASSES) or int(mask.min()) < 0:
            raise DatasetError(f"{base}_seg.tif", f"holds class {int(mask.max())}, expected 0-10", "check the mask")
        return {**sample, "mask": mask}

    def _read(self, path: Path, offset: tuple[int, int], bands: int) -> np.ndarray:
        import rasterio
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        try:
            with rasterio.open(path) as src:
                if (src.height, src.width) != (self.tile_size, self.tile_size) or src.count != bands:
                    raise DatasetError(
                        path,
                        f"is {src.count} x {src.height} x {src.width}, expected {bands} x {self.tile_size} x "
                        f"{self.tile_size}",
                        "all tiles must have the size of the first one",
                    )
                return src.read(window=Window(offset[1], offset[0], self.patch, self.patch))
        except RasterioError as err:
            raise DatasetError(path, f"cannot be read ({err})", "re-download the tile") from None


def pretrain_dataset(cfg: Any, **_: Any) -> GeoNRW:
    """The pretraining patches of ``cfg`` (a ``PretrainConfig``): the train cities (or ``data.cities``)."""
    d = cfg.data
    dem = next((m.bands for m in d.modalities if m.name == "dem"), 3)
    cities = tuple(d.cities) if d.cities is not None else None
    names = [m.name for m in d.modalities]
    return GeoNRW(str(d.root), "train", patch_size=d.image_size, dem_channels=dem, cities=cities, modalities=names)


def transfer_dataset(run: Any, role: str, modalities: list[str]) -> GeoNRW:
    """The ``role`` (train/test) patches of a transfer run: the official city split or ``train_``/``test_cities``."""
    cities = run.train_cities if role == "train" else run.test_cities
    return GeoNRW(str(run.root), role, cities=tuple(cities) if cities is not None else None, modalities=modalities)


def check_dataset(root: Path, split: str, options: dict[str, Any]) -> GeoNRW:
    """Whole tiles of ``split`` for ``decur data check``: every pixel read once."""
    return GeoNRW(root, split, patch_size=None)
