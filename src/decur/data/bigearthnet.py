"""BigEarthNet-MM v1.0: co-registered Sentinel-1 / Sentinel-2 patches with 19-class multi-labels.

Layout of the official download (Sumbul et al., IEEE GRSM 2021)::

    root/BigEarthNet-v1.0/<S2 patch>/<S2 patch>_B01.tif ... _B12.tif, _B8A.tif, <S2 patch>_labels_metadata.json
    root/BigEarthNet-S1-v1.0/<S1 patch>/<S1 patch>_VV.tif, _VH.tif, <S1 patch>_labels_metadata.json
    root/{train,val,test}.csv          one S2 patch name per line (19-class splits), optionally .csv.bz2
    root/bigearthnet-{split}.csv       alternatively torchgeo's lists, "s2,s1" per line

The S1 metadata's ``corresponding_s2_patch`` pairs the modalities (scanned once and cached in
``root/.decur-bigearthnet-s1.json`` when the folder is writable; the cache records the S1 folder's entry count,
modification time, inode and a hash of its entry names, and is rebuilt when any changed, e.g. after more patches were
extracted or the tree was replaced by another of the same size). Samples:

- ``s1``: 2 x 120 x 120 dB, VV then VH (sorting the file names would put VH first), 2 % outliers cut per image;
- ``s2``: the 12 L2A bands in the order B01..B09, B11, B12 with B8A after B08 (Sentinel-2's band order), resampled
  bilinearly to 120 x 120, compressed to 8 bit and divided by 255 like SSL4EO-S12 pretraining data; with
  ``insert_b10=True`` an empty B10 is inserted so 13-band L1C encoders fit (the paper's choice);
- ``label``: 19-dim multi-hot via the official 43 → 19 class mapping.

Why not ``torchgeo.datasets.BigEarthNet``: it returns one stacked image without the paper's per-modality
preprocessing, B10 insertion or the SSL4EO-S12 normalisation the pretrained encoders expect.
"""

from __future__ import annotations

import bz2
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from decur.config import ConfigError
from decur.data.errors import DatasetError, read_band
from decur.data.preprocess import cut_outliers, s2_to_unit
from decur.data.ssl4eo_s12 import STATS

LABELS_43 = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)
"""The 43 CORINE level-3 labels as spelled in the v1.0 metadata."""

LABELS_19: dict[str, tuple[int, ...]] = {
    "Urban fabric": (0, 1),
    "Industrial or commercial units": (2,),
    "Arable land": (11, 12, 13),
    "Permanent crops": (14, 15, 16, 18),
    "Pastures": (17,),
    "Complex cultivation patterns": (19,),
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (20,),
    "Agro-forestry areas": (21,),
    "Broad-leaved forest": (22,),
    "Coniferous forest": (23,),
    "Mixed forest": (24,),
    "Natural grassland and sparsely vegetated areas": (25, 31),
    "Moors, heathland and sclerophyllous vegetation": (26, 27),
    "Transitional woodland, shrub": (28,),
    "Beaches, dunes, sands": (29,),
    "Inland wetlands": (33, 34),
    "Coastal wetlands": (35, 36),
    "Inland waters": (38, 39),
    "Marine waters": (40, 41, 42),
}
"""The 19-class nomenclature (Sumbul et al. 2020, the release's ``label_indices.json``): new class → indices into
``LABELS_43``. Eleven labels have no 19-class label: roads and rail, ports, airports, mineral extraction, dumps,
construction, green urban areas, sport and leisure, bare rock, burnt areas and intertidal flats ("Coastal wetlands"
is salt marshes and salines only)."""

_TO_19 = {LABELS_43[i]: k for k, members in enumerate(LABELS_19.values()) for i in members}
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_SIDE = {"B01": 20, "B09": 20, "B05": 60, "B06": 60, "B07": 60, "B8A": 60, "B11": 60, "B12": 60}


