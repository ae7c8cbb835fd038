"""``decur data check``: walk a dataset, read every file, summarise it and name every bad file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decur.data.errors import DatasetError
from decur.data.pack import PackedSSL4EOS12
from decur.data.ssl4eo_s12 import SSL4EOS12, acquisition_date, pair_by_date
from decur.data.ssl4eo_v11 import MODALITIES, open_shards, read_timestamps
from decur.datasets import dataset_spec, datasets, resolve

MAX_PAIR_DAYS = 92
"""Season pairs further apart than this (about one season) are reported by ``decur data check``."""


@dataclass
class CheckReport:
    """What a dataset walk found."""

    dataset: str
    root: Path
    items: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, set[tuple[int, ...]]] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def see(self, modality: str, x: torch.Tensor) -> None:
        """Record one loaded tensor: shape and value range per modality."""
        self.counts[modality] = self.counts.get(modality, 0) + 1
        self.shapes.setdefault(modality, set()).add(tuple(x.shape))
        lo, hi = float(x.min()), float(x.max())
        old = self.ranges.get(modality, (lo, hi))
        self.ranges[modality] = (min(lo, old[0]), max(hi, old[1]))

    def format(self) -> str:
        """Readable summary, then one line per problem."""
        lines = [f"{self.dataset} at {self.root}: {self.items} sample(s)"]
        for m in sorted(self.counts):
            shapes = ", ".join("x".join(map(str, s)) for s in sorted(self.shapes[m]))
            lo, hi = self.ranges[m]
            lines.append(
                f"  {m:<5} {self.counts[m]:>7} images (float32 after preprocessing)  shape {shapes}  "
                f"values [{lo:.4g}, {hi:.4g}]"
            )
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def check_ssl4eo_s12(root: Path, s2_product: str = "s2c", size: int = 264) -> CheckReport:
    """Read every season of every location (both modalities) of an SSL4EO-S12 folder.

    Also names every season folder whose name carries no acquisition date, locations whose modalities have
    different season counts, and date-paired seasons more than ``MAX_PAIR_DAYS`` apart.
    """
    report = CheckReport("ssl4eo_s12", root)
    ds = SSL4EOS12(root, s2_product=s2_product, size=size, skip_bad=True)
    report.problems += [f"{root}/s1|{s2_product}/{s}" for s in ds.skipped]
    readers = {"s1": ds._read_s1, s2_product: ds._read_s2}
    for loc in ds.ids:
        found = {m: sorted(p for p in (root / m / loc).iterdir() if p.is_dir()) for m in readers}
        counts = {m: len(v) for m, v in found.items()}
        if len(set(counts.values())) > 1:
            report.problems.append(f"{root}/*/{loc}: season counts differ {counts}; extra seasons unused")
        undated = []
        for folder in (f for folders in found.values() for f in folders):
            try:
                acquisition_date(folder)
            except DatasetError as err:
                undated.append(folder)
                report.problems.append(str(err))
        if not undated and all(found.values()):
            for a, b in pair_by_date(found["s1"], found[s2_product]):
                days = abs((acquisition_date(a) - acquisition_date(b)).days)
                if days > MAX_PAIR_DAYS:
                    report.problems.append(f"{a} and {b}: paired seasons {days} days apart (> {MAX_PAIR_DAYS})")
        for product, folders in found.items():
            if not folders:
                report.problems.append(f"{root / product / loc}: holds no season folders (fix: re-extract it)")
            modality = "s1" if product == "s1" else "s2"
            for folder in folders:
                try:
                    report.see(modality, readers[product](folder))
                except DatasetError as err:
                    report.problems.append(str(err))
    report.items = len(ds)
    return report


def check_packed_ssl4eo_s12(root: Path) -> CheckReport:
    """A ``decur data pack`` store: its index (format and season pairing rule), then every sample."""
    try:
        store = PackedSSL4EOS12(root)
    except DatasetError as err:
        report = CheckReport("ssl4eo_s12 (packed)", root)
        report.problems.append(str(err))
        return report
    return check_samples(store, "ssl4eo_s12 (packed)", root)


def check_samples(dataset: Any, name: str, root: Path) -> CheckReport:
    """Load every sample of any decur dataset; bad samples become problems naming their file."""
    report = CheckReport(name, root, items=len(dataset))
    for index in range(len(dataset)):
        try:
            sample = dataset[index]
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        for key, value in sample.items():
            report.see(key, value.float())
    return report


def check_ssl4eo_s12_v11(root: Path, quick: bool = False) -> CheckReport:
    """Open and decode every ``.zarr.zip`` of every modality folder present at ``root`` (a split folder).

    Each shard is named when it is missing for a modality, and its first bad file when one is not a readable Zarr
    zip, has no ``bands`` variable or the wrong band count, or holds other sample ids than the shard's first
    modality (``decur.data.ssl4eo_v11.open_shards``, the reader's own check). Then every timestamp chunk of
    ``bands`` (and ``cloud_mask``) is decoded the way the loader decodes it (``read_timestamps``, xarray as
    fallback), so a chunk that pretraining could not read is named here; ``quick`` decodes only timestamp 0 of
    ``bands`` (4x faster, and blind to damage in the other chunks).
    """
    report = CheckReport("ssl4eo_s12_v11", root)
    present = [m for m, (folder, _) in MODALITIES.items() if (root / folder).is_dir()]
    if not present:
        report.problems.append(f"{root}: none of {[f for f, _ in MODALITIES.values()]} found; point at train/ or val/")
        return report
    names = {m: {p.name for p in (root / MODALITIES[m][0]).glob("*.zarr.zip")} for m in present}
    for name in sorted(set.union(*names.values())):
        have = [m for m in present if name in names[m]]
        for m in sorted(set(present) - set(have)):
            report.problems.append(f"{root / MODALITIES[m][0] / name}: missing (the other modalities have this shard)")
        try:
            shards = open_shards(root, name, have)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        for m, ds in shards.items():
            try:
                _decode_all(report, m, root / MODALITIES[m][0] / name, ds, quick)
            except DatasetError as err:
                report.problems.append(str(err))
        report.items += int(next(iter(shards.values())).sizes["sample"])
    return report


def _decode_all(report: CheckReport, m: str, path: Path, ds: Any, quick: bool) -> None:
    """Decode every timestamp of ``bands`` (and ``cloud_mask``) of one shard as the loader would."""
    times = [0] if quick else list(range(int(ds.sizes["time"])))
    variables = ["bands"] if quick else [v for v in ("bands", "cloud_mask") if v in ds]
    for variable in variables:
        got = read_timestamps(path, variable, times)
        if got is None:  # another layout: the loader reads through xarray
            try:
                got = {t: np.asarray(ds[variable].isel(time=t).values) for t in times}
            except Exception as err:
                raise DatasetError(path, f"{variable} cannot be decoded ({err})", "re-download this shard") from None
        if variable == "bands":
            for t in times:
                x = torch.from_numpy(got[t].astype("float32"))
                report.counts[m] = report.counts.get(m, 0) + x.shape[0] - 1
                empty = torch.isnan(x).flatten(2).all(2).any(1) if x.ndim == 4 else torch.zeros(0, dtype=torch.bool)
                if bool(empty.any()):  # the loader fills NaN with the image's mean: nothing to fill from
                    which = empty.nonzero().flatten().tolist()
                    report.problems.append(
                        f"{path}: timestamp {t} of sample(s) {which[:5]} has a band that is NaN everywhere (no data); "
                        "leave these samples out or re-download the shard"
                    )
                report.see(m, torch.nan_to_num(x) if bool(empty.any()) else x)


def check(
    name: str, root: Path, split: str = "train", s2_product: str = "s2c", size: int = 264, quick: bool = False
) -> CheckReport:
    """Walk dataset ``name`` at ``root`` with its spec's ``check`` (``decur.datasets``) and report what was found.

    ``s2_product``, ``size`` (SSL4EO-S12 v1.0) and ``quick`` (v1.1: decode one timestamp per file instead of every
    chunk) reach the dataset's walk as options.

    Raises:
        DatasetError: A split the dataset does not have (naming the ones it has).

    """
    spec = dataset_spec(name)
    if spec.check is None:
        raise DatasetError(root, f"`decur data check` has no walk for {name}", f"one of {list(datasets('check'))}")
    options = {"dataset": name, "s2_product": s2_product, "size": size, "quick": quick}
    try:
        walked = resolve(spec.check)(root, split, options)
    except ValueError as err:  # an argument the reader refuses (a split it does not have)
        raise DatasetError(root, str(err), f"choose --split among {list(spec.splits)}") from None
    return walked if isinstance(walked, CheckReport) else check_samples(walked, name, root)


def walk_ssl4eo_s12(root: Path, split: str, options: dict[str, Any]) -> CheckReport:
    """SSL4EO-S12 v1.0: a ``decur data pack`` store, else the raw tree (``check_ssl4eo_s12``)."""
    if (root / "index.json").is_file():
        return check_packed_ssl4eo_s12(root)
    return check_ssl4eo_s12(root, options.get("s2_product", "s2c"), options.get("size", 264))


def walk_ssl4eo_s12_v11(root: Path, split: str, options: dict[str, Any]) -> CheckReport:
    """SSL4EO-S12 v1.1: ``check_ssl4eo_s12_v11`` of the split folder at ``root``."""
    return check_ssl4eo_s12_v11(root, bool(options.get("quick", False)))
