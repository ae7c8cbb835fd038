"""Every dataset decur reads, one :class:`DatasetSpec` each, in one registry (importable without torch).

A spec is everything the commands need to know about a dataset: its modalities and classes, the pretraining rules of
its config fields, and where its readers are (``"module:function"``, imported only when data are read, so
``decur validate`` and ``decur --help`` stay torch-free). Pretraining (``decur.data.build``), transfer
(``decur.evaluate.transfer.data``), ``decur data check``/``download``, validation and the CLI's choices iterate
:data:`DATASETS`; none of them names a dataset.

Adding a dataset is one file: a reader, the factories below, and ``register_dataset("name", DatasetSpec(...))``.
decur imports such a file when it is named in the environment variable ``DECUR_PLUGINS`` (comma-separated module
names) or installed under the ``decur.datasets`` entry-point group; Python users simply import it.

Factory signatures (each optional; a missing one means the command does not read the dataset):

- ``pretrain(cfg, *, seed_offset, length)``: the pretraining dataset of a ``PretrainConfig`` (two views or
  single images per modality, as ``decur.data`` readers return them).
- ``transfer(run, role, modalities)``: the ``role`` (``"train"`` or ``"test"``) set of a ``TransferConfig``,
  samples with the ``modalities`` asked for and ``label`` (multi-hot) or ``mask`` (0 = ignored).
- ``check(root, split, options)``: a ``decur.data.check.CheckReport``, or a dataset whose every sample is read.

``decur embed`` reads a transfer dataset's test split and names each row by the reader's ``locate(index) -> (id,
georeferenced file or None)``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from decur.errors import UnknownDatasetError

Factory = str | Callable[..., Any]
"""A function, or where it lives (``"package.module:function"``, imported when first called)."""
Rules = Callable[[Any], list[tuple[str, str]]]
"""Checks of a pretraining config's ``data`` section: ``(field, what is wrong and the fix)`` per problem."""


@dataclass(frozen=True)
class Source:
    """Where a dataset is published and how decur wants it laid out (``decur data download`` prints it)."""

    url: str
    licence: str
    size: str
    layout: str


@dataclass(frozen=True)
class DatasetSpec:
    """What decur does with one dataset.

    Attributes:
        modalities: Modality → band count as transfer, embedding and check read it (pretraining configs name
            their own, checked by ``rules``).
        pretrain: Factory of the pretraining dataset (see the module's docstring).
        transfer: Factory of the transfer train/test sets.
        check: Factory behind ``decur data check``.
        rules: The dataset's own checks of ``data.*`` in a pretraining config (modalities, bands, its fields).
        fields: Config fields (``data.*`` of pretraining, top-level of transfer) only this dataset (and others
            listing them) reads; an optional one (``null`` by default) set for another dataset is refused rather
            than silently ignored (``unread_fields``).
        splits: What ``decur data check --split`` can walk (``()``: one tree).
        classes: Label classes (segmentation: without the ignored class 0).
        segmentation: Samples carry a ``mask`` (0 = ignored); else a multi-hot ``label`` when ``classes``.
        tasks: Transfer tasks besides retrieval; default segmentation with masks, else classification with
            ``classes``.
        sized: Tiles are ``data.image_size`` pixels wide (the crop must fit in them).
        crop: Transfer: the training crop side and the input size of the models (``None``: ``image_size``).
        imagenet: Transfer from random init: the RGB branch is standardised with ImageNet's statistics.
        mixed_sizes: Images of several sizes: evaluated one at a time.
        stats_samples: Samples the transfer's band statistics are computed on when the reader publishes none.
        needs_root: The config names the folder the data live in (``data.root``, ``root``).
        optional: Modalities a transfer reads only when ``modalities`` names them.
        pixels: The units of a pretraining run's inputs, recorded in its export card: ``sentinel`` (decur's
            Sentinel-1/-2 preprocessing for 2-, 12- and 13-band modalities), ``image`` (8-bit/255, DEM relative to
            the patch mean) or ``reader`` (as the reader returns them).
        generated: Samples come from a generator with known labels and factors: pretraining ends with the
            built-in probe evaluation, ``decur explain`` draws fresh scenes.
        embed: ``decur embed`` opens it with this ``(config, transfer config) -> TransferData`` (default: the
            transfer factory's test split).
        source: Where it is published; ``decur data download`` prints it.
        fetch: ``decur data download`` fetches it instead: ``(root, options) -> exit status``.
        pack: ``decur data pack``: ``(root, out, options) -> (store, how to use it)``.
        docs: One line for ``decur data`` listings and error messages.

    """

    modalities: dict[str, int]
    pretrain: Factory | None = None
    transfer: Factory | None = None
    check: Factory | None = None
    rules: Rules | None = None
    fields: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    classes: int | None = None
    segmentation: bool = False
    tasks: tuple[str, ...] = ()
    sized: bool = False
    crop: int | None = None
    imagenet: bool = False
    mixed_sizes: bool = False
    stats_samples: int = 256
    needs_root: bool = True
    optional: tuple[str, ...] = ()
    pixels: Literal["sentinel", "image", "reader"] = "reader"
    generated: bool = False
    embed: Factory | None = None
    source: Source | None = None
    fetch: Factory | None = None
    pack: Factory | None = None
    docs: str = ""

    @property
    def uses(self) -> tuple[str, ...]:
        """The commands that read it: ``pretrain``, ``transfer``, ``embed``, ``check``, ``download``, ``pack``."""
        has = {
            "pretrain": self.pretrain is not None,
            "transfer": self.transfer is not None,
            "embed": self.embed is not None or self.transfer is not None,
            "check": self.check is not None,
            "download": self.source is not None or self.fetch is not None,
            "pack": self.pack is not None,
        }
        return tuple(use for use, yes in has.items() if yes)

    @property
    def transfer_tasks(self) -> tuple[str, ...]:
        """The ``task`` values a transfer run on it accepts (every transfer dataset answers retrieval)."""
        if self.transfer is None:
            return ()
        tasks = self.tasks or (("segmentation",) if self.segmentation else ("classification",) if self.classes else ())
        return (*tasks, "retrieval")