def labels_to_19(names: Iterable[str], where: Path) -> Tensor:
    """19-dim multi-hot from v1.0 label names; raises naming the file on an unknown label."""
    target = torch.zeros(len(LABELS_19))
    for name in names:
        if name not in LABELS_43:
            raise DatasetError(where, f"unknown label {name!r}", "labels must be the 43 BigEarthNet v1.0 names")
        if name in _TO_19:
            target[_TO_19[name]] = 1
    return target


def read_list(path: Path) -> list[str]:
    """Lines of a (possibly bz2-compressed) list file, first column only."""
    raw = bz2.decompress(path.read_bytes()).decode() if path.suffix == ".bz2" else path.read_text()
    return [line.split(",")[0].strip() for line in raw.splitlines() if line.strip()]


def read_s1_patch(folder: Path, raw: bool = False) -> Tensor:
    """``2 x 120 x 120`` dB, VV then VH, outliers cut (``raw``: as stored), from ``<name>/<name>_{VV,VH}.tif``."""
    bands = torch.from_numpy(
        np.stack([read_band(folder / f"{folder.name}_{b}.tif", (120, 120), np.float32) for b in ("VV", "VH")])
    )
    return bands if raw else cut_outliers(bands)


def read_s2_patch(folder: Path, insert_b10: bool, raw: bool = False) -> Tensor:
    """``12 (13) x 120 x 120`` in [0, 1] (``raw``: DN) from ``<name>/<name>_B*.tif``.

    20/60 m bands are resampled bilinearly; B10 (absent from L2A) is inserted as zeros when ``insert_b10``.
    """
    bands = []
    for b in S2_BANDS:
        side = S2_SIDE.get(b, 120)
        band = torch.from_numpy(
            read_band(folder / f"{folder.name}_{b}.tif", (side, side), np.uint16).astype(np.float32)
        )
        if side != 120:
            band = F.interpolate(band[None, None], size=(120, 120), mode="bilinear")[0, 0]
        bands.append(band)
        if b == "B09" and insert_b10:
            bands.append(torch.zeros(120, 120))
    return torch.stack(bands) if raw else s2_to_unit(torch.stack(bands))


def sentinel_stats(insert_b10: bool) -> dict[str, tuple[list[float], list[float]]]:
    """Band statistics of the pretraining data (SSL4EO-S12), which transferred encoders were normalised with."""
    mean, std = STATS["s2c"]
    if not insert_b10:
        mean, std = mean[:10] + mean[11:], std[:10] + std[11:]
    return {"s1": STATS["s1"], "s2": (mean, std)}


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """The modalities a BigEarthNet reader returns: a non-empty subset of s1, s2."""
    if not modalities or not set(modalities) <= {"s1", "s2"}:
        raise ValueError(f"modalities must be among ('s1', 's2'), got {list(modalities)}")
    return tuple(modalities)


def read_pair(
    modalities: Sequence[str], s1_folder: Path, s2_folder: Path, insert_b10: bool, raw: bool = False
) -> dict[str, Tensor]:
    """The patches of ``modalities`` (``s1``, ``s2``) of one BigEarthNet sample; the others are not read."""
    out = {}
    if "s1" in modalities:
        out["s1"] = read_s1_patch(s1_folder, raw)
    if "s2" in modalities:
        out["s2"] = read_s2_patch(s2_folder, insert_b10, raw)
    return out


