"""The ``decur embed`` config (``EmbedConfig``): which weights, which data, which output; checked before any work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from decur.catalog import PRECISIONS, TRANSFORM_RULES
from decur.config import ConfigError, EngineConfig, register_kind
from decur.datasets import dataset_spec, datasets

if TYPE_CHECKING:
    from decur.evaluate.transfer import TransferConfig  # (embed configs validate without the transfer stack)

T = TypeVar("T")
"""Datasets ``decur embed`` reads: the transfer datasets, SSL4EO-S12's raw release tree (one season each), its v1.1
shards (one timestamp each) and folders of paired files (every stem, with the modalities it has)."""
FORMATS = ("parquet", "zarr")
DTYPES = ("float32", "float16")


@dataclass
class EmbedConfig:
    """What ``decur embed SOURCE --out FILE`` computes (every field can be given as ``field=value``)."""

    source: str | None = None
    """The weights: a decur run folder or checkpoint, an export folder, or imported weights (``decur import``)."""
    dataset: str = "synthetic"
    """One of ``decur.datasets.datasets("embed")``."""
    root: str | None = None
    """The dataset's folder (not for ``synthetic``)."""
    split: str = "test"
    """The split to embed (BigEarthNet: train / val / test; SUN-RGBD, NYUv2: train / test; GeoNRW: always its test
    cities; SSL4EO-S12: every location)."""
    modalities: list[str] | None = None
    """Modalities to embed (default: every modality of the weights the dataset holds)."""
    pretrained_modalities: list[str] | None = None
    """Names of the encoders in file order (the release's joint files, e.g. ``[s1, s2]``)."""
    input_transform: str | None = None
    """Override the input transform the weights were trained with (``decur``, ``ssl4eo_release``, ``torchgeo``)."""
    common_dim: int | None = None
    """Common embedding dimensions, replacing what the weights record (decur runs and exports their own; the
    release's joint files the release scripts' 7168 for S1-S2, 6144 for RGB-X). Weights with projectors but no
    record get feature columns only unless it is given."""
    folders: dict[str, str] | None = None
    """``paired_folders``: modality → its sub-folder of ``root`` (default: each modality of the weights in a folder
    of its own name)."""
    s2_product: str = "s2c"
    """SSL4EO-S12: ``s2c`` (L1C, 13 bands) or ``s2a`` (L2A, 12 bands)."""
    season: int = 0
    """SSL4EO-S12 v1.0: which season pair of each location, in date order (0: the earliest); v1.1: which of its
    timestamps."""
    image_size: int = 64
    """Synthetic scenes' side; SSL4EO-S12 tiles' side on the 10 m grid (264 in the release)."""
    samples: int = 1024
    """Synthetic scenes to embed."""
    batch_size: int = 64
    """Samples per forward pass and process."""
    num_workers: int = 2
    dtype: str = "float32"
    """Stored precision of the vectors: ``float32`` or ``float16`` (half the size; ~3 significant digits)."""
    format: str = "parquet"
    """``parquet`` (GeoParquet 1.1, one row per sample) or ``zarr`` (one array per column)."""
    rows_per_part: int = 4096
    """Rows buffered per process before they are written (a row group; a killed run loses at most this many)."""
    trainer: EngineConfig = field(default_factory=EngineConfig)

    def validate(self, check_paths: bool = True) -> EmbedConfig:
        """Check every field; raises ``ConfigError`` naming it and the fix."""
        for name, value, allowed in (
            ("dataset", self.dataset, datasets("embed")),
            ("format", self.format, FORMATS),
            ("dtype", self.dtype, DTYPES),
            ("s2_product", self.s2_product, ("s2c", "s2a")),
            ("trainer.precision", self.trainer.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"embed config field `{name}`: {value!r} is not one of {list(allowed)}")
        if self.input_transform is not None and self.input_transform not in TRANSFORM_RULES:
            raise ConfigError(
                f"embed config field `input_transform`: {self.input_transform!r} is not one of {list(TRANSFORM_RULES)}"
            )
        for name in ("batch_size", "rows_per_part", "samples", "image_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"embed config field `{name}`: must be >= 1, got {getattr(self, name)}")
        if self.common_dim is not None and self.common_dim < 1:
            raise ConfigError(f"embed config field `common_dim`: must be >= 1, got {self.common_dim}")
        if self.num_workers < 0 or self.season < 0:
            raise ConfigError("embed config fields `num_workers` and `season`: must be >= 0")
        if self.source is None:
            raise ConfigError("embed: name the weights (a run folder, checkpoint, export or imported weights)")
        if check_paths and not Path(self.source).exists():
            raise ConfigError(f"embed: the weights {self.source} do not exist")
        if dataset_spec(self.dataset).needs_root:
            if self.root is None:
                raise ConfigError(f"embed config field `root`: dataset {self.dataset!r} needs its folder")
            if check_paths and not Path(self.root).is_dir():
                raise ConfigError(f"embed config field `root`: {self.root} does not exist or is no folder")
        if self.modalities == []:
            raise ConfigError("embed config field `modalities`: give at least one modality, or leave it out")
        return self

    def transfer_run(self) -> TransferConfig:
        """The transfer config whose data and starting point are this embedding's (the transfer datasets)."""
        from decur.evaluate.transfer import TransferConfig  # (embed configs validate without the transfer stack)

        task = dataset_spec(self.dataset).transfer_tasks[0]  # one the dataset has
        run = TransferConfig(
            task=task,
            dataset=self.dataset,
            root=self.root,
            train_split=self.split,
            test_split=self.split,
            pretrained=self.source,
            pretrained_modalities=self.pretrained_modalities,
            input_transform=self.input_transform,
            modalities=self.modalities,
            train_samples=min(self.samples, 256),  # only its band statistics are read (random-init transforms)
            test_samples=self.samples,
            image_size=self.image_size,
            num_workers=self.num_workers,
            trainer=self.trainer,
        )
        return as_embed_error(run.validate)


def as_embed_error(call: Callable[[], T]) -> T:
    """``call()``, with the transfer config's field names in its errors said as embed's."""
    try:
        return call()
    except ConfigError as err:
        raise ConfigError(str(err).replace("transfer config field", "embed config field")) from None


register_kind("embed", EmbedConfig)
