"""Typed, validated run configuration.

A run is described by one ``PretrainConfig``. YAML files and ``key.path=value`` command-line overrides are merged
onto the defaults, which are the built-in synthetic demo (ResNet-18, small images). Unknown keys and bad values
fail at start with the dotted name of the field and what to do about it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from decur.catalog import METHODS, check_arch, check_vit_pool, encoder_width, is_mit, vit_patch
from decur.datasets import DATASETS, PLUGINS_HINT, datasets, unread_fields
from decur.errors import DecurError

METHOD_NAMES = tuple(METHODS)
AUTO_MIN_BATCH = 16
"""The smallest global batch ``common_dim: auto`` accepts (a batch correlation's noise is about 1/sqrt(N))."""
Augment = Literal["optical", "rgb", "sar", "dem", "hha", "none"]
AUGMENT_PRESETS: tuple[str, ...] = typing.get_args(Augment)


class ConfigError(DecurError, ValueError):
    """A configuration value is missing, unknown or out of range; the message names the field."""


@dataclass
class ModalityConfig:
    """One input modality: its name (used everywhere as the key), band count and view pipeline."""

    name: str
    bands: int
    augment: Augment = "none"
    """View pipeline preset: optical (BYOL, multispectral-safe), rgb (BYOL), sar, dem, hha, none."""
    mean: list[float] | None = None
    """Per-band mean for normalisation after augmentation; ``None`` takes the dataset's statistics."""
    std: list[float] | None = None
    folder: str | None = None
    """paired_folders: sub-folder of ``data.root`` holding this modality's files (default: the name)."""
    scale: float = 1.0
    """paired_folders: factor applied to raw values so photometric augmentations see [0, 1] (1/255, 1e-4...)."""


def _default_modalities() -> list[ModalityConfig]:
    return [ModalityConfig("optical", 13, "optical"), ModalityConfig("sar", 2, "sar")]


@dataclass
class DataConfig:
    """Where samples come from and how they are batched and cropped."""

    dataset: str = "synthetic"
    root: str | None = None
    """Dataset folder; required by every dataset except ``synthetic``."""
    modalities: list[ModalityConfig] = field(default_factory=_default_modalities)
    length: int = 4096
    """Synthetic: number of pretraining samples."""
    image_size: int = 48
    """Tile side in pixels: generated size (synthetic), 10 m grid of a tile (SSL4EO-S12: 264), patch (GeoNRW: 250)."""
    split: str = "train"
    """SUN-RGBD: the pairs to pretrain on, ``train``, ``test`` or ``all`` (the paper uses all 10,335)."""
    pair_seasons: bool = True
    """SSL4EO-S12: the modalities of one view share the season (the paper); false draws them independently."""
    s2_product: Literal["s2c", "s2a"] = "s2c"
    """SSL4EO-S12 v1.0: the Sentinel-2 product read for ``s2``, by its release folder: ``s2c`` (L1C, 13 bands, the
    paper) or ``s2a`` (L2A, 12 bands); the ``s2`` modality's band count must match it."""
    max_cloud_fraction: float | None = None
    """SSL4EO-S12 v1.1: draw only timestamps whose S2 cloud mask covers at most this share of the tile (the least
    cloudy ones when too few qualify); ``None`` draws any."""
    timestamp_draw: str = "sample"
    """SSL4EO-S12 v1.1: ``sample`` draws each location's timestamps (as v1.0); ``file`` draws one set per file and
    epoch for all its 64 locations, so a worker decodes 2 of the file's 4 timestamp chunks (about twice the
    samples/s; every location still sees a random season pair per epoch, but the locations of a file share it)."""
    cities: list[str] | None = None
    """GeoNRW: the city folders to pretrain on (default: the release's train cities)."""
    void_ids: str | None = None
    """SSL4EO-S12: text file of location ids to leave out (one per line), e.g. the release's void-ids list."""
    num_classes: int = 8
    """Synthetic: number of land-cover classes."""
    unique_factors: int = 2
    """Synthetic: factors each modality sees alone (2: the named ones; more adds textures, fewer drops them)."""
    unique_strength: float = 1.0
    """Synthetic: scale of every modality-unique effect (0: the sensors share everything they show)."""
    crop_size: int = 40
    """Side of the random resized crops fed to the encoders (224 in the paper)."""
    crop_scale: tuple[float, float] = (0.08, 1.0)
    share_crop: bool = True
    """The two modalities' first views share crop geometry (the reference code draws them independently)."""
    batch_size: int = 128
    """Global batch size (split over devices)."""
    skip_bad: bool = False
    """Replace samples with bad files by the next good one; each is listed in <output>/skipped.txt and reported."""
    num_workers: int = 2


@dataclass
class ModelConfig:
    """Per-modality encoders and projectors."""

    arch: str = "resnet18"
    """Any timm model with ``in_chans`` and ``num_classes=0`` support (resnet18/34/50 tested), or SegFormer's Mix
    Transformer ``mit_b0`` ... ``mit_b5`` (``decur.models.mit``)."""
    head_dim: int | None = None
    """A linear layer from the pooled feature to this width before the projector; the reference code's MiT
    pretraining uses 2048 (512 → 2048 → 8192³). ``None``: the projector takes the pooled feature."""
    init_weights: str | None = None
    """MiT only: a SegFormer-layout state dict (e.g. the ImageNet ``mit_b2.pth`` of the SegFormer release) that
    every encoder starts from, loaded with strict keys; never downloaded. ``None``: random initialisation."""
    projector: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    """Projector widths, Linear-BN-ReLU between layers and a final Linear (paper: 8192-8192-8192)."""
    vit_pool: str = "token"
    """Plain ViT encoders only: the pooled feature that feeds the projector, ``token`` (class token, the DeCUR code
    base's choice) or ``avg`` (mean of the patch tokens) — ``decur.models.encoder.VIT_POOLS``."""
    share_projector: bool = False
    """Reference-code behaviour: one projector module for all modalities (the paper draws one per modality)."""
    channels_last: bool = False
    """Encoders and views in channels-last memory layout, the layout oneDNN and cuDNN convolutions prefer (faster
    convolutions, measured in ``benchmarks/results/README.md``). Same values up to floating-point rounding; may
    change when a run is resumed."""


@dataclass
class MethodConfig:
    """The objective: DeCUR, one of its ablations, or a baseline (see ``decur.losses``)."""

    name: str = "decur"
    common_dim: int | str | None = None
    """Number of common dimensions; ``None`` derives it from ``common_share``; ``auto`` finds it during the run
    (``decur.train.split``: every dimension common for ``auto_warmup`` of the steps, then the split of
    ``decur.losses.split_dimensions``)."""
    auto_warmup: float = 0.5
    """``common_dim: auto`` only: the share of the run's optimiser steps before the split is decided (the
    statistics are taken over its second half)."""
    common_share: float = 0.75
    """Share of common dimensions (paper: 0.875 SAR-optical, 0.75 RGB-DEM / RGB-depth)."""
    lambda_common: float = 0.0051
    lambda_unique: float = 0.0051
    lambda_intra_1: float = 0.0051
    lambda_intra_2: float = 0.0051
    reference_weighting: bool = False
    """Reference-code behaviour: total = (L_M1 + L_M2 + (L_common + L_unique)/2)/3."""
    pairs: Literal["sum", "mean"] = "sum"
    """More than two modalities: the cross-modal terms of every pair of modalities are summed (``sum``: each pair at
    the paper's weight) or averaged (``mean``: one pair's weight in total). Two modalities: one pair, no effect.
    Modalities after the second use ``lambda_intra_2``."""
    cross_both_views: bool = False
    """Reference-code behaviour: cross-modal terms averaged over both view pairs."""
    separation: float = 0.0
    """Not in the paper, off by default: weight of a term that decorrelates each modality's common dims from its own
    unique dims (``decur.losses.separation_objective``; DeCUR only; docs/results/convergence/README.md)."""
    temperature: float = 0.1
    """SimCLR temperature; CLIP's learnable temperature starts at 0.07."""


@dataclass
class OptimConfig:
    """LARS as in the paper (learning rates for a batch of 256, scaled linearly with the global batch)."""

    name: Literal["lars", "adamw"] = "lars"
    lr_weights: float = 6.0
    """LARS rate of the weights for a global batch of 256. 6.0 is the built-in demo's (96 steps on the synthetic
    data); the paper's 0.2, tuned for 100+ epochs, is set in every paper config and the paired-folders example."""
    lr_biases: float = 0.0048
    momentum: float = 0.9
    weight_decay: float = 1e-6
    warmup_epochs: float = 0.0
    scale_lr: bool = True
    """lr = base_lr x global_batch / 256 (Barlow Twins' rule); off uses the base values as given."""
    adamw_lr: float = 1e-4
    adamw_weight_decay: float = 0.01


@dataclass
class EngineConfig:
    """Where and how a run executes (Lightning): shared by ``decur pretrain`` and ``decur transfer``."""

    accelerator: str = "auto"
    """``auto`` (a GPU when there is one), ``cpu``, ``gpu``, ``cuda``, ``mps``."""
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    """``auto``, ``ddp``, ``ddp_spawn``, ... (Lightning's names)."""
    precision: Literal["32-true", "32", "bf16-mixed", "16-mixed"] = "32-true"
    """``32-true``, ``bf16-mixed`` or ``16-mixed``."""
    log_every_n_steps: int = 5
    tensorboard: bool = False
    """Also log to ``<run>/tensorboard/`` (needs ``tensorboard``); ``metrics.csv`` and the plots are always written."""


@dataclass
class TrainerConfig(EngineConfig):
    """Lightning trainer settings of pretraining."""

    max_epochs: int = 3
    seed: int = 0
    sync_batchnorm: Literal["all", "projector", "none"] = "all"
    """Under multi-GPU DDP, which BatchNorm layers compute their statistics over the global batch: ``all`` (every
    layer, as Barlow Twins and the reference DeCUR code do), ``projector`` (the projectors only) or ``none``.
    PyTorch has no CPU SyncBatchNorm: CPU processes always keep per-process statistics."""
    checkpoint_every: int | None = None
    """Also write ``last.ckpt`` every this many optimiser steps (default: at epoch ends only); a run killed
    mid-epoch resumes at its last step checkpoint, with the batches the uninterrupted run would have seen."""
    rank_every: int = 50
    """Log the effective rank (RankMe) of each modality's embedding every this many steps (0: never)."""
    compile: bool = False
    """``torch.compile`` the encoders and projectors (in place; checkpoints keep plain keys)."""


@dataclass
class EvalConfig:
    """Linear-probe evaluation after pretraining (synthetic dataset only)."""

    enabled: bool = True
    train_samples: int = 1024
    test_samples: int = 512
    random_init: bool = True


@dataclass
class PretrainConfig:
    """A whole pretraining run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def embed_dim(self) -> int:
        """Embedding size K (the projector's output width, or the encoder width without projector)."""
        if self.model.projector:
            return self.model.projector[-1]
        return self.model.head_dim or encoder_width(self.model.arch)

    @property
    def common_dim(self) -> int:
        """K_c: the explicit ``method.common_dim``, ``round(common_share x K)``, or ``K`` for ``auto``.

        Under ``auto`` every dimension is common until the split is found; the run then records it.
        """
        if self.method.common_dim == "auto":
            return self.embed_dim
        if isinstance(self.method.common_dim, int):
            return self.method.common_dim
        return round(self.method.common_share * self.embed_dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML-serialisable)."""
        return _plain(dataclasses.asdict(self))

    def validate(self, check_paths: bool = True) -> PretrainConfig:
        """Check every field that can be checked before anything is built; returns ``self``."""
        d, m, t = self.data, self.method, self.trainer
        check_choices(self)
        names = _check_data(d, check_paths)
        _check_method(m, names)
        _check_model(self.model, d.crop_size, check_paths)
        _require(
            m.common_dim != "auto" or d.batch_size >= AUTO_MIN_BATCH,
            "data.batch_size",
            f"common_dim=auto reads per-dimension correlations off each global batch; {d.batch_size} samples give "
            f"noise (two samples always correlate ±1): use a batch of at least {AUTO_MIN_BATCH}, or a fixed common_dim",
        )
        _require(
            m.common_dim != "auto" or bool(self.model.projector),
            "method.common_dim",
            "`auto` splits the projector's output dimensions: give model.projector widths (e.g. [1024, 1024, 1024])",
        )
        _require(0 <= m.common_share <= 1, "method.common_share", f"must lie in [0, 1], got {m.common_share}")
        _require(
            0 <= self.common_dim <= self.embed_dim,
            "method.common_dim",
            f"must lie in 0..{self.embed_dim} (model.projector[-1]), got {self.common_dim}",
        )
        _require(t.max_epochs >= 1, "trainer.max_epochs", f"must be >= 1, got {t.max_epochs}")
        _check_numbers(self)
        return self


Config = PretrainConfig
"""The name of ``PretrainConfig`` before 2026-12-07, kept for scripts that import it."""


def _check_data(d: DataConfig, check_paths: bool) -> list[str]:
    """The ``data`` section (the dataset's own modality rules: ``_check_dataset``); returns the modality names."""
    pretrain = datasets("pretrain")
    _require(d.dataset in pretrain, "data.dataset", f"{d.dataset!r} is not one of {list(pretrain)}{PLUGINS_HINT}")
    if DATASETS[d.dataset].needs_root:
        _require(d.root is not None, "data.root", f"dataset {d.dataset!r} needs the folder it lives in")
        if check_paths:
            _require(Path(str(d.root)).is_dir(), "data.root", f"{d.root} does not exist or is no folder")
    names = [mod.name for mod in d.modalities]
    _require(len(names) >= 1, "data.modalities", "at least one modality is needed")
    _require(len(set(names)) == len(names), "data.modalities", f"names must be unique, got {names}")
    for i, mod in enumerate(d.modalities):
        where = f"data.modalities[{i}]"
        _require(mod.bands >= 1, f"{where}.bands", f"must be >= 1, got {mod.bands}")
        for key in ("mean", "std"):
            values = getattr(mod, key)
            _require(
                values is None or len(values) == mod.bands,
                f"{where}.{key}",
                f"needs one value per band ({mod.bands}), got {values}",
            )
    _check_dataset(d, check_paths)
    _require(d.batch_size >= 2, "data.batch_size", f"correlations need >= 2 samples, got {d.batch_size}")
    _require(d.crop_size >= 8, "data.crop_size", f"must be >= 8 pixels, got {d.crop_size}")
    lo, hi = d.crop_scale
    _require(0 < lo <= hi <= 1, "data.crop_scale", f"needs 0 < min <= max <= 1, got {d.crop_scale}")
    return names


def _check_dataset(d: DataConfig, check_paths: bool) -> None:
    """What the dataset's spec allows (``decur.datasets``): its own rules, and no field of another dataset."""
    spec = DATASETS[d.dataset]
    for name, why in (spec.rules(d) if spec.rules else []) + unread_fields(d, spec, d.dataset):
        _require(False, name, why)
    if d.void_ids is not None and check_paths:
        _require(Path(d.void_ids).is_file(), "data.void_ids", f"{d.void_ids} is not a file")


def _check_method(m: MethodConfig, names: list[str]) -> None:
    """The ``method`` section against the number of modalities."""
    _require(m.name in METHOD_NAMES, "method.name", f"{m.name!r} is not one of {METHOD_NAMES}")
    method = METHODS[m.name]
    wanted = f"{method.modalities} or more" if method.multimodal is not None else str(method.modalities)
    _require(
        method.accepts(len(names)),
        "data.modalities",
        f"method {m.name!r} trains {wanted} modalit{'y' if wanted == '1' else 'ies'}, got {names}",
    )
    _require(
        not isinstance(m.common_dim, str) or m.common_dim == "auto",
        "method.common_dim",
        f"a number of dimensions or `auto`, got {m.common_dim!r}",
    )
    if m.common_dim == "auto":
        _require(
            m.name == "decur",
            "method.common_dim",
            f"`auto` splits DeCUR's dimensions (method.name=decur), not {m.name!r}'s; give a number or leave it unset",
        )
        _require(0 < m.auto_warmup < 1, "method.auto_warmup", f"a share of the steps in (0, 1), got {m.auto_warmup}")
    _require(
        m.separation >= 0 and (m.separation == 0 or m.name == "decur"),
        "method.separation",
        f"a weight >= 0 for method decur (0 = off, the paper), got {m.separation} for {m.name!r}",
    )


def _check_model(model: ModelConfig, crop_size: int, check_paths: bool) -> None:
    """The ``model`` section: a runnable architecture, its pooling, patch size against the crop, widths, weights."""
    checks = {
        "model.arch": lambda: check_arch(model.arch),
        "model.vit_pool": lambda: check_vit_pool(model.arch, model.vit_pool),
    }
    for field_name, check in checks.items():
        try:
            check()
        except ValueError as err:
            raise ConfigError(f"config field `{field_name}`: {err}") from None
    patch = vit_patch(model.arch)
    _require(
        patch is None or crop_size % patch == 0,
        "data.crop_size",
        f"{model.arch} cuts the crop into {patch}-px patches: give a multiple of {patch}, got {crop_size}",
    )
    _require(all(w >= 1 for w in model.projector), "model.projector", "widths must be >= 1")
    _require(model.head_dim is None or model.head_dim >= 1, "model.head_dim", "must be >= 1 or null")
    if model.init_weights is not None:
        _require(
            is_mit(model.arch),
            "model.init_weights",
            f"SegFormer weights start MiT encoders only (model.arch is {model.arch!r})",
        )
        if check_paths:
            _require(Path(model.init_weights).is_file(), "model.init_weights", "file not found")


MAX_SAMPLES = 10**9
"""More samples than any dataset of the field holds (SSL4EO-S12: 251,079 locations x 4 seasons)."""


def _check_numbers(cfg: PretrainConfig) -> None:
    """Every number's range, before any work: a negative rate, a zero interval or an absurd length fails here."""
    o, t, d = cfg.optim, cfg.trainer, cfg.data
    ranges: list[tuple[str, float, bool, str]] = [
        ("optim.lr_weights", o.lr_weights, o.lr_weights > 0, "> 0"),
        ("optim.lr_biases", o.lr_biases, o.lr_biases >= 0, ">= 0"),
        ("optim.adamw_lr", o.adamw_lr, o.adamw_lr > 0, "> 0"),
        ("optim.momentum", o.momentum, 0 <= o.momentum < 1, "in [0, 1)"),
        ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
        ("optim.adamw_weight_decay", o.adamw_weight_decay, o.adamw_weight_decay >= 0, ">= 0"),
        ("optim.warmup_epochs", o.warmup_epochs, o.warmup_epochs >= 0, ">= 0"),
        ("trainer.log_every_n_steps", t.log_every_n_steps, t.log_every_n_steps >= 1, ">= 1"),
        ("trainer.rank_every", t.rank_every, t.rank_every >= 1, ">= 1"),
        (
            "trainer.checkpoint_every",
            t.checkpoint_every or 0,
            t.checkpoint_every is None or t.checkpoint_every >= 1,
            ">= 1, or null (epoch ends only)",
        ),
        ("trainer.num_nodes", t.num_nodes, t.num_nodes >= 1, ">= 1"),
        ("trainer.seed", t.seed, t.seed >= 0, ">= 0"),
        ("data.length", d.length, 1 <= d.length <= MAX_SAMPLES, f"in 1..{MAX_SAMPLES:,}"),
        ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0 (0: load in the training process)"),
    ]
    if DATASETS[d.dataset].sized:  # their readers cut tiles of image_size: a larger crop would upsample them
        ranges.append(
            ("data.image_size", d.image_size, d.image_size >= d.crop_size, f">= data.crop_size ({d.crop_size})")
        )
    for name, value, ok, rule in ranges:
        _require(ok, name, f"must be {rule}, got {value}")


def check_choices(obj: Any, where: str = "") -> None:
    """Every ``Literal[...]`` field of dataclass ``obj``, nested ones included, holds one of its values.

    The one check of every enumeration of every config kind (the loader applies the same rule while reading YAML;
    this catches values set in Python). Raises ``ConfigError`` naming the field and the choices.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        name = f"{where}.{f.name}" if where else f.name
        if typing.get_origin(hint) is typing.Literal:
            _require(value in typing.get_args(hint), name, f"{value!r} is not one of {list(typing.get_args(hint))}")
        elif dataclasses.is_dataclass(value):
            check_choices(value, name)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    check_choices(item, f"{name}[{i}]")


def _require(ok: bool, name: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"config field `{name}`: {why}")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------------------------
# Building a PretrainConfig from YAML and overrides


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Defaults, then the YAML file, then ``a.b=value`` overrides (values parsed as YAML).

    Raises:
        ConfigError: On unknown keys, wrong types, bad override syntax or invalid values.

    """
    return load_dataclass(PretrainConfig, path, overrides)


def load_dataclass(cls: type, path: str | Path | None = None, overrides: list[str] | None = None) -> Any:
    """Config dataclass ``cls`` from defaults, an optional YAML file and ``a.b=value`` overrides (YAML values).

    Raises:
        ConfigError: On a missing file, unknown keys, wrong types or bad override syntax.

    """
    return _build(cls, {} if path is None else _read_yaml(Path(path)), overrides)


def _build(cls: type, raw: dict[str, Any], overrides: list[str] | None) -> Any:
    """``cls`` from the plain data of a file with the ``a.b=value`` overrides applied."""
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected the form field=value (section.field=value)")
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: `{p}` is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML (quote it)") from None
    return from_dict(cls, raw, "")


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {first[key] + 1}): merge the two",
                    key_node.start_mark,
                )  # fmt: skip
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file.

    Raises:
        ConfigError: Missing, unreadable, not YAML (with line and column), or not a mapping.

    """
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml.load(path.read_text(), Loader=_UniqueKeys) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: not valid YAML ({what})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: cannot be read ({err})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return loaded


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from nested plain data, naming the field of any mismatch."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config field `{where or 'top level'}`: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"config field `{prefix}{unknown[0]}` is unknown; known fields here: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}" if where else name) for name, value in raw.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"config section `{where or 'top level'}`: {err}") from None
    return obj


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        _require(value in args, where, f"{value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config field `{where}`: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config field `{where}`: expected a mapping, got {value!r}")
        return {_convert(args[0], k, where): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"config field `{where}`: expected {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=True))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    if hint is Any:
        return value
    raise ConfigError(f"config field `{where}`: expected {getattr(hint, '__name__', hint)}, got {value!r}")


# --------------------------------------------------------------------------------------------------------------
# Every kind of config decur reads


_KINDS: dict[str, type] = {"pretrain": PretrainConfig}


def register_kind(kind: str, cls: type) -> None:
    """Make ``cls`` (a dataclass with ``validate(check_paths)`` raising ``ConfigError``) the config of ``kind``.

    Each kind registers where it is defined: ``pretrain`` here; ``transfer``, ``sweep``, ``experiment`` and
    ``convergence`` in ``decur.evaluate`` (registered on ``import decur.evaluate``, which imports no torch).
    """
    _KINDS[kind] = cls


def config_kinds() -> dict[str, type]:
    """The config class of every registered kind, in the order ``detect_kind`` tries them."""
    return dict(_KINDS)


def detect_kind(path: str | Path) -> str:
    """The kind of the config file at ``path``.

    The first of ``config_kinds`` whose fields hold every top-level key (an empty file is a pretraining config).

    Raises:
        ConfigError: The file is missing, not YAML, or its keys fit no kind (naming the unknown keys).

    """
    return _detect(set(_read_yaml(Path(path))), path)


def _detect(keys: set[str], path: str | Path) -> str:
    fields = {kind: {f.name for f in dataclasses.fields(cls)} for kind, cls in config_kinds().items()}
    for kind, names in fields.items():
        if keys <= names:
            return kind
    best = min(fields, key=lambda k: len(keys - fields[k]))
    raise ConfigError(
        f"config file {path}: fits no kind of decur config (closest {best!r}, whose unknown "
        f"fields are {sorted(keys - fields[best])}); pass --kind to name it"
    )


def load_any(path: str | Path, kind: str | None = None, overrides: list[str] | None = None) -> tuple[str, Any]:
    """``(kind, config)`` of any decur config file (kind detected unless given); not validated yet."""
    raw = _read_yaml(Path(path))
    kind = kind or _detect(set(raw), path)
    kinds = config_kinds()
    if kind not in kinds:
        raise ConfigError(
            f"config kind {kind!r} is not one of {list(kinds)} (the evaluation kinds register on import decur.evaluate)"
        )
    return kind, _build(kinds[kind], raw, overrides)
