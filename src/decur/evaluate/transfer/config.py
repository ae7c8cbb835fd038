"""The transfer config (``TransferConfig``): every field, its defaults by task, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decur.catalog import PRECISIONS, TRANSFORM_RULES, is_mit
from decur.config import ConfigError, EngineConfig, check_choices, register_kind
from decur.datasets import DATASETS as SPECS
from decur.datasets import PLUGINS_HINT, datasets, unread_fields

TASKS = ("classification", "segmentation", "retrieval")
MODELS = {"classification": ("late_fusion",), "segmentation": ("fcn", "cmx"), "retrieval": ("embedding",)}
"""Transfer models per task; the first is the default."""
PROTOCOLS = ("linear", "finetune")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "poly", "constant")
RESUMABLE_CHANGES = (
    "trainer.devices",
    "trainer.accelerator",
    "trainer.num_nodes",
    "trainer.strategy",
    "num_workers",
    "root",
    "checkpoint_every",
    "trainer.tensorboard",
)


@dataclass
class TransferOptimConfig:
    """Optimiser and schedule of one transfer run (resolved defaults, see ``TransferConfig``)."""

    name: str
    """``sgd`` (momentum 0.9) or ``adamw``."""
    lr: float
    weight_decay: float
    schedule: str
    """``step`` (x0.1 at 60 % and 80 % of the epochs), ``poly`` (``(1 - step/total)^0.9``) or ``constant``."""
    warmup_epochs: float = 0.0
    """Linear warm-up ``(step + 1) / warmup_steps`` multiplied into the schedule over this many epochs."""
    layer_decay: float = 1.0
    """Layer-wise learning-rate decay of ViT encoders (``decur.optim.layer_decay_scales``); 1 = none."""


@dataclass
class TransferConfig:
    """A ``decur transfer`` config: which encoders, which data, which task and protocol (YAML keys = fields)."""

    task: str = "classification"
    """``classification`` (late fusion, mAP), ``segmentation`` (FCN or CMX, mIoU) or ``retrieval`` (cross-modal
    recall@k / median rank of a pretrained run's embeddings on the test split; nothing is trained)."""
    dataset: str = "synthetic"
    """``synthetic`` (labels and masks of the built-in data), ``bigearthnet`` (classification),
    ``geonrw``, ``sunrgbd`` or ``nyuv2`` (segmentation), at ``root``."""
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    train_cities: list[str] | None = None
    """GeoNRW: the city folders of the training set (default: the release's train cities)."""
    test_cities: list[str] | None = None
    """GeoNRW: the city folders of the test set (default: the release's test cities)."""
    pretrained: str | None = None
    """The encoders to start from: a decur run folder or checkpoint, a decur export (``decur export`` / ``decur
    import``), the DeCUR release's checkpoints (joint or one backbone), torchgeo's DeCUR weights, a timm or SegFormer
    state dict (``decur.weights.formats``); ``None`` = randomly initialised encoders ("Rand. Init."; fine-tuned
    on 100 % of the labels this is the paper's "Supervised" row, reported as ``setting: supervised``)."""
    pretrained_modalities: list[str] | None = None
    """Names of the encoders in ``pretrained``, in file order (a joint release file: backbone_1, backbone_2);
    default the dataset's modalities in order (s1, s2 / rgb, dem / rgb, hha), or by band count for one encoder."""
    s2_bands: int | None = None
    """BigEarthNet's Sentinel-2 input: 13 (an all-zero B10 inserted after B09, the paper's choice for L1C encoders)
    or 12 (the L2A bands as stored, for 12-band encoders); default the band count of the pretrained ``s2`` encoder
    (its card or weights), else 13."""
    input_transform: str | None = None
    """How stored pixels become encoder input: ``decur``, ``ssl4eo_release`` or ``torchgeo``
    (``decur.data.transforms``); default the one the weights were trained with (their run or card; the
    release's for the release's and torchgeo's Sentinel weights; ``decur`` for random init)."""
    model: str | None = None
    """``late_fusion`` (classification), ``fcn`` (segmentation, ResNets, the default) or ``cmx`` (segmentation,
    two MiT branches with rectification and fusion: ``decur.models.CMX``)."""
    arch: str = "resnet18"
    """Encoder architecture when ``pretrained`` is ``None`` (``mit_b0`` ... ``mit_b5`` for CMX)."""
    segformer_weights: str | None = None
    """With ``pretrained: null`` and a MiT: a SegFormer ImageNet checkpoint (``mit_b2.pth``) that every branch starts
    from, the paper's "CMX (Zhang et al.)" baseline rows; never downloaded."""
    decoder_dim: int = 512
    """CMX: width of the all-MLP decoder (CMX uses 512)."""
    adapt_bn: bool = False
    """With ``pretrained: null``: re-estimate the random encoders' BatchNorm statistics on the training images
    before training (the fair random floor; otherwise BatchNorm keeps its default mean 0 / variance 1)."""
    modalities: list[str] | None = None
    """Subset of modalities to use (missing-modality evaluation); default all."""
    protocol: str | None = None
    """``linear`` (frozen encoders) or ``finetune``; default linear for classification, finetune for segmentation."""
    label_fraction: float = 1.0
    """Share of the training set that is labelled: exactly ``round(fraction · n)`` samples (at least 1), drawn
    without replacement from a generator seeded by the seed, the same for every method."""
    epochs: int = 30
    batch_size: int = 128
    """Global batch size (split over processes)."""
    lr: float | None = None
    """Default: classification 0.5 (linear) / 0.05 (finetune); segmentation 1e-4 (AdamW) / 0.01 (SGD)."""
    seeds: list[int] | None = None
    weight_decay: float | None = None
    """Default: classification 0; segmentation 0.01 with AdamW (GeoNRW), 1e-5 with SGD (the paper's RGB-D FCN)."""
    optimizer: str | None = None
    """``sgd`` (momentum 0.9) or ``adamw``; default SGD for classification, AdamW for segmentation."""
    schedule: str | None = None
    """``step`` (x0.1 at 60 % and 80 % of the epochs), ``poly`` or ``constant``; default step for classification,
    constant for segmentation."""
    iterations: int | None = None
    """Optimiser steps instead of ``epochs`` (cycling the data; the RGB-D FCN uses 40k)."""
    augment: bool = True
    """Training augmentation (random resized crop + horizontal flip); false for ablations."""
    crop_size: int | list[int] | None = None
    """Segmentation training crop side, or ``[height, width]``; default the dataset's (synthetic: its image size,
    GeoNRW 250, RGB-D 480)."""
    train_scales: list[float] | None = None
    """Segmentation: SegFormer/CMX augmentation instead of random resized crops: rescale by a factor drawn from this
    list, random ``crop_size`` window (padded with the mean and the ignore index), horizontal flip."""
    warmup_epochs: float = 0.0
    """Linear learning-rate warm-up over this many epochs, multiplied into the schedule (CMX: 10)."""
    layer_decay: float = 1.0
    """Fine-tuning ViT encoders: layer-wise learning-rate decay, block ``i`` of ``L`` at ``layer_decay ** (L - i)``
    times ``lr`` (BEiT / MAE fine-tuning use 0.65-0.75); 1 = every layer at ``lr``."""
    cache_features: bool = True
    """Linear classification: train the head on features extracted once (un-augmented)."""
    eval_batch_size: int | None = None
    """Default: ``batch_size`` for classification, 1 for segmentation (full-size images of any size)."""
    num_workers: int = 2
    checkpoint_every: int | None = None
    """Also write ``last.ckpt`` every this many steps (iteration-based schedules; default: every epoch only)."""
    trainer: EngineConfig = field(default_factory=EngineConfig)
    """Accelerator, devices, nodes, strategy, precision (``trainer.devices=2`` ...)."""
    train_samples: int = 2048
    """Synthetic only: scenes in the training and test sets."""
    test_samples: int = 1024
    image_size: int = 64
    """Synthetic only: scene size."""

    @property
    def resolved_protocol(self) -> str:
        """The protocol, defaulted by task."""
        return self.protocol or ("linear" if self.task == "classification" else "finetune")

    def optim(self) -> TransferOptimConfig:
        """The optimiser settings with every default resolved."""
        classification = self.task == "classification"
        name = self.optimizer or ("sgd" if classification else "adamw")
        if classification:
            lr = 0.5 if self.resolved_protocol == "linear" else 0.05
            wd = 0.0
        else:
            lr, wd = (0.01, 1e-5) if name == "sgd" else (1e-4, 0.01)
        return TransferOptimConfig(
            name,
            self.lr if self.lr is not None else lr,
            self.weight_decay if self.weight_decay is not None else wd,
            self.schedule or ("step" if classification else "constant"),
            self.warmup_epochs,
            self.layer_decay,
        )

    @property
    def resolved_model(self) -> str:
        """The transfer model, defaulted by task."""
        return self.model or MODELS[self.task][0]

    def validate(self, check_paths: bool = True) -> TransferConfig:
        """Check every field before any data is read or model built; raises ``ConfigError`` naming it."""
        check_choices(self)
        self._validate_task(check_paths)
        self._validate_training()
        available = SPECS[self.dataset].modalities
        unknown = sorted(set(self.modalities or []) - set(available))
        if unknown or self.modalities == []:
            raise ConfigError(
                f"transfer config field `modalities`: {unknown or '[]'} not among the dataset's "
                f"modalities {list(available)}"
            )
        if SPECS[self.dataset].needs_root:
            if self.root is None:
                raise ConfigError(f"transfer config field `root`: dataset {self.dataset!r} needs its folder")
            if check_paths and not Path(self.root).is_dir():
                raise ConfigError(f"transfer config field `root`: {self.root} does not exist or is no folder")
        if self.input_transform is not None:
            _allowed("input_transform", self.input_transform, TRANSFORM_RULES)
        if self.pretrained_modalities is not None:
            if self.pretrained is None or not self.pretrained_modalities:
                raise ConfigError(
                    "transfer config field `pretrained_modalities`: names the encoders of "
                    "`pretrained` in file order; give a non-empty list with `pretrained`"
                )
        for name, why in unread_fields(self, SPECS[self.dataset], self.dataset, prefix=""):
            raise ConfigError(f"transfer config field `{name}`: {why}")
        if self.s2_bands is not None and self.s2_bands not in (12, 13):
            raise ConfigError(f"transfer config field `s2_bands`: 12 or 13, got {self.s2_bands}")
        if self.pretrained is not None and check_paths:
            if "s2_bands" in SPECS[self.dataset].fields and self.s2_bands is None:
                self.s2_bands = _pretrained_s2_bands(self.pretrained, self.pretrained_modalities)
            check_pretrained(self.pretrained, self.pretrained_modalities, self.task, self.dataset_bands())
        _allowed("trainer.precision", self.trainer.precision, PRECISIONS)
        return self

    def _validate_task(self, check_paths: bool) -> None:
        """Task, dataset and model fit together."""
        _allowed("task", self.task, TASKS)
        names = datasets("transfer")
        if self.dataset not in names:
            raise ConfigError(
                f"transfer config field `dataset`: {self.dataset!r} is not one of {list(names)}{PLUGINS_HINT}"
            )
        tasks = SPECS[self.dataset].transfer_tasks
        if self.task not in tasks:
            fit = [n for n in names if self.task in SPECS[n].transfer_tasks]
            what = "masks" if self.task == "segmentation" else "multi-labels"
            raise ConfigError(
                f"transfer config field `dataset`: {self.dataset!r} has no {what}; use one of {fit} for {self.task}"
            )
        if self.task == "retrieval" and self.pretrained is None:
            raise ConfigError(
                "transfer config field `pretrained`: retrieval compares a pretrained run's embeddings; "
                "give a run folder or checkpoint"
            )
        if self.model is not None:
            _allowed("model", self.model, MODELS[self.task])
        if self.resolved_model == "cmx":
            self._validate_cmx(check_paths)

    def _validate_training(self) -> None:
        """Protocol, optimiser, schedule, counts, crops, cities, seeds, warm-up and layer decay."""
        if self.protocol is not None:
            _allowed("protocol", self.protocol, PROTOCOLS)
        if self.optimizer is not None:
            _allowed("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule is not None:
            _allowed("schedule", self.schedule, SCHEDULES)
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"transfer config field `label_fraction`: must lie in (0, 1], got {self.label_fraction}")
        for name in ("epochs", "batch_size", "iterations", "eval_batch_size", "checkpoint_every", "decoder_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"transfer config field `{name}`: must be >= 1, got {value}")
        crop = [self.crop_size] if isinstance(self.crop_size, int) else self.crop_size
        if crop is not None and (len(crop) not in (1, 2) or min(crop) < 1):
            raise ConfigError(
                f"transfer config field `crop_size`: a side >= 1 or [height, width], got {self.crop_size}"
            )
        if self.train_scales is not None and (not self.train_scales or min(self.train_scales) <= 0):
            raise ConfigError(f"transfer config field `train_scales`: positive factors, got {self.train_scales}")
        for name in ("train_cities", "test_cities"):
            if getattr(self, name) == []:
                raise ConfigError(
                    f"transfer config field `{name}`: a non-empty list of city folders, or null for the release's"
                )
        if self.seeds is not None and not self.seeds:
            raise ConfigError(
                "transfer config field `seeds`: an empty list runs nothing; give e.g. [0] or leave it out"
            )
        numbers = [  # (field, value, in range, the range)
            ("warmup_epochs", self.warmup_epochs, self.warmup_epochs >= 0, ">= 0"),
            ("lr", self.lr, self.lr is None or self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay, self.weight_decay is None or self.weight_decay >= 0, ">= 0"),
            ("num_workers", self.num_workers, self.num_workers >= 0, ">= 0 (0: load in the training process)"),
            ("train_samples", self.train_samples, self.train_samples >= 1, ">= 1"),
            ("test_samples", self.test_samples, self.test_samples >= 1, ">= 1"),
            ("image_size", self.image_size, self.image_size >= 8, ">= 8"),
            ("trainer.log_every_n_steps", self.trainer.log_every_n_steps, self.trainer.log_every_n_steps >= 1, ">= 1"),
        ]
        for name, value, ok, rule in numbers:
            if not ok:
                raise ConfigError(f"transfer config field `{name}`: must be {rule}, got {value}")
        if not 0 < self.layer_decay <= 1 or (self.layer_decay != 1 and self.resolved_protocol != "finetune"):
            raise ConfigError(
                f"transfer config field `layer_decay`: a factor in (0, 1] for protocol finetune "
                f"(1 = off), got {self.layer_decay} with protocol {self.resolved_protocol}"
            )

    def dataset_bands(self) -> dict[str, int]:
        """The modalities this run reads and their band counts (a dataset's optional ones only when asked for)."""
        spec, asked = SPECS[self.dataset], self.modalities or []
        bands = {m: c for m, c in spec.modalities.items() if m not in spec.optional or m in asked}
        if self.s2_bands is not None:  # (only datasets reading it accept it)
            bands["s2"] = self.s2_bands
        return bands

    def _validate_cmx(self, check_paths: bool) -> None:
        used = self.modalities or list(self.dataset_bands())
        if len(used) != 2:
            raise ConfigError(
                f"transfer config field `modalities`: CMX fuses two modalities (RGB first), got {used}; "
                "use model: fcn for one"
            )
        if self.pretrained is None and not is_mit(self.arch):
            raise ConfigError(
                f"transfer config field `arch`: CMX is built on MiT encoders (mit_b0 ... mit_b5), got {self.arch!r}"
            )
        if self.segformer_weights is not None:
            if self.pretrained is not None:
                raise ConfigError(
                    "transfer config field `segformer_weights`: the branches start from `pretrained`; "
                    "give one of the two"
                )
            if check_paths and not Path(self.segformer_weights).is_file():
                raise ConfigError(f"transfer config field `segformer_weights`: {self.segformer_weights} is not a file")

    def setting(self) -> str:
        """``pretrained``, ``supervised`` (random init, fine-tuned on all labels) or ``random_init``."""
        if self.pretrained:
            return "pretrained"
        full = self.resolved_protocol == "finetune" and self.label_fraction == 1.0
        return "supervised" if full else "random_init"


def check_pretrained(
    pretrained: str, names: list[str] | None = None, task: str = "classification", bands: dict[str, int] | None = None
) -> None:
    """Refuse a ``pretrained`` value decur cannot start from, before any data are read.

    Raises:
        ConfigError: Naming the path, what it is, and what is accepted.

    """
    from decur.errors import DecurError  # (with the weights reader below)
    from decur.weights import read_pretrained  # (torch: validate stays light without weights)

    try:
        pre = read_pretrained(pretrained, names, bands)
    except DecurError as err:
        raise ConfigError(f"transfer config field `pretrained`: {err}") from None
    if task == "retrieval" and pre.kind != "decur-run":
        raise ConfigError(
            f"transfer config field `pretrained`: retrieval compares a decur run's embeddings; "
            f"{pretrained} is a {pre.kind} file"
        )


def _pretrained_s2_bands(pretrained: str, names: list[str] | None) -> int | None:
    """The band count of the pretrained ``s2`` encoder when it has 12 (L2A), else ``None`` (13, the default)."""
    from decur.errors import DecurError  # (with the weights reader below)
    from decur.weights import read_pretrained  # (torch: validate stays light without weights)

    try:
        bands = read_pretrained(pretrained, names).bands
    except DecurError:
        return None  # check_pretrained names what is wrong with the file
    return 12 if bands.get("s2") == 12 else None


register_kind("transfer", TransferConfig)


def _allowed(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"transfer config field `{name}`: {value!r} is not one of {list(allowed)}")


TransferRun = TransferConfig
"""The name of ``TransferConfig`` before 2026-12-07, kept for scripts that import it."""
