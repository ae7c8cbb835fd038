"""From a config to a dataset, and the per-band statistics its view pipelines standardise with."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from decur.config import ConfigError, PretrainConfig
from decur.data.errors import DatasetError
from decur.datasets import dataset_spec, datasets, resolve
from decur.geometry import as_float


def build_dataset(
    cfg: PretrainConfig, *, seed_offset: int = 0, length: int | None = None
) -> Dataset[dict[str, Tensor]]:
    """The pretraining dataset named by ``cfg.data.dataset``: its spec's ``pretrain`` factory (``decur.datasets``).

    Args:
        cfg: A validated config.
        seed_offset: Added to the seed (evaluation draws fresh scenes from the same synthetic world).
        length: Overrides ``cfg.data.length`` (synthetic only).

    Raises:
        ConfigError: A dataset no pretraining reads.

    """
    spec = dataset_spec(cfg.data.dataset)
    if spec.pretrain is None:
        raise ConfigError(
            f"config field `data.dataset`: {cfg.data.dataset!r} is not read for pretraining; use one of "
            f"{list(datasets('pretrain'))}"
        )
    return resolve(spec.pretrain)(cfg, seed_offset=seed_offset, length=length)


def check_bands(cfg: PretrainConfig, dataset: Any) -> None:
    """The band count of every modality in the data's first sample against the config's, before any training.

    Raises:
        ConfigError: A modality whose files hold another number of bands (both numbers and the fix named), or a
            packed SSL4EO-S12 store of another Sentinel-2 product than ``data.s2_product``.

    """
    d = cfg.data
    packed = getattr(dataset, "s2_product", d.s2_product)  # a reader of one Sentinel-2 product says which
    if packed != d.s2_product:
        raise ConfigError(
            f"config field `data.s2_product`: {d.root} is a packed store of {packed}, the config asks for "
            f"{d.s2_product}: set data.s2_product={packed} (and the s2 bands to match), or pack the other product"
        )
    if isinstance(dataset, IterableDataset) or len(dataset) == 0:
        return  # file shards: their products and bands are checked by name in the config
    sample = None
    for index in range(min(len(dataset), 64)):  # with data.skip_bad, the first sample whose files are good
        try:
            sample = dataset[index]
            break
        except DatasetError:
            if not d.skip_bad:
                raise
    if sample is None:
        return  # 64 bad samples in a row: training's own skipping reports them
    for mod in d.modalities:
        x = sample.get(mod.name)
        if x is None:
            continue
        found = int(x.shape[-3])
        if found != mod.bands:
            raise ConfigError(
                f"config field `data.modalities`: {mod.name} is given {mod.bands} bands, but the data at "
                f"{d.root or d.dataset} hold {found}: set bands: {found} for {mod.name}, or point data.root at the "
                f"{mod.bands}-band files"
            )


def dataset_stats(
    dataset: Dataset[dict[str, Tensor]], modalities: list[str]
) -> dict[str, tuple[list[float], list[float]]]:
    """The dataset's published band statistics where it has them, else ``band_stats`` of its first samples."""
    published = getattr(dataset, "stats", None)
    if published is not None:
        return {m: published[m] for m in modalities}
    return band_stats(dataset, modalities)


def band_stats(
    dataset: Dataset[dict[str, Tensor]], modalities: list[str], samples: int = 256
) -> dict[str, tuple[list[float], list[float]]]:
    """Per-band mean and standard deviation of each modality over the first ``samples`` samples.

    Pixels are pooled over samples of any size (SUN-RGBD mixes several), in float64.
    """
    items = [dataset[i] for i in range(min(samples, len(dataset)))]  # type: ignore[arg-type]
    stats = {}
    for m in modalities:
        total = square = None
        count = 0
        for item in items:
            x = as_float(item[m]).double()
            x = x.transpose(0, -3).flatten(1)  # C x everything else (C x H x W or V x C x H x W)
            total = x.sum(1) if total is None else total + x.sum(1)
            square = (x**2).sum(1) if square is None else square + (x**2).sum(1)
            count += x.shape[1]
        assert total is not None and square is not None
        mean = total / count
        std = ((square - count * mean**2) / max(1, count - 1)).clamp_min(0).sqrt().clamp_min(1e-6)
        stats[m] = (mean.float().tolist(), std.float().tolist())
    return stats


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies a dataset wherever it lies: its sample count and a hash of its sample names.

    The names are the reader's location ids, patch names, file stems or shard names (``ids``, ``patches``, ...),
    relative, so a dataset copied or staged elsewhere has the same fingerprint and another dataset does not.
    """
    while not any(hasattr(dataset, a) for a in ("ids", "patches", "stems", "names", "files")) and hasattr(
        dataset, "dataset"
    ):
        dataset = dataset.dataset  # a wrapper (decur's Transformed, torch's Subset) around the reader
    out: dict[str, Any] = {"samples": len(dataset) if hasattr(dataset, "__len__") else None}
    for attribute in ("ids", "patches", "stems", "names", "files"):
        names = getattr(dataset, attribute, None)
        if isinstance(names, list | tuple) and names:
            keys = "\n".join(Path(str(n)).name for n in names)
            out[attribute] = hashlib.sha256(keys.encode()).hexdigest()[:16]
            break
    return out
