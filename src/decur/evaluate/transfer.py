"""``decur transfer``: classification and segmentation transfer on the training engine, one run folder per seed.

Classification is the paper's BigEarthNet-MM protocol: late fusion (pooled features of every modality concatenated,
one linear layer), ``MultiLabelSoftMarginLoss``, SGD with momentum 0.9 and no weight decay, lr 0.5 (linear
probing) or 0.05 (fine-tuning), divided by 10 at 60 % and 80 % of the epochs; training images get a random resized
crop (scale 0.8-1) and a horizontal flip. Segmentation is the paper's FCN: AdamW lr 1e-4 / weight decay 0.01 (GeoNRW)
or SGD lr 0.01 / weight decay 1e-5 with poly decay over 40k iterations (RGB-D); training takes random resized crops
(scale 0.2-1) of ``crop_size`` plus a horizontal flip, identical for every modality and the mask (nearest).
Evaluation images are never augmented; segmentation evaluates every test image at its full size, one image per
step by default (SUN-RGBD's images differ in size; no padding enters the scores).

Linear probing of classification extracts the frozen, eval-mode encoders' features once per seed (un-augmented,
through ``trainer.predict``: on the accelerator, in the run's precision), then trains the head on the cached
features; ``cache_features: false`` runs the encoders every step instead (with training augmentation).

Layout of ``--output``: ``seed<k>/`` per seed (``config.yaml``, ``metrics.csv``, ``checkpoints/last.ckpt``,
``results.json``) and the aggregate ``results.json`` (mean and std over seeds). Re-running the same command
resumes an interrupted seed from its checkpoint and skips finished ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from decur.augment import ViewPipeline
from decur.config import ConfigError, EngineConfig
from decur.evaluate.metrics import label_subset
from decur.evaluate.module import OptimSettings, TransferModule
from decur.train.engine import run_lock

if TYPE_CHECKING:
    from decur.evaluate.start import Start

TASKS = ("classification", "segmentation", "retrieval")
MODELS = {"classification": ("late_fusion",), "segmentation": ("fcn", "cmx"), "retrieval": ("embedding",)}
"""Transfer models per task; the first is the default."""
DATASETS = {
    "synthetic": {"optical": 13, "sar": 2, "elevation": 1},
    "bigearthnet": {"s1": 2, "s2": 13},
    "geonrw": {"rgb": 3, "dem": 3},
    "sunrgbd": {"rgb": 3, "hha": 3},
    "nyuv2": {"rgb": 3, "hha": 3},
}
"""Transfer datasets and the modalities (band counts) they provide."""
SEGMENTATION_DATASETS = ("geonrw", "sunrgbd", "nyuv2")
PROTOCOLS = ("linear", "finetune")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "poly", "constant")
RESUMABLE_CHANGES = ("trainer.devices", "trainer.accelerator", "trainer.num_nodes", "trainer.strategy", "num_workers",
                     "root")  # fmt: skip


@dataclass
class TransferRun:
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
    state dict (:mod:`decur.weights.formats`); ``None`` = randomly initialised encoders ("Rand. Init."; fine-tuned
    on 100 % of the labels this is the paper's "Supervised" row, reported as ``setting: supervised``)."""
    pretrained_modalities: list[str] | None = None
    """Names of the encoders in ``pretrained``, in file order (a joint release file: backbone_1, backbone_2);
    default the dataset's modalities in order (s1, s2 / rgb, dem / rgb, hha), or by band count for one encoder."""
    input_transform: str | None = None
    """How stored pixels become encoder input: ``decur``, ``ssl4eo_release`` or ``torchgeo``
    (:mod:`decur.data.transforms`); default the one the weights were trained with (their run or card; the
    release's for the release's and torchgeo's Sentinel weights; ``decur`` for random init)."""
    model: str | None = None
    """``late_fusion`` (classification), ``fcn`` (segmentation, ResNets, the default) or ``cmx`` (segmentation,
    two MiT branches with rectification and fusion: :class:`decur.models.CMX`)."""
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

    def optim(self) -> OptimSettings:
        """The optimiser settings with every default resolved."""
        classification = self.task == "classification"
        name = self.optimizer or ("sgd" if classification else "adamw")
        if classification:
            lr = 0.5 if self.resolved_protocol == "linear" else 0.05
            wd = 0.0
        else:
            lr, wd = (0.01, 1e-5) if name == "sgd" else (1e-4, 0.01)
        return OptimSettings(
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

    def validate(self, check_paths: bool = True) -> TransferRun:
        """Check every field before any data is read or model built; raises :class:`ConfigError` naming it."""
        _allowed("task", self.task, TASKS)
        _allowed("dataset", self.dataset, tuple(DATASETS))
        if self.task == "segmentation" and self.dataset not in (*SEGMENTATION_DATASETS, "synthetic"):
            raise ConfigError(f"transfer config field `dataset`: {self.dataset!r} has no masks; use one of "
                              f"{['synthetic', *SEGMENTATION_DATASETS]} for segmentation")  # fmt: skip
        if self.task == "retrieval" and self.pretrained is None:
            raise ConfigError("transfer config field `pretrained`: retrieval compares a pretrained run's embeddings; "
                              "give a run folder or checkpoint")  # fmt: skip
        if self.task == "classification" and self.dataset not in ("synthetic", "bigearthnet"):
            raise ConfigError(f"transfer config field `dataset`: {self.dataset!r} has no multi-labels; use "
                              "synthetic or bigearthnet for classification")  # fmt: skip
        if self.model is not None:
            _allowed("model", self.model, MODELS[self.task])
        if self.resolved_model == "cmx":
            self._validate_cmx(check_paths)
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
            raise ConfigError(f"transfer config field `crop_size`: a side >= 1 or [height, width], "
                              f"got {self.crop_size}")  # fmt: skip
        if self.train_scales is not None and (not self.train_scales or min(self.train_scales) <= 0):
            raise ConfigError(f"transfer config field `train_scales`: positive factors, got {self.train_scales}")
        for name in ("train_cities", "test_cities"):
            if getattr(self, name) is not None and (self.dataset != "geonrw" or not getattr(self, name)):
                raise ConfigError(f"transfer config field `{name}`: a non-empty list of GeoNRW city folders "
                                  f"(dataset is {self.dataset!r})")  # fmt: skip
        if self.seeds is not None and not self.seeds:
            raise ConfigError(
                "transfer config field `seeds`: an empty list runs nothing; give e.g. [0] or leave it out"
            )
        if self.warmup_epochs < 0:
            raise ConfigError(f"transfer config field `warmup_epochs`: must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.layer_decay <= 1 or (self.layer_decay != 1 and self.resolved_protocol != "finetune"):
            raise ConfigError(f"transfer config field `layer_decay`: a factor in (0, 1] for protocol finetune "
                              f"(1 = off), got {self.layer_decay} with protocol {self.resolved_protocol}")  # fmt: skip
        available = DATASETS[self.dataset]
        unknown = sorted(set(self.modalities or []) - set(available))
        if unknown or self.modalities == []:
            raise ConfigError(f"transfer config field `modalities`: {unknown or '[]'} not among the dataset's "
                              f"modalities {list(available)}")  # fmt: skip
        if self.dataset != "synthetic":
            if self.root is None:
                raise ConfigError(f"transfer config field `root`: dataset {self.dataset!r} needs its folder")
            if check_paths and not Path(self.root).is_dir():
                raise ConfigError(f"transfer config field `root`: {self.root} does not exist or is no folder")
        if self.input_transform is not None:
            from decur.data.transforms import RULES

            _allowed("input_transform", self.input_transform, RULES)
        if self.pretrained_modalities is not None:
            if self.pretrained is None or not self.pretrained_modalities:
                raise ConfigError("transfer config field `pretrained_modalities`: names the encoders of "
                                  "`pretrained` in file order; give a non-empty list with `pretrained`")  # fmt: skip
        if self.pretrained is not None and check_paths:
            check_pretrained(self.pretrained, self.pretrained_modalities, self.task, self.dataset_bands())
        from decur.train.engine import PRECISIONS

        _allowed("trainer.precision", self.trainer.precision, PRECISIONS)
        return self

    def dataset_bands(self) -> dict[str, int]:
        """The modalities this run reads and their band counts (synthetic's elevation only when asked for)."""
        bands = DATASETS[self.dataset]
        if self.dataset == "synthetic" and "elevation" not in (self.modalities or []):
            bands = {m: c for m, c in bands.items() if m != "elevation"}
        return dict(bands)

    def _validate_cmx(self, check_paths: bool) -> None:
        from decur.models.mit import is_mit

        used = self.modalities or [m for m in DATASETS[self.dataset] if m != "elevation"]  # synthetic's optional third
        if len(used) != 2:
            raise ConfigError(f"transfer config field `modalities`: CMX fuses two modalities (RGB first), got {used}; "
                              "use model: fcn for one")  # fmt: skip
        if self.pretrained is None and not is_mit(self.arch):
            raise ConfigError(f"transfer config field `arch`: CMX is built on MiT encoders (mit_b0 ... mit_b5), "
                              f"got {self.arch!r}")  # fmt: skip
        if self.segformer_weights is not None:
            if self.pretrained is not None:
                raise ConfigError("transfer config field `segformer_weights`: the branches start from `pretrained`; "
                                  "give one of the two")  # fmt: skip
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
    from decur.errors import DecurError
    from decur.weights import read_pretrained

    try:
        pre = read_pretrained(pretrained, names, bands)
    except DecurError as err:
        raise ConfigError(f"transfer config field `pretrained`: {err}") from None
    if task == "retrieval" and pre.kind != "decur-run":
        raise ConfigError(f"transfer config field `pretrained`: retrieval compares a decur run's embeddings; "
                          f"{pretrained} is a {pre.kind} file")  # fmt: skip


def _allowed(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"transfer config field `{name}`: {value!r} is not one of {list(allowed)}")


@dataclass
class TransferData:
    """Train and test sets of a transfer run, with what the models need to know about them."""

    train: Dataset[dict[str, Tensor]]
    test: Dataset[dict[str, Tensor]]
    bands: dict[str, int]
    stats: dict[str, tuple[list[float], list[float]]]
    ignore_index: int | None
    num_classes: int
    crop_size: int
    raw: bool = False
    """The readers return stored values (S2 DN, S1 dB) rather than decur's preprocessed ones."""


def load_data(run: TransferRun) -> TransferData:
    """The datasets named by ``run`` (validated), band statistics, ignore index and class count."""
    from decur.data import BigEarthNetMM, BigEarthNetV2, GeoNRW, RGBDSegmentation
    from decur.data.bigearthnet import is_bigearthnet_v2
    from decur.data.build import band_stats
    from decur.data.synthetic import SyntheticMultimodal

    bands = run.dataset_bands()
    raw = run.task != "retrieval"  # raw trees give stored values (DN, dB); the input transform follows
    if run.dataset == "synthetic":
        third = "elevation" in bands
        train: Dataset = SyntheticMultimodal(run.train_samples, run.image_size, seed=10_000, elevation=third)
        test: Dataset = SyntheticMultimodal(run.test_samples, run.image_size, seed=20_000, elevation=third)
        if run.task == "classification":
            classes = int(train[0]["label"].numel())
        else:
            classes = max(2, 1 + max(int(test[i]["mask"].max()) for i in range(min(run.test_samples, 64))))
        return TransferData(train, test, bands, band_stats(train, list(bands)), None, classes, run.image_size)
    root = str(run.root)
    used = list(run.modalities or bands)  # read only the modalities the run uses (less I/O, nothing uncropped)
    bands = {m: c for m, c in bands.items() if m in used}
    if run.dataset == "bigearthnet":
        from decur.data.pack_bigearthnet import PackedBigEarthNet, is_packed_bigearthnet

        if is_packed_bigearthnet(root):  # `decur data pack --dataset bigearthnet[_v2]`
            p_tr = PackedBigEarthNet(root, run.train_split, used)
            p_te = PackedBigEarthNet(root, run.test_split, used)
            return TransferData(p_tr, p_te, bands, p_tr.stats, None, 19, 120)
        if is_bigearthnet_v2(root):  # the v2.0 (reBEN) release tree: metadata.parquet + BigEarthNet-S1/-S2
            v_tr = BigEarthNetV2(root, run.train_split, modalities=used, raw=raw)
            v_te = BigEarthNetV2(root, run.test_split, modalities=used, raw=raw)
            return TransferData(v_tr, v_te, bands, v_tr.stats, None, 19, 120, raw)
        tr = BigEarthNetMM(root, run.train_split, modalities=used, raw=raw)
        te = BigEarthNetMM(root, run.test_split, modalities=used, raw=raw)
        return TransferData(tr, te, bands, tr.stats, None, 19, 120, raw)
    if run.dataset == "geonrw":
        tr_c, te_c = (tuple(c) if c is not None else None for c in (run.train_cities, run.test_cities))
        g_tr = GeoNRW(root, "train", cities=tr_c, modalities=used)
        g_te = GeoNRW(root, "test", cities=te_c, modalities=used)
        return TransferData(g_tr, g_te, bands, band_stats(g_tr, list(bands)), 0, 11, 250)
    classes = 37 if run.dataset == "sunrgbd" else 40
    r_tr = RGBDSegmentation(root, run.train_split, classes, modalities=used)
    r_te = RGBDSegmentation(root, run.test_split, classes, modalities=used)
    return TransferData(r_tr, r_te, bands, band_stats(r_tr, list(bands), samples=64), 0, classes + 1, 480)


def run_transfer(run: TransferRun, output: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate once per seed (each in ``output/seed<k>``); mean and std over seeds.

    Args:
        run: The transfer config (validated here).
        output: Folder for the seed runs and the aggregate ``results.json``.
        progress: Show Lightning's progress bar.

    Returns:
        The aggregate written to ``output/results.json``.

    Raises:
        ConfigError: An invalid field, or a seed folder that holds a run with another config.

    """
    run.validate()
    output = Path(output)
    with run_lock(output):
        return _run_all(run, output, progress)


def _run_all(run: TransferRun, output: Path, progress: bool) -> dict[str, Any]:
    from decur.evaluate.start import Transformed, starting_point
    from decur.train.engine import is_launcher

    data = load_data(run)
    if run.task == "retrieval":
        return _run_retrieval(run, data, output, progress)
    start = starting_point(run, data)
    if is_launcher():
        print(start.describe())
    data = dataclasses.replace(
        data, train=Transformed(data.train, start.transforms), test=Transformed(data.test, start.transforms)
    )
    results = [_run_seed(run, seed, data, start, output / f"seed{seed}", progress) for seed in run.seeds or [0]]
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(run),
        "protocol": run.resolved_protocol,
        "setting": run.setting(),
        "input_transforms": {m: t.to_card() for m, t in start.transforms.items()},
        "pretrained_kind": start.pretrained.kind if start.pretrained else None,
        "runs": results,
    }
    for key, value in results[0]["test"].items():
        if isinstance(value, float):
            values = torch.tensor([r["test"][key] for r in results], dtype=torch.float64)
            summary[key] = {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0}
    if results[0].get("rank", 0) == 0:
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def _run_seed(
    run: TransferRun, seed: int, data: TransferData, start: Start, folder: Path, progress: bool
) -> dict[str, Any]:
    from decur.data.crops import ScaleCrop, TrainCrop
    from decur.data.sampling import seeded_loader
    from decur.train.engine import build_trainer, check_same_run, per_process_batch, resume_point

    config = {**dataclasses.asdict(run), "seed": seed}
    defaults = {f.name: f.default for f in dataclasses.fields(TransferRun) if f.default is not dataclasses.MISSING}
    check_same_run(config, folder / "config.yaml", RESUMABLE_CHANGES, defaults=defaults)
    done = folder / "results.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    L.seed_everything(seed, workers=True, verbose=False)
    module = _module(run, data, seed, start)
    indices = label_subset(len(data.train), run.label_fraction, seed)  # type: ignore[arg-type]
    linear, cached = run.resolved_protocol == "linear", False
    train: Dataset[dict[str, Tensor]] = Subset(data.train, indices)
    steps_per_epoch = max(1, len(indices) // run.batch_size)  # full batches only (the loader drops the rest)
    epochs = run.epochs if run.iterations is None else math.ceil(run.iterations / steps_per_epoch)
    trainer = build_trainer(
        folder,
        run.trainer,
        global_batch=run.batch_size,
        max_epochs=epochs,
        max_steps=run.iterations or -1,
        every_n_steps=run.checkpoint_every,
        progress=progress,
        run_config=config,
    )
    per_process = per_process_batch(run.batch_size, trainer, "batch_size")
    keys = list(module.model.encoders)
    if run.task == "classification" and linear and run.cache_features:
        train, cached = _cached_features(trainer, module, train, per_process, run.num_workers), True
    elif run.augment and run.task == "classification":
        train = TrainCrop(train, keys, (0.8, 1.0))
    elif run.augment:
        crop = run.crop_size or data.crop_size
        size = (crop, crop) if isinstance(crop, int) else (crop[0], crop[-1])
        if run.train_scales:
            fill = {m: start.transforms[m].fill_value(data.stats[m][0]) for m in keys}
            ignore = -100 if data.ignore_index is None else data.ignore_index
            train = ScaleCrop(train, keys, run.train_scales, size, fill, ignore)
        else:
            train = TrainCrop(train, keys, (0.2, 1.0), size)
    last = folder / "checkpoints" / "last.ckpt"
    resumed = resume_point(last)
    loader = seeded_loader(
        train,
        batch_size=min(per_process, max(1, len(indices) // trainer.world_size)),
        num_workers=0 if cached else run.num_workers,
        seed=seed,
        num_replicas=trainer.world_size,
        rank=trainer.global_rank,
        start_epoch=resumed["epoch"] if resumed is not None else 0,
    )
    started = time.perf_counter()
    trainer.fit(module, loader, ckpt_path=last if resumed is not None else None)
    fit_seconds = time.perf_counter() - started
    eval_batch = run.eval_batch_size or (run.batch_size if run.task == "classification" else 1)
    trainer.test(module, _shard_loader(data.test, eval_batch, trainer, run.num_workers), verbose=False)
    result = {
        "seed": seed,
        "setting": run.setting(),
        "test": module.results,
        "train_indices": indices,
        "resumed_from": resumed,
        "steps": trainer.global_step,
        "steps_run": module.steps_run,
        "lr": module.optim.lr,
        "final_lr": trainer.optimizers[0].param_groups[0]["lr"],
        "cached_features": cached,
        "fit_seconds": round(fit_seconds, 1),
    }
    if trainer.is_global_zero:
        done.write_text(json.dumps(result, indent=2))
    return {**result, "rank": trainer.global_rank}


def _module(run: TransferRun, data: TransferData, seed: int, start: Start) -> TransferModule:
    """The transfer model on pretrained (or random) encoders, wrapped in a :class:`TransferModule`.

    The data arrive transformed (:class:`decur.evaluate.start.Transformed`), so the module's views only cast.
    """
    from decur.evaluate.probe import adapt_batchnorm
    from decur.models import CMX, FCN, LateFusionClassifier, encoder_width, feature_encoder, is_mit
    from decur.models.encoder import VIT

    torch.manual_seed(seed)
    arch, encoders = start.arch, start.encoders()
    views = {m: ViewPipeline("none", c, 8, (1.0, 1.0), [0.0] * c, [1.0] * c) for m, c in start.bands.items()}
    if not run.pretrained:
        if run.segformer_weights is not None:
            from decur.models.mit import load_segformer_weights

            for encoder in encoders.values():
                load_segformer_weights(encoder, run.segformer_weights)
        if run.adapt_bn:
            adapt_batchnorm(encoders, views, data.train)
    use = run.modalities or list(encoders)
    model: LateFusionClassifier | FCN | CMX
    if (run.resolved_model == "cmx") != is_mit(arch):
        raise ConfigError(f"transfer config field `model`: {run.resolved_model} does not take {arch} encoders "
                          "(CMX needs MiT encoders; the FCN and late fusion need ResNets)")  # fmt: skip
    if run.layer_decay != 1 and not VIT.match(arch):
        raise ConfigError(f"transfer config field `layer_decay`: decays the layers of ViT encoders, not {arch}")
    if run.task == "classification":
        model = LateFusionClassifier({m: encoders[m] for m in use}, encoder_width(arch), data.num_classes)
    elif run.resolved_model == "cmx":
        model = CMX({m: encoders[m] for m in use}, data.num_classes, run.decoder_dim)
    else:
        model = FCN({m: feature_encoder(arch, data.bands[m], encoders[m].state_dict()) for m in use}, data.num_classes)
    return TransferModule(
        model,
        {m: views[m] for m in use},
        run.resolved_protocol == "linear",
        run.optim(),
        data.num_classes,
        data.ignore_index,
    )


def _run_retrieval(run: TransferRun, data: TransferData, output: Path, progress: bool) -> dict[str, Any]:
    """Cross-modal retrieval of the pretrained run's test-set embeddings (features extracted on the engine)."""
    from decur.evaluate.module import EmbeddingModule
    from decur.evaluate.retrieval import pairwise_retrieval
    from decur.train.engine import build_trainer
    from decur.train.module import PretrainModule

    pretrained = PretrainModule.from_run(str(run.pretrained))
    use = run.modalities or [m for m in pretrained.model.modalities if m in data.bands]
    missing = sorted(set(use) - set(pretrained.model.modalities))
    if missing or len(use) < 2:
        raise ConfigError(f"transfer config field `modalities`: retrieval needs >= 2 modalities of the run "
                          f"({pretrained.model.modalities}), got {use}")  # fmt: skip
    module = EmbeddingModule(pretrained.model, {m: cast(ViewPipeline, pretrained.views[m]) for m in use})
    trainer = build_trainer(output, run.trainer, global_batch=run.batch_size, max_epochs=1, progress=progress)
    batch = run.eval_batch_size or (1 if run.dataset in ("sunrgbd", "nyuv2") else run.batch_size)
    got = _predict_all(trainer, module, data.test, batch, run.num_workers)
    feats = {m: got[f"feat/{m}"] for m in use}
    embs = {m: got[f"emb/{m}"] for m in use}
    common = int(pretrained.objective.common_dim)
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(run),
        "setting": "pretrained",
        "common_dim": common,
        "test_samples": len(data.test),  # type: ignore[arg-type]
        "retrieval": pairwise_retrieval(feats, embs, common),
        "runs": [{"rank": trainer.global_rank}],
    }
    if trainer.is_global_zero:
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return summary


def _predict_all(
    trainer: L.Trainer, module: L.LightningModule, dataset: Dataset[dict[str, Tensor]], batch: int, workers: int
) -> dict[str, Tensor]:
    """``trainer.predict`` over every sample (sharded over processes), gathered in the dataset's order.

    The module's ``predict_step`` returns a dict of per-sample tensors including the batch's ``index``.
    """
    n = len(dataset)  # type: ignore[arg-type]
    indexed = _Indexed(dataset)
    sampler: DistributedSampler[dict[str, Tensor]] = DistributedSampler(
        indexed, trainer.world_size, trainer.global_rank, shuffle=False
    )
    loader = DataLoader(
        indexed, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available()
    )
    outputs = cast(list[dict[str, Tensor]], trainer.predict(module, loader, return_predictions=True))
    got = {k: torch.cat([o[k] for o in outputs]).cpu() for k in outputs[0]}
    if trainer.world_size > 1:
        got = {k: trainer.strategy.all_gather(v.to(module.device)).cpu().flatten(0, 1) for k, v in got.items()}
    order = torch.empty(n, dtype=torch.long)
    order[got["index"]] = torch.arange(len(got["index"]))  # padded duplicates land on the same slot
    return {k: v[order] for k, v in got.items() if k != "index"}


class FeatureSet(Dataset[dict[str, Tensor]]):
    """Cached features and labels as samples ``{"features", "label"}``."""

    def __init__(self, features: Tensor, labels: Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"features": self.features[index], "label": self.labels[index]}


def _cached_features(
    trainer: L.Trainer, module: TransferModule, subset: Dataset[dict[str, Tensor]], batch: int, workers: int
) -> FeatureSet:
    """The frozen encoders' features of every labelled sample, extracted once through ``trainer.predict``.

    Every process extracts its shard; the shards are gathered so that each process holds all features in the
    subset's order (the head's loader shards them again, seeded).
    """
    got = _predict_all(trainer, module, subset, batch, workers)
    return FeatureSet(got["features"], got["label"].float())


class _Indexed(Dataset[dict[str, Tensor]]):
    def __init__(self, dataset: Dataset[dict[str, Tensor]]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {**self.dataset[index], "index": torch.tensor(index)}


def _shard_loader(
    dataset: Dataset[dict[str, Tensor]], batch: int, trainer: L.Trainer, workers: int
) -> DataLoader[dict[str, Tensor]]:
    """Evaluation loader: process ``r`` of ``w`` reads samples ``r, r + w, ...`` (no padding, no duplicates)."""
    indices = list(range(trainer.global_rank, len(dataset), trainer.world_size))  # type: ignore[arg-type]
    return DataLoader(
        dataset, batch_size=batch, sampler=indices, num_workers=workers, pin_memory=torch.cuda.is_available()
    )
