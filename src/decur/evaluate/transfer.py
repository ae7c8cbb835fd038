"""Transfer to multi-label classification by late fusion, as the paper evaluates on BigEarthNet-MM.

Every modality's encoder gives pooled features; they are concatenated and fed to one linear layer.
``MultiLabelSoftMarginLoss``; SGD with momentum 0.9 and no weight decay, lr 0.5 (linear probing) or 0.05
(fine-tuning), divided by 10 at 60 % and 80 % of the schedule. Linear probing freezes the encoders *and* keeps
their BatchNorm layers in eval mode, so neither weights nor running statistics move. Evaluation images are
never augmented, and metrics are computed once over the whole evaluation set (torchmetrics): mAP micro (the
paper's), mAP macro and F1 (micro, threshold 0.5). Label fractions are drawn without replacement from a seeded
generator and the chosen indices are returned with the results. Any subset of the modalities can be used
(missing-modality evaluation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from decur.augment import ViewPipeline


@dataclass
class TransferConfig:
    """Settings of one transfer run."""

    protocol: str = "linear"
    """``linear`` (frozen encoders, BN in eval mode) or ``finetune``."""
    epochs: int = 100
    batch_size: int = 256
    lr: float | None = None
    """Default: 0.5 for linear probing, 0.05 for fine-tuning (the paper's values)."""
    label_fraction: float = 1.0
    seed: int = 0
    num_workers: int = 0


class LateFusionClassifier(nn.Module):
    """Encoders per modality → pooled features, concatenated → one linear layer."""

    def __init__(self, encoders: dict[str, nn.Module], feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = nn.Linear(feature_dim * len(encoders), num_classes)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        """Logits ``N x num_classes``."""
        return self.head(torch.cat([enc(x[m]) for m, enc in self.encoders.items()], dim=1))


def label_subset(n: int, fraction: float, seed: int) -> list[int]:
    """``ceil(fraction · n)`` distinct indices drawn without replacement with a seeded generator, sorted."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must lie in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * n))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:k].tolist())


def _features(model: LateFusionClassifier, views: dict[str, ViewPipeline], batch: dict[str, Tensor]) -> Tensor:
    return torch.cat([enc(views[m].normalize(batch[m])) for m, enc in model.encoders.items()], dim=1)


@torch.no_grad()
def evaluate(model: LateFusionClassifier, views: dict[str, ViewPipeline], dataset: Dataset, batch_size: int) -> dict:
    """MAP (micro, macro) and F1 over the whole dataset, un-augmented, model in eval mode."""
    was = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    pairs = [(model.head(_features(model, views, b)), b["label"]) for b in loader]
    model.train(was)
    scores = torch.cat([s for s, _ in pairs]).float()
    target = torch.cat([t for _, t in pairs]).long()
    labels = target.shape[1]
    return {
        "map_micro": float(MultilabelAveragePrecision(labels, average="micro")(scores, target)),
        "map_macro": float(MultilabelAveragePrecision(labels, average="macro")(scores, target)),
        "f1_micro": float(MultilabelF1Score(labels, average="micro")(torch.sigmoid(scores), target)),
    }


def train_classifier(
    model: LateFusionClassifier,
    views: dict[str, ViewPipeline],
    train: Dataset,
    test: Dataset,
    cfg: TransferConfig,
    progress: bool = True,
) -> dict:
    """Train the head (linear) or everything (finetune) and evaluate on ``test``; returns metrics and the subset."""
    if cfg.protocol not in ("linear", "finetune"):
        raise ValueError(f"protocol must be linear or finetune, got {cfg.protocol!r}")
    torch.manual_seed(cfg.seed)
    indices = label_subset(len(train), cfg.label_fraction, cfg.seed)  # type: ignore[arg-type]
    subset = Subset(train, indices)
    linear = cfg.protocol == "linear"
    for p in model.encoders.parameters():
        p.requires_grad_(not linear)
    params = model.head.parameters() if linear else model.parameters()
    lr = cfg.lr if cfg.lr is not None else (0.5 if linear else 0.05)
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=0.0)
    milestones = [int(0.6 * cfg.epochs), int(0.8 * cfg.epochs)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    loss_fn = nn.MultiLabelSoftMarginLoss()
    g = torch.Generator().manual_seed(cfg.seed)
    data: Dataset = subset
    if linear:  # frozen encoders in eval mode and un-augmented inputs: their features are computed once
        model.encoders.eval()
        with torch.no_grad():
            batches = DataLoader(subset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
            feats, targets = zip(*((_features(model, views, b), b["label"]) for b in batches), strict=True)
        data = TensorDataset(torch.cat(feats), torch.cat(targets))
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=g, num_workers=cfg.num_workers)
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        if linear:
            model.encoders.eval()  # frozen encoders keep their BatchNorm statistics
        total = 0.0
        for batch in loader:
            if linear:
                logits, target = model.head(batch[0]), batch[1]
            else:
                logits, target = model({m: views[m].normalize(batch[m]) for m in model.encoders}), batch["label"]
            loss = loss_fn(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss)
        sched.step()
        if progress:
            rate = (epoch + 1) * len(subset) / (time.perf_counter() - start)
            eta = (cfg.epochs - epoch - 1) * len(subset) / rate
            print(f"\repoch {epoch + 1}/{cfg.epochs} loss {total / max(1, len(loader)):.4f} "
                  f"{rate:.0f} samples/s ETA {eta:.0f} s", end="")  # fmt: skip
    if progress:
        print()
    return {"test": evaluate(model, views, test, cfg.batch_size), "train_indices": indices, "lr": lr}


@dataclass
class TransferRun:
    """A ``decur transfer`` config: which encoders, which data, which task and protocol (YAML keys = fields)."""

    task: str = "classification"
    """``classification`` (late fusion, mAP) or ``segmentation`` (FCN, mIoU)."""
    dataset: str = "synthetic"
    """``synthetic`` (labels and masks of the built-in data), ``bigearthnet`` (classification),
    ``geonrw``, ``sunrgbd`` or ``nyuv2`` (segmentation), at ``root``."""
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    pretrained: str | None = None
    """A decur run folder or checkpoint; ``None`` = randomly initialised encoders (the "Rand. Init." row)."""
    arch: str = "resnet18"
    """Encoder architecture when ``pretrained`` is ``None``."""
    adapt_bn: bool = False
    """With ``pretrained: null``: re-estimate the random encoders' BatchNorm statistics on the training images
    before training (the fair random floor; otherwise BatchNorm keeps its default mean 0 / variance 1)."""
    modalities: list[str] | None = None
    """Subset of modalities to use (missing-modality evaluation); default all."""
    protocol: str | None = None
    """``linear`` (frozen encoders) or ``finetune``; default linear for classification, finetune for segmentation."""
    label_fraction: float = 1.0
    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None
    seeds: list[int] | None = None
    weight_decay: float | None = None
    """Segmentation: default 0.01 with AdamW (the paper's GeoNRW setting), 5e-4 with SGD."""
    optimizer: str = "adamw"
    """Segmentation: ``adamw`` or ``sgd`` (the paper's RGB-D FCN: SGD lr 0.01, poly schedule, 40k iterations)."""
    schedule: str = "constant"
    """Segmentation: ``constant`` or ``poly``."""
    iterations: int | None = None
    """Segmentation: optimiser steps instead of ``epochs``."""
    train_samples: int = 2048
    """Synthetic only: scenes in the training and test sets."""
    test_samples: int = 1024
    image_size: int = 64
    """Synthetic only: scene size."""


def _data(run: TransferRun) -> tuple[Dataset, Dataset, dict[str, int], dict, int | None]:
    """Train and test sets, band counts, band statistics and the ignore index of the task."""
    from decur.data import BigEarthNetMM, GeoNRW, RGBDSegmentation
    from decur.data.build import band_stats
    from decur.data.synthetic import SyntheticMultimodal

    if run.dataset == "synthetic":
        train: Dataset = SyntheticMultimodal(run.train_samples, run.image_size, seed=10_000)
        test: Dataset = SyntheticMultimodal(run.test_samples, run.image_size, seed=20_000)
        bands = {"optical": 13, "sar": 2}
        return train, test, bands, band_stats(train, list(bands)), None
    if run.root is None:
        raise ValueError(f"transfer config field `root`: dataset {run.dataset!r} needs its folder")
    if run.dataset == "bigearthnet":
        tr, te = BigEarthNetMM(run.root, run.train_split), BigEarthNetMM(run.root, run.test_split)
        return tr, te, {"s1": 2, "s2": 13}, tr.stats, None
    if run.dataset == "geonrw":
        g_tr, g_te = GeoNRW(run.root, "train"), GeoNRW(run.root, "test")
        bands = {"rgb": 3, "dem": 3}
        return g_tr, g_te, bands, band_stats(g_tr, list(bands)), 0
    if run.dataset in ("sunrgbd", "nyuv2"):
        classes = 37 if run.dataset == "sunrgbd" else 40
        r_tr = RGBDSegmentation(run.root, run.train_split, classes)
        r_te = RGBDSegmentation(run.root, run.test_split, classes)
        bands = {"rgb": 3, "hha": 3}
        return r_tr, r_te, bands, band_stats(r_tr, list(bands)), 0
    raise ValueError(f"transfer config field `dataset`: unknown dataset {run.dataset!r}")


def run_transfer(run: TransferRun, progress: bool = True) -> dict:
    """Build encoders and data as ``run`` says, train and evaluate once per seed; mean and std over seeds."""
    from decur.evaluate.probe import adapt_batchnorm
    from decur.evaluate.segmentation import FCN, SegmentationConfig, feature_encoder, train_segmentation
    from decur.models import create_encoder, encoder_width
    from decur.train.module import PretrainModule

    if run.task not in ("classification", "segmentation"):
        raise ValueError(f"transfer config field `task`: {run.task!r} is not classification or segmentation")
    train, test, bands, stats, ignore = _data(run)
    protocol = run.protocol or ("linear" if run.task == "classification" else "finetune")
    results = []
    for seed in run.seeds or [0]:
        torch.manual_seed(seed)
        if run.pretrained:
            module = PretrainModule.from_run(run.pretrained)
            encoders = dict(module.model.encoders.items())
            views = {m: cast(ViewPipeline, v) for m, v in module.views.items()}
            arch = module.model.arch
        else:
            arch = run.arch
            encoders = {m: create_encoder(arch, c) for m, c in bands.items()}
            views = {m: ViewPipeline("none", c, 8, (1.0, 1.0), *stats[m]) for m, c in bands.items()}
            if run.adapt_bn:
                adapt_batchnorm(encoders, views, train)
        use = run.modalities or list(encoders)
        unknown = sorted(set(use) - set(encoders))
        if unknown:
            raise ValueError(f"transfer config field `modalities`: {unknown} not among the encoders {list(encoders)}")
        used_views = {m: views[m] for m in use}
        if run.task == "classification":
            model = LateFusionClassifier({m: encoders[m] for m in use}, encoder_width(arch), _num_labels(test))
            cfg = TransferConfig(protocol, run.epochs, run.batch_size, run.lr, run.label_fraction, seed)
            results.append(train_classifier(model, used_views, train, test, cfg, progress))
        else:
            classes = int(max(int(test[i]["mask"].max()) for i in range(min(len(test), 64)))) + 1  # type: ignore[arg-type]
            classes = {"geonrw": 11, "sunrgbd": 38, "nyuv2": 41}.get(run.dataset, max(classes, 2))
            fcn = FCN({m: feature_encoder(arch, bands[m], encoders[m].state_dict()) for m in use}, classes)
            sgd = run.optimizer == "sgd"
            seg = SegmentationConfig(
                protocol, run.epochs, run.batch_size, run.lr or (0.01 if sgd else 1e-4),
                run.weight_decay if run.weight_decay is not None else (5e-4 if sgd else 0.01),
                run.label_fraction, ignore, seed, run.optimizer, run.schedule, run.iterations,
            )  # fmt: skip
            results.append(train_segmentation(fcn, used_views, train, test, classes, seg, progress))
    summary: dict = {"config": vars(run), "protocol": protocol, "runs": results}
    for key, value in results[0]["test"].items():
        if isinstance(value, float):
            values = torch.tensor([r["test"][key] for r in results])
            summary[key] = {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0}
    return summary


def _num_labels(dataset: Dataset) -> int:
    return int(dataset[0]["label"].numel())