class BigEarthNetMM(Dataset[dict[str, Tensor]]):
    """BigEarthNet-MM v1.0 patches: ``s1``, ``s2`` and the 19-class ``label``.

    Args:
        root: Folder with the S2 and S1 folders and the split lists.
        split: ``train``, ``val`` or ``test``.
        s2_dir: Name of the S2 folder (the release's, or e.g. ``BigEarthNet-S2-Example``).
        s1_dir: Name of the S1 folder.
        insert_b10: Insert an all-zero B10 after B09 (13 bands, the paper's choice).
        lists: Folder holding the split lists (default: ``root``).
        exclude: Files listing S2 patch names to leave out (seasonal snow, cloud and shadow, no 19-class label).
        modalities: The modalities to read.
        raw: Return the stored values (S2 DN, S1 dB) instead of decur's (8 bit / 255, outliers cut), for an
            input transform applied afterwards (``decur.data.transforms``).

    Raises:
        DatasetError: Missing folders or split list, unpaired patches, bad files or labels.

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        s2_dir: str = "BigEarthNet-v1.0",
        s1_dir: str = "BigEarthNet-S1-v1.0",
        insert_b10: bool = True,
        exclude: Sequence[str | Path] = (),
        lists: str | Path | None = None,
        modalities: Sequence[str] = ("s1", "s2"),
        raw: bool = False,
    ) -> None:
        self.root = Path(root)
        self.modalities = check_modalities(modalities)
        self.lists = Path(lists) if lists is not None else self.root
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.s2_root, self.s1_root = self.root / s2_dir, self.root / s1_dir
        for folder in (self.s2_root, self.s1_root):
            if not folder.is_dir():
                raise DatasetError(
                    folder,
                    "folder is missing",
                    "extract the BigEarthNet-MM v1.0 archives under root, or give a v2.0 tree (metadata.parquet) "
                    "or a `decur data pack` store",
                )
        self.insert_b10, self.raw = insert_b10, raw
        names, s1_of = self._split(split)
        excluded: set[str] = set()
        for path in exclude:
            if not Path(path).is_file():
                raise DatasetError(path, "exclusion list is missing", "give existing files or none")
            excluded |= set(read_list(Path(path)))
        self.patches = [n for n in names if n not in excluded]
        if not self.patches:
            raise DatasetError(self.root, f"the {split} split is empty after exclusions", "check the split list")
        if s1_of is None:
            s1_of = self._scan_s1()
        missing = [p for p in self.patches if p not in s1_of]
        if missing:
            raise DatasetError(
                self.s1_root,
                f"{len(missing)} S2 patch(es) of the {split} split have no S1 patch, e.g. {missing[0]}",
                "extract BigEarthNet-S1-v1.0 completely",
            )
        self.s1_of = s1_of

    @property
    def stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Band statistics of the pretraining data (SSL4EO-S12), which the encoders were normalised with."""
        return sentinel_stats(self.insert_b10)

    @property
    def classes(self) -> list[str]:
        """The 19 class names, in label order."""
        return list(LABELS_19)

    def __len__(self) -> int:
        return len(self.patches)

    def locate(self, index: int) -> tuple[str, Path]:
        """Sample ``index``'s id (its S2 patch name) and its georeferenced S2 B02 file (``decur embed``)."""
        name = self.patches[index]
        return name, self.s2_root / name / f"{name}_B02.tif"

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        s2_name = self.patches[index]
        s2_folder, s1_folder = self.s2_root / s2_name, self.s1_root / self.s1_of[s2_name]
        meta_path = s2_folder / f"{s2_name}_labels_metadata.json"
        if not meta_path.is_file():
            raise DatasetError(meta_path, "labels metadata is missing", "restore the patch folder")
        try:
            labels = json.loads(meta_path.read_text())["labels"]
        except (json.JSONDecodeError, KeyError) as err:
            raise DatasetError(meta_path, f"is not a valid labels file ({err})", "restore it") from None
        return {
            **read_pair(self.modalities, s1_folder, s2_folder, self.insert_b10, self.raw),
            "label": labels_to_19(labels, meta_path),
        }

    def _split(self, split: str) -> tuple[list[str], dict[str, str] | None]:
        torchgeo_list = self.lists / f"bigearthnet-{split}.csv"
        if torchgeo_list.is_file():
            rows = [line.split(",") for line in torchgeo_list.read_text().splitlines() if line.strip()]
            return [r[0].strip() for r in rows], {r[0].strip(): r[1].strip() for r in rows}
        for name in (f"{split}.csv", f"{split}.csv.bz2"):
            if (self.lists / name).is_file():
                return read_list(self.lists / name), None
        raise DatasetError(
            self.lists / f"{split}.csv",
            "split list is missing",
            f"put the official {split}.csv (or torchgeo's bigearthnet-{split}.csv) in root",
        )

    def _scan_s1(self) -> dict[str, str]:
        cache = self.root / ".decur-bigearthnet-s1.json"
        stamp = self.s1_root.stat()
        names = sorted(p.name for p in self.s1_root.iterdir())
        state = {  # a tree replaced by one of the same size (copied with its times kept) differs in inode or names
            "entries": len(names),
            "mtime_ns": stamp.st_mtime_ns,
            "inode": stamp.st_ino,
            "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        }
        if cache.is_file():
            try:
                saved = json.loads(cache.read_text())
            except (OSError, ValueError):
                saved = {}
            if isinstance(saved, dict) and saved.get("folder") == state and isinstance(saved.get("pairs"), dict):
                return dict(saved["pairs"])
        pairs = {}
        for folder in sorted(p for p in self.s1_root.iterdir() if p.is_dir()):
            meta = folder / f"{folder.name}_labels_metadata.json"
            if not meta.is_file():
                raise DatasetError(meta, "S1 metadata is missing", "restore the patch folder")
            try:
                pairs[json.loads(meta.read_text())["corresponding_s2_patch"]] = folder.name
            except (json.JSONDecodeError, KeyError) as err:
                raise DatasetError(meta, f"has no corresponding_s2_patch ({err})", "restore the file") from None
        try:
            cache.write_text(json.dumps({"folder": state, "pairs": pairs}))
        except OSError:
            pass  # a read-only dataset folder: scan again next time
        return pairs


def is_bigearthnet_v2(root: str | Path) -> bool:
    """True when ``root`` is a BigEarthNet v2.0 release tree (``metadata.parquet`` and ``BigEarthNet-S2/``)."""
    return (Path(root) / "metadata.parquet").is_file() and (Path(root) / "BigEarthNet-S2").is_dir()


class BigEarthNetV2(Dataset[dict[str, Tensor]]):
    """BigEarthNet v2.0 (reBEN, Clasen et al. 2024) in its release layout, same samples as ``BigEarthNetMM``.

    Layout::

        root/BigEarthNet-S2/<S2 product>/<patch>/<patch>_B01.tif ...     (product = patch without its _row_col)
        root/BigEarthNet-S1/<S1 product>/<s1 patch>/<s1 patch>_VV.tif ... (product = first 5 name parts)
        root/metadata.parquet   patch_id, labels (19-class names), split, s1_name, contains_seasonal_snow,
                                contains_cloud_or_shadow, ...

    Args:
        root: Release folder.
        split: ``train``, ``validation`` (or ``val``) or ``test``.
        insert_b10: Insert an all-zero B10 (13 bands, the paper's choice).
        exclude_snow: Leave out patches flagged ``contains_seasonal_snow``.
        exclude_clouds: Leave out patches flagged ``contains_cloud_or_shadow``.
        modalities: The modalities to read.
        raw: Stored values (S2 DN, S1 dB), as ``BigEarthNetMM``.

    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        insert_b10: bool = True,
        exclude_snow: bool = True,
        exclude_clouds: bool = True,
        modalities: Sequence[str] = ("s1", "s2"),
        raw: bool = False,
    ) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        self.modalities = check_modalities(modalities)
        split = "validation" if split == "val" else split
        if split not in ("train", "validation", "test"):
            raise ValueError(f"split must be train, validation or test, got {split!r}")
        meta_path = self.root / "metadata.parquet"
        if not meta_path.is_file():
            raise DatasetError(meta_path, "is missing", "download metadata.parquet of the v2.0 release into root")
        rows = pq.read_table(meta_path).to_pylist()
        required = {"patch_id", "labels", "split", "s1_name"}
        if rows and not required <= set(rows[0]):
            raise DatasetError(meta_path, f"lacks columns {sorted(required - set(rows[0]))}", "use the release file")
        self.rows = [
            r
            for r in rows
            if r["split"] == split
            and not (exclude_snow and r.get("contains_seasonal_snow"))
            and not (exclude_clouds and r.get("contains_cloud_or_shadow"))
        ]
        if not self.rows:
            raise DatasetError(meta_path, f"holds no {split} patches after exclusions", "check the split name")
        self.insert_b10, self.raw = insert_b10, raw

    @property
    def stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Band statistics of the pretraining data (SSL4EO-S12)."""
        return sentinel_stats(self.insert_b10)

    def __len__(self) -> int:
        return len(self.rows)

    def locate(self, index: int) -> tuple[str, Path]:
        """Sample ``index``'s id (its S2 ``patch_id``) and its georeferenced S2 B02 file (``decur embed``)."""
        s2 = self.rows[index]["patch_id"]
        return s2, self.root / "BigEarthNet-S2" / s2.rsplit("_", 2)[0] / s2 / f"{s2}_B02.tif"

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        row = self.rows[index]
        s2, s1 = row["patch_id"], row["s1_name"]
        s2_folder = self.root / "BigEarthNet-S2" / s2.rsplit("_", 2)[0] / s2
        s1_folder = self.root / "BigEarthNet-S1" / "_".join(s1.split("_")[:5]) / s1
        target = torch.zeros(len(LABELS_19))
        for name in row["labels"]:
            if name not in LABELS_19:
                raise DatasetError(self.root / "metadata.parquet", f"unknown 19-class label {name!r} ({s2})", "fix it")
            target[list(LABELS_19).index(name)] = 1
        return {**read_pair(self.modalities, s1_folder, s2_folder, self.insert_b10, self.raw), "label": target}


def transfer_dataset(run: Any, role: str, modalities: list[str]) -> Dataset[dict[str, Tensor]]:
    """The ``role`` (train/test) split of a transfer run: a packed store, the v2.0 (reBEN) tree or the v1 tree.

    Raw trees give stored values (S2 DN, S1 dB) unless the task is retrieval (decur's units); 12-band (L2A)
    encoders (``s2_bands: 12``) read the stored bands without the empty B10.

    Raises:
        ConfigError: A packed store of another S2 band count than the run needs.

    """
    from decur.data.pack_bigearthnet import PackedBigEarthNet, is_packed_bigearthnet  # (it builds on this module)

    root, split = str(run.root), run.train_split if role == "train" else run.test_split
    b10 = (run.s2_bands or 13) == 13
    if is_packed_bigearthnet(root):  # `decur data pack --dataset bigearthnet[_v2]`
        packed = PackedBigEarthNet(root, split, modalities)
        if "s2" in modalities and packed.insert_b10 != b10:
            raise ConfigError(
                f"transfer config field `s2_bands`: the packed store {root} holds {13 if packed.insert_b10 else 12} "
                f"S2 bands, the run needs {12 + b10}: give the raw tree as root, or pack it again to match"
            )
        return packed
    reader = BigEarthNetV2 if is_bigearthnet_v2(root) else BigEarthNetMM
    return reader(root, split, modalities=modalities, raw=run.task != "retrieval", insert_b10=b10)


def check_dataset(root: Path, split: str, options: dict[str, Any]) -> BigEarthNetMM:
    """Every patch of ``split`` of the v1 tree, for ``decur data check``."""
    return BigEarthNetMM(root, split)


def check_dataset_v2(root: Path, split: str, options: dict[str, Any]) -> BigEarthNetV2:
    """Every patch of ``split`` of the v2.0 (reBEN) tree, for ``decur data check``."""
    return BigEarthNetV2(root, split)
