"""SSL4EO-S12 in its raw release layout: paired Sentinel-1 / Sentinel-2 tiles, four seasons per location.

Layout (Wang et al. 2022, arXiv:2211.07044)::

    root/s1/<7-digit id>/<season folder>/{VV,VH}.tif         float32 backscatter in dB, 264 x 264
    root/s2c/<7-digit id>/<season folder>/B1.tif ... B12.tif  uint16 L1C reflectance x 10000, 13 bands
    root/s2a/<7-digit id>/<season folder>/B1.tif ... B12.tif  uint16 L2A reflectance x 10000, 12 bands (no B10)

S2 bands come at their native resolution (10 m bands 264 px, 20 m 132 px, 60 m 44 px) and are resampled
bilinearly to the 10 m grid.

Season pairing (``pair_by_date``): season folders carry different names and dates in ``s1`` and ``s2*`` for the
same location. S2 folders start with the acquisition time (``20200604T054639_20200604T054831_T43RCP``), S1 folders
with the satellite (``S1A_IW_GRDH_1SDV_20200607T010800_…``, ``S1B_…``), so sorting the names does not sort them in
time wherever a location mixes S1A and S1B scenes. decur parses the first ``YYYYMMDDTHHMMSS`` of every folder name,
orders each modality's seasons by that date and pairs them in that order (with unequal counts: the order-preserving
pairing with the smallest total date difference; the extra seasons are unused). A folder name without such a date
raises ``DatasetError`` naming the folder (``decur data check`` lists every such folder at once).

Sampling as the paper: every sample returns ``views`` seasons per modality (one per augmented view), stacked as
``V x C x H x W``. With ``pair_seasons=True`` (default) the S1 and S2 tensors of view *v* come from the same season;
``pair_seasons=False`` draws each modality's seasons independently, as the reference code does. Seasons are drawn
with the global torch RNG of the loading process, which decur seeds per (seed, epoch, rank, worker).

Preprocessing as the paper: S2 is compressed to 8 bit by ``x / 10000 · 255`` (rounded and clipped to [0, 255], no
wrap-around) and returned divided by 255, i.e. in [0, 1]; S1 is clipped per image and band to its 2nd-98th
percentile range (the "2 % outliers cut"), in dB. Band-wise standardisation uses the dataset statistics in
``STATS`` (from the SSL4EO-S12 repository, computed on 50k samples) and happens in the view pipelines.

Why not ``torchgeo.datasets.SSL4EOS12``: it returns one product at a time and cannot pair S1 and S2 seasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from decur.data.errors import DatasetError, read_band
from decur.data.preprocess import cut_outliers, s2_to_unit

S1_BANDS = ("VV", "VH")
S2C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2A_BANDS = tuple(b for b in S2C_BANDS if b != "B10")
# Native ground sampling distance per band (m); a band's raster side is tile_size * 10 / gsd.
GSD = {"B1": 60, "B9": 60, "B10": 60, "B5": 20, "B6": 20, "B7": 20, "B8A": 20, "B11": 20, "B12": 20}

_S1_MEAN, _S1_STD = [-12.54847273, -20.19237134], [5.25697717, 5.91150917]
_S2C_MEAN = [
    1605.57504906,
    1390.78157673,
    1314.8729939,
    1363.52445545,
    1549.44374991,
    2091.74883118,
    2371.7172463,
    2299.90463006,
    2560.29504086,
    830.06605044,
    22.10351321,
    2177.07172323,
    1524.06546312,
]
_S2C_STD = [
    786.78685367,
    850.34818441,
    875.06484736,
    1138.84957046,
    1122.17775652,
    1161.59187054,
    1274.39184232,
    1248.42891965,
    1345.52684884,
    577.31607053,
    51.15431158,
    1336.09932639,
    1136.53823676,
]
S2C_DN_STATS = (_S2C_MEAN, _S2C_STD)
"""Per-band mean/std of Sentinel-2 L1C digital numbers (the release's ``S2C_MEAN`` / ``S2C_STD``)."""
STATS: dict[str, tuple[list[float], list[float]]] = {
    "s1": (_S1_MEAN, _S1_STD),
    # S2 statistics in the units returned here (reflectance x 10000 -> /10000); L2A reuses L1C's without B10.
    "s2c": ([m / 10000 for m in _S2C_MEAN], [s / 10000 for s in _S2C_STD]),
    "s2a": (
        [m / 10000 for b, m in zip(S2C_BANDS, _S2C_MEAN, strict=True) if b != "B10"],
        [s / 10000 for b, s in zip(S2C_BANDS, _S2C_STD, strict=True) if b != "B10"],
    ),
}
"""Per-band mean/std of the returned values (SSL4EO-S12 repository, ``ssl4eo_dataset.py``, 50k samples)."""

PAIRING = "acquisition-date"
"""The season pairing rule of this reader (recorded in packed stores; older stores paired by sorted folder name)."""
_DATE = re.compile(r"(\d{8}T\d{6})")


def acquisition_date(folder: Path) -> datetime:
    """The acquisition time in a season folder's name: its first ``YYYYMMDDTHHMMSS``.

    Raises:
        DatasetError: The name carries no such date (the release's S1 and S2 names always do).

    """
    found = _DATE.search(folder.name)
    try:
        if found is None:
            raise ValueError(folder.name)
        return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S")
    except ValueError:
        raise DatasetError(
            folder,
            "season folder name carries no acquisition date YYYYMMDDTHHMMSS, so it cannot be paired by date",
            "keep the release's names (S2 '20200604T054639_…', S1 'S1A_IW_GRDH_1SDV_20200607T010800_…')",
        ) from None


def pair_by_date(first: list[Path], second: list[Path]) -> list[tuple[Path, Path]]:
    """Pair two modalities' season folders of one location in order of acquisition date.

    Each list is ordered by ``acquisition_date``; equal counts pair in that order. With unequal counts, the
    longer list keeps the order-preserving subset whose total date difference to the shorter one is smallest (the
    earliest such subset on ties), found by dynamic programming in ``O(len(first) · len(second))`` steps: a
    location with hundreds of season folders pairs in milliseconds.

    Raises:
        DatasetError: A folder name carries no date.

    """
    a = sorted((acquisition_date(f), f) for f in first)
    b = sorted((acquisition_date(f), f) for f in second)
    swap = len(a) > len(b)
    short, long = (b, a) if swap else (a, b)
    best = [long[j][1] for j in _closest_subsequence([d for d, _ in short], [d for d, _ in long])]
    short_folders = [f for _, f in short]
    return [(y, x) if swap else (x, y) for x, y in zip(short_folders, best, strict=True)]


def _closest_subsequence(short: list[datetime], long: list[datetime]) -> list[int]:
    """Indices ``j_0 < j_1 < ...`` into ``long`` minimising ``Σ |short[i] − long[j_i]|``, the earliest on ties."""
    k, n = len(short), len(long)
    inf = float("inf")
    # rest[i][j]: the least cost of pairing short[i:] with a subsequence of long[j:]
    rest = [[inf] * (n + 1) for _ in range(k + 1)]
    rest[k] = [0.0] * (n + 1)
    for i in range(k - 1, -1, -1):
        for j in range(n - (k - i), -1, -1):
            take = abs((short[i] - long[j]).total_seconds()) + rest[i + 1][j + 1]
            rest[i][j] = min(take, rest[i][j + 1])
    chosen, j = [], 0
    for i in range(k):
        while abs((short[i] - long[j]).total_seconds()) + rest[i + 1][j + 1] > rest[i][j]:
            j += 1
        chosen.append(j)
        j += 1
    return chosen


class SSL4EOS12(Dataset[dict[str, Tensor]]):
    """Paired S1 GRD / S2 tiles of SSL4EO-S12 with one season per augmented view.

    Args:
        root: Folder holding ``s1/`` and ``s2c/`` (or ``s2a/``).
        s2_product: ``"s2c"`` (L1C, 13 bands) or ``"s2a"`` (L2A, 12 bands).
        size: Tile side in pixels at 10 m (264 in the release).
        views: Seasons drawn per sample and modality.
        pair_seasons: Both modalities of a view share the season (the paper); ``False`` as the reference code.
        void_ids: Location ids to leave out (the release's list of void ids).
        skip_bad: Skip locations whose files are missing or broken, recording each in ``skipped``, instead of
            raising at the first one.
        raw: Return the stored values (S1 dB, S2 DN) instead of decur's units (S1 with its 2 % outliers cut, S2
            in 8-bit steps / 255): for weights trained with another input transform (``decur embed``).

    Raises:
        DatasetError: Missing folders, unpaired locations, bad files; the message names the path and the fix.

    """

    def __init__(
        self,
        root: str | Path,
        s2_product: str = "s2c",
        size: int = 264,
        views: int = 2,
        pair_seasons: bool = True,
        void_ids: Iterable[str] = (),
        skip_bad: bool = False,
        raw: bool = False,
    ) -> None:
        self.root = Path(root)
        self.raw = raw
        if s2_product not in ("s2c", "s2a"):
            raise ValueError(f"s2_product must be 's2c' (L1C) or 's2a' (L2A), got {s2_product!r}")
        self.s2_product, self.size, self.views, self.pair_seasons = s2_product, size, views, pair_seasons
        self.s2_bands = S2C_BANDS if s2_product == "s2c" else S2A_BANDS
        self.skip_bad = skip_bad
        self.skipped: list[str] = []
        folders = {m: self.root / m for m in ("s1", s2_product)}
        for name, folder in folders.items():
            if not folder.is_dir():
                raise DatasetError(folder, f"the {name}/ folder of SSL4EO-S12 is missing", "point root at the release")
        ids = {m: {p.name for p in f.iterdir() if p.is_dir()} for m, f in folders.items()}
        void = {str(v).strip().zfill(7) for v in void_ids}
        unpaired = sorted(ids["s1"] ^ ids[s2_product])
        if unpaired and not skip_bad:
            where = [f"{m}/{i}" for i in unpaired[:5] for m in folders if i in ids[m]]
            raise DatasetError(
                self.root,
                f"{len(unpaired)} location(s) exist in only one modality, e.g. {', '.join(where)}",
                "restore the missing folders, or set data.skip_bad=true to leave them out",
            )
        self.skipped += [f"{i}: unpaired" for i in unpaired]
        self.ids = sorted((ids["s1"] & ids[s2_product]) - void)
        if not self.ids:
            raise DatasetError(self.root, "no paired locations found", "check root and the s2 product folder")

    @property
    def stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Band-wise mean and std per modality of the returned values."""
        return {"s1": STATS["s1"], "s2": STATS[self.s2_product]}

    def __len__(self) -> int:
        return len(self.ids)

    def seasons(self, index: int) -> dict[str, list[Path]]:
        """Season folders of one location per modality, paired by acquisition date (``pair_by_date``).

        Entry *k* of both lists is season pair *k*; unpaired extra seasons are left out.
        """
        loc = self.ids[index]
        found = {}
        for m in ("s1", self.s2_product):
            folder = self.root / m / loc
            found[m] = [p for p in folder.iterdir() if p.is_dir()]
            if not found[m]:
                raise DatasetError(folder, "holds no season folders", "re-extract this location")
        pairs = pair_by_date(found["s1"], found[self.s2_product])
        return {"s1": [a for a, _ in pairs], self.s2_product: [b for _, b in pairs]}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        seasons = self.seasons(index)
        s1_seasons, s2_seasons = seasons["s1"], seasons[self.s2_product]
        common = len(s1_seasons)
        pick_s1 = torch.randint(0, common, (self.views,)).tolist()
        pick_s2 = pick_s1 if self.pair_seasons else torch.randint(0, common, (self.views,)).tolist()
        s1 = torch.stack([self._read_s1(s1_seasons[k]) for k in pick_s1])
        s2 = torch.stack([self._read_s2(s2_seasons[k]) for k in pick_s2])
        return {"s1": s1, "s2": s2}

    def read_season(self, index: int, season: int = 0) -> dict[str, Tensor]:
        """Season pair ``season`` (in date order) of location ``index``, one ``C x H x W`` image per modality."""
        seasons = self.seasons(index)
        k = min(season, len(seasons["s1"]) - 1)
        return {"s1": self._read_s1(seasons["s1"][k]), "s2": self._read_s2(seasons[self.s2_product][k])}

    def locate(self, index: int, season: int = 0) -> tuple[str, Path]:
        """Location ``index``'s id (``<location>/<S2 season folder>``) and that season's S2 B2 file (its footprint)."""
        folders = self.seasons(index)[self.s2_product]
        folder = folders[min(season, len(folders) - 1)]
        return f"{self.ids[index]}/{folder.name}", folder / "B2.tif"

    def _read_s1(self, folder: Path) -> Tensor:
        bands = torch.from_numpy(np.stack([read_band(folder / f"{b}.tif", (self.size, self.size), np.float32)
                                           for b in S1_BANDS]))  # fmt: skip
        return bands if self.raw else cut_outliers(bands)

    def _read_s2(self, folder: Path) -> Tensor:
        out = []
        for b in self.s2_bands:
            side = self.size * 10 // GSD.get(b, 10)
            band = torch.from_numpy(read_band(folder / f"{b}.tif", (side, side), np.uint16).astype(np.float32))
            if side != self.size:
                band = F.interpolate(band[None, None], size=(self.size, self.size), mode="bilinear")[0, 0]
            out.append(band)
        return torch.stack(out) if self.raw else s2_to_unit(torch.stack(out))


def pretrain_dataset(cfg: Any, **_: Any) -> Dataset[dict[str, Tensor]]:
    """The season pairs of ``cfg`` (a ``PretrainConfig``): a ``decur data pack`` store, else the raw tree."""
    d = cfg.data
    if (Path(str(d.root)) / "index.json").is_file():
        from decur.data.pack import PackedSSL4EOS12  # (pack builds on this module)

        return PackedSSL4EOS12(str(d.root), views=2, pair_seasons=d.pair_seasons)
    void = Path(d.void_ids).read_text().split() if d.void_ids else []
    return SSL4EOS12(
        str(d.root), s2_product=d.s2_product, size=d.image_size, views=2, pair_seasons=d.pair_seasons, void_ids=void
    )