PLUGINS_HINT = "; a dataset of your own is registered by a module named in DECUR_PLUGINS (docs/development.md)"
"""Appended to every refusal of an unknown dataset name."""
DATASETS: dict[str, DatasetSpec] = {}
"""The registry: dataset name (``data.dataset``, ``dataset:``) → spec, in registration order."""


def register_dataset(name: str, spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add dataset ``name`` to every command that reads it.

    Raises:
        ValueError: ``name`` is taken (pass ``replace=True`` to redefine it) or is no identifier.

    """
    if not name.isidentifier():
        raise ValueError(f"dataset name {name!r}: use letters, digits and underscores (it is a config value)")
    if name in DATASETS and not replace:
        raise ValueError(f"dataset {name!r} is registered already; pass replace=True to redefine it")
    DATASETS[name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Remove dataset ``name`` (tests that define one clean up with this)."""
    DATASETS.pop(name, None)


_plugins_loaded = False


def load_plugins() -> None:
    """Import the dataset modules named in ``DECUR_PLUGINS`` and the ``decur.datasets`` entry points (once).

    Raises:
        ImportError: A named module that cannot be imported (naming the variable and the module).

    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get("DECUR_PLUGINS", "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f"DECUR_PLUGINS names {module!r}, which cannot be imported ({err}); put its folder on PYTHONPATH or "
                "remove it from the variable"
            ) from err
    from importlib.metadata import entry_points

    for point in entry_points(group="decur.datasets"):
        point.load()


def datasets(use: str) -> tuple[str, ...]:
    """The names of the datasets command ``use`` reads, in registration order (plugins included)."""
    load_plugins()
    return tuple(name for name, spec in DATASETS.items() if use in spec.uses)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``.

    Raises:
        UnknownDatasetError: An unknown name (a ``KeyError``), with the registered ones and how to add one.

    """
    load_plugins()
    if name not in DATASETS:
        raise UnknownDatasetError(f"dataset {name!r} is not one of {list(DATASETS)}{PLUGINS_HINT}")
    return DATASETS[name]


def resolve(factory: Factory) -> Callable[..., Any]:
    """The function a spec names (imported from ``"module:function"`` on first use)."""
    if callable(factory):
        return factory
    module, _, attribute = factory.partition(":")
    return getattr(importlib.import_module(module), attribute)


def unread_fields(config: Any, spec: DatasetSpec, name: str, prefix: str = "data.") -> list[tuple[str, str]]:
    """The optional fields of ``config`` some dataset claims, set for a dataset that does not read them.

    Optional: ``null`` unless set (``data.cities``, ``s2_bands``, ...); a value there is a request the dataset would
    ignore. Fields with other defaults (``data.length``) are left alone: configs derived from the synthetic demo
    carry them. Returns ``(prefix + field, why and the fix)`` for each.
    """
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    problems = []
    for field_name in sorted({f for s in DATASETS.values() for f in s.fields} - set(spec.fields)):
        if field_name in defaults and defaults[field_name] is None and getattr(config, field_name) is not None:
            readers = [n for n, s in DATASETS.items() if field_name in s.fields]
            problems.append(
                (
                    f"{prefix}{field_name}",
                    f"only {_listed(readers)} read{'s' if len(readers) == 1 else ''} it (dataset is {name!r}): "
                    "remove it or set it to null",
                )
            )
    return problems


# ---- the built-in datasets ----------------------------------------------------------------------------------------
# Each entry names its readers in decur.data; the rules below are the dataset's own checks of a pretraining config.

SYNTHETIC_MODALITIES = ("optical", "sar", "elevation")
"""Modalities of the built-in synthetic scenes."""
UNIQUE_FACTORS = {
    "optical": ("haze", "phenology"),
    "sar": ("soil_moisture", "roughness"),
    "elevation": ("relief", "tilt"),
}
"""The synthetic generator's factors that only one modality sees."""
SSL4EO_V11_PRODUCTS = {"s1grd": ("S1GRD", 2), "s2l1c": ("S2L1C", 13), "s2l2a": ("S2L2A", 12), "s2rgb": ("S2RGB", 3)}
"""SSL4EO-S12 v1.1: decur name → (release folder, bands)."""
V11_REPO = "embed2scale/SSL4EO-S12-v1.1"
"""The Hugging Face Hub dataset repository of SSL4EO-S12 v1.1 (CC-BY-4.0)."""


def _listed(items: Any, last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _modalities(data: Any, allowed: Mapping[str, tuple[int, ...]], what: str) -> list[tuple[str, str]]:
    """Modality names among ``allowed`` and band counts among each one's allowed counts."""
    names = [m.name for m in data.modalities]
    if not set(names) <= set(allowed):
        return [("data.modalities", f"{what} has {_listed(allowed)}, got {names}")]
    problems = []
    for m in data.modalities:
        counts = allowed[m.name]
        if m.bands not in counts:
            bands = f"{_listed(counts, 'or')} band{'' if counts == (1,) else 's'}"
            problems.append(("data.modalities", f"{m.name} has {bands}, got {m.bands}"))
    return problems


def _synthetic_rules(data: Any) -> list[tuple[str, str]]:
    problems = [
        ("data.modalities", f"unknown modality {m.name!r}: the synthetic dataset has {list(SYNTHETIC_MODALITIES)}")
        for m in data.modalities
        if m.name not in SYNTHETIC_MODALITIES
    ]
    problems += [("data.modalities", "synthetic elevation has 1 band") for m in data.modalities
                 if m.name == "elevation" and m.bands != 1]  # fmt: skip
    if data.unique_factors < 0:
        problems.append(("data.unique_factors", f"must be >= 0, got {data.unique_factors}"))
    if data.unique_strength < 0:
        problems.append(("data.unique_strength", f"must be >= 0, got {data.unique_strength}"))
    return problems


def _ssl4eo_rules(data: Any) -> list[tuple[str, str]]:
    want = 13 if data.s2_product == "s2c" else 12
    bands = {m.name: m.bands for m in data.modalities}
    problems = _modalities(data, {"s1": (2,), "s2": (12, 13)}, "SSL4EO-S12")
    if not problems and bands.get("s2", want) != want:
        other = "s2a" if want == 13 else "s2c"
        problems.append(
            (
                "data.modalities",
                f"s2 has {bands['s2']} bands but data.s2_product={data.s2_product} has {want}: set bands: {want}, or "
                f"data.s2_product={other} for the {'L2A (12' if want == 13 else 'L1C (13'}-band) product",
            )
        )
    return problems


def _ssl4eo_v11_rules(data: Any) -> list[tuple[str, str]]:
    products = {name: (bands,) for name, (_, bands) in SSL4EO_V11_PRODUCTS.items()}
    problems = _modalities(data, products, "SSL4EO-S12 v1.1 (its folders in lower case)")
    mcf = data.max_cloud_fraction
    if mcf is not None and not 0 <= mcf <= 1:
        problems.append(("data.max_cloud_fraction", f"must lie in [0, 1], got {mcf}"))
    names = [m.name for m in data.modalities]
    if mcf is not None and not {"s2l1c", "s2l2a"} & set(names):
        problems.append(
            (
                "data.max_cloud_fraction",
                f"needs a product with a cloud_mask (s2l1c or s2l2a) among the modalities, got {names}: "
                "add one or set it to null",
            )
        )
    if data.timestamp_draw not in ("sample", "file"):
        problems.append(("data.timestamp_draw", f"must be sample or file, got {data.timestamp_draw!r}"))
    return problems


def _geonrw_rules(data: Any) -> list[tuple[str, str]]:
    problems = _modalities(data, {"rgb": (3,), "dem": (1, 3)}, "GeoNRW")
    if data.cities is not None and not data.cities:
        problems.append(("data.cities", "a non-empty list of GeoNRW city folders, or null for the train cities"))
    return problems


def _sunrgbd_rules(data: Any) -> list[tuple[str, str]]:
    problems = _modalities(data, {"rgb": (3,), "hha": (3,)}, "SUN-RGBD pretraining")
    if data.split not in ("train", "test", "all"):
        problems.append(("data.split", f"train, test or all, got {data.split!r}"))
    return problems


_RGBD_LAYOUT = "ROOT/{RGB,HHA,Label}/<split>/ (HHA made by decur data hha)"

register_dataset(
    "synthetic",
    DatasetSpec(
        {"optical": 13, "sar": 2, "elevation": 1},
        pretrain="decur.data.synthetic:pretrain_dataset",
        transfer="decur.data.synthetic:transfer_dataset",
        tasks=("classification", "segmentation"),
        rules=_synthetic_rules,
        needs_root=False,
        optional=("elevation",),
        generated=True,
        fields=("length", "num_classes", "unique_factors", "unique_strength"),
        sized=True,
        docs="the built-in synthetic optical/SAR/elevation scenes with known labels",
    ),
)
register_dataset(
    "ssl4eo_s12",
    DatasetSpec(
        {"s1": 2, "s2": 13},
        pretrain="decur.data.ssl4eo_s12:pretrain_dataset",
        check="decur.data.check:walk_ssl4eo_s12",
        embed="decur.embed.run:open_ssl4eo_s12",
        pack="decur.data.pack:pack_command",
        fetch="decur.data.download:fetch_ssl4eo_s12",
        pixels="sentinel",
        rules=_ssl4eo_rules,
        fields=("pair_seasons", "s2_product", "void_ids"),
        sized=True,
        source=Source(
            "https://mediatum.ub.tum.de/1660427",
            "CC-BY-4.0",
            "about 1.5 TB (500 GB per product); 100-patch example",
            "ROOT/{s1,s2c,s2a}/<location id>/<season>/<BAND>.tif (the release's raw tree)",
        ),
        docs="SSL4EO-S12 v1.0 (Sentinel-1 GRD + Sentinel-2, 4 seasons), raw tree or `decur data pack` store",
    ),
)
register_dataset(
    "ssl4eo_s12_v11",
    DatasetSpec(
        {name: bands for name, (_, bands) in SSL4EO_V11_PRODUCTS.items()},
        pretrain="decur.data.ssl4eo_v11:pretrain_dataset",
        check="decur.data.check:walk_ssl4eo_s12_v11",
        embed="decur.embed.run:open_ssl4eo_s12_v11",
        fetch="decur.data.download:fetch_v11",
        pixels="sentinel",
        rules=_ssl4eo_v11_rules,
        fields=("max_cloud_fraction", "timestamp_draw"),
        source=Source(
            f"https://huggingface.co/datasets/{V11_REPO}",
            "CC-BY-4.0",
            "about 1.5 TB (3,846 files x 4 products)",
            "ROOT/<split>/{S1GRD,S2L1C,S2L2A,S2RGB}/ssl4eos12_<split>_seasonal_data_<NNNNNN>.zarr.zip",
        ),
        docs="SSL4EO-S12 v1.1 (zarr shards of 64 locations, cloud masks)",
    ),
)
register_dataset(
    "paired_folders",
    DatasetSpec(
        {},
        pretrain="decur.data.paired:pretrain_dataset",
        embed="decur.embed.run:open_paired_folders",
        docs="your own co-registered images: one folder per modality, files paired by name",
    ),
)
register_dataset(
    "bigearthnet",
    DatasetSpec(
        {"s1": 2, "s2": 13},
        transfer="decur.data.bigearthnet:transfer_dataset",
        check="decur.data.bigearthnet:check_dataset",
        pack="decur.data.pack_bigearthnet:pack_command",
        fetch="decur.data.download:fetch_bigearthnet",
        pixels="sentinel",
        fields=("s2_bands",),
        splits=("train", "val", "test"),
        classes=19,
        crop=120,
        source=Source(
            "https://bigearth.net",
            "CDLA-Permissive-1.0",
            "about 121 GB (S1 + S2)",
            "ROOT/BigEarthNet-S1-v1.0/<patch>/ and ROOT/BigEarthNet-v1.0/<patch>/, plus the split CSVs",
        ),
        docs="BigEarthNet-MM (v1 tree, v2.0 reBEN tree or a packed store), 19 multi-label classes",
    ),
)
register_dataset(
    "bigearthnet_v2",
    DatasetSpec(
        {"s1": 2, "s2": 13},
        check="decur.data.bigearthnet:check_dataset_v2",
        pack="decur.data.pack_bigearthnet:pack_command",
        pixels="sentinel",
        splits=("train", "val", "validation", "test"),
        classes=19,
        source=Source(
            "https://bigearth.net",
            "CDLA-Permissive-1.0",
            "about 60 GB (reBEN)",
            "ROOT/BigEarthNet-S1/, ROOT/BigEarthNet-S2/, ROOT/Reference_Maps/ and ROOT/metadata.parquet",
        ),
        docs="BigEarthNet v2.0 (reBEN) for `decur data check`/`pack`; transfer reads it as dataset bigearthnet",
    ),
)
register_dataset(
    "geonrw",
    DatasetSpec(
        {"rgb": 3, "dem": 3},
        pretrain="decur.data.geonrw:pretrain_dataset",
        transfer="decur.data.geonrw:transfer_dataset",
        check="decur.data.geonrw:check_dataset",
        fetch="decur.data.download:fetch_geonrw",
        rules=_geonrw_rules,
        fields=("cities", "train_cities", "test_cities"),
        splits=("train", "test"),
        classes=10,
        segmentation=True,
        sized=True,
        crop=250,
        pixels="image",
        source=Source(
            "https://ieee-dataport.org/open-access/geonrw",
            "CC-BY-4.0",
            "about 25 GB",
            "ROOT/<city>/<tile>_{rgb.jp2,dem.tif,seg.tif}",
        ),
        docs="GeoNRW aerial RGB + elevation, 10 land-cover classes",
    ),
)
register_dataset(
    "sunrgbd",
    DatasetSpec(
        {"rgb": 3, "hha": 3},
        pretrain="decur.data.rgbd:pretrain_dataset",
        transfer="decur.data.rgbd:transfer_dataset",
        check="decur.data.rgbd:check_dataset",
        rules=_sunrgbd_rules,
        fields=("split",),
        splits=("train", "test"),
        classes=37,
        segmentation=True,
        crop=480,
        pixels="image",
        imagenet=True,
        mixed_sizes=True,
        stats_samples=64,
        source=Source(
            "https://rgbd.cs.princeton.edu", "research use (see the site)", "about 7 GB with HHA", _RGBD_LAYOUT
        ),
        docs="SUN RGB-D, RGB + HHA, 37 classes",
    ),
)
register_dataset(  # the same layout and reader as SUN-RGBD; a benchmark only (no pretraining), 40 classes
    "nyuv2",
    replace(
        DATASETS["sunrgbd"],
        pretrain=None,
        rules=None,
        fields=(),
        classes=40,
        source=Source(
            "https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html",
            "research use (see the site)",
            "about 3 GB labelled",
            _RGBD_LAYOUT,
        ),
        docs="NYU Depth v2, RGB + HHA, 40 classes",
    ),
)
