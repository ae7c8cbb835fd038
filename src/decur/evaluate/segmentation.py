"""Transfer to semantic segmentation with the paper's FCN.

One ResNet per modality; the last three feature maps (strides 8, 16, 32) of all modalities are concatenated per
level, mapped to class scores by a 1x1 convolution per level, bilinearly upsampled to the input and summed.
CrossEntropy with an ignore index; AdamW (lr 1e-4, weight decay 0.01). mIoU and per-class IoU are accumulated
over the whole evaluation set (torchmetrics), never per batch. With one modality it is the single-modal FCN used
for RGB-D.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from decur.augment import ViewPipeline
from decur.evaluate.transfer import label_subset

LEVELS = (2, 3, 4)


def feature_encoder(arch: str, in_chans: int, state: dict[str, Tensor] | None = None) -> nn.Module:
    """Timm backbone returning the feature maps of :data:`LEVELS`; ``state`` is a plain encoder state dict."""
    net = timm.create_model(arch, pretrained=False, in_chans=in_chans, features_only=True, out_indices=LEVELS)
    if state is not None:
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or [k for k in unexpected if not k.startswith("fc.")]:
            raise ValueError(f"encoder weights do not fit a {arch} feature extractor (missing {missing[:3]})")
    return net


class FCN(nn.Module):
    """Late-fusion FCN over any number of modalities.

    Args:
        encoders: Modality → feature extractor (:func:`feature_encoder`).
        num_classes: Output classes (including an ignored class if the dataset has one).

    """

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        channels = [cast(Any, e).feature_info.channels() for e in encoders.values()]
        widths = [sum(int(c[i]) for c in channels) for i in range(len(LEVELS))]
        self.heads = nn.ModuleList(nn.Conv2d(w, num_classes, kernel_size=1) for w in widths)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        """Class scores ``N x num_classes x H x W`` at the input resolution."""
        size = next(iter(x.values())).shape[-2:]
        maps = [enc(x[m]) for m, enc in self.encoders.items()]
        scores = [
            F.interpolate(head(torch.cat([f[level] for f in maps], dim=1)), size=size, mode="bilinear")
            for level, head in enumerate(self.heads)
        ]
        return torch.stack(scores).sum(dim=0)


@dataclass
class SegmentationConfig:
    """Settings of one segmentation transfer run."""

    protocol: str = "finetune"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    label_fraction: float = 1.0
    ignore_index: int | None = 0
    seed: int = 0
    optimizer: str = "adamw"
    """``adamw`` (the paper's GeoNRW setting) or ``sgd`` (momentum 0.9; the paper's RGB-D FCN setting)."""
    schedule: str = "constant"
    """``constant`` or ``poly`` (``lr · (1 − step / total)^0.9``, the RGB-D FCN schedule)."""
    iterations: int | None = None
    """Train for this many optimiser steps (cycling the data; the RGB-D FCN uses 40k) instead of ``epochs``."""


@torch.no_grad()
def evaluate_segmentation(
    model: FCN, views: dict[str, ViewPipeline], dataset: Dataset, num_classes: int, ignore: int | None, batch_size: int
) -> dict:
    """mIoU, per-class IoU and pixel accuracy over the whole dataset (un-augmented, eval mode)."""
    was = model.training
    model.eval()
    iou = MulticlassJaccardIndex(num_classes, average="none", ignore_index=ignore)
    acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pred = model({m: views[m].normalize(batch[m]) for m in model.encoders}).argmax(1)
        iou.update(pred, batch["mask"])
        acc.update(pred, batch["mask"])
    model.train(was)
    per_class = iou.compute()
    valid = [c for c in range(num_classes) if c != ignore]
    return {
        "miou": float(per_class[valid].mean()),
        "iou_per_class": [float(v) for v in per_class],
        "pixel_accuracy": float(acc.compute()),
    }


def train_segmentation(
    model: FCN,
    views: dict[str, ViewPipeline],
    train: Dataset,
    test: Dataset,
    num_classes: int,
    cfg: SegmentationConfig,
    progress: bool = True,
) -> dict:
    """Fine-tune (or train the heads of) the FCN, then evaluate on ``test``."""
    torch.manual_seed(cfg.seed)
    indices = label_subset(len(train), cfg.label_fraction, cfg.seed)  # type: ignore[arg-type]
    linear = cfg.protocol == "linear"
    for p in model.encoders.parameters():
        p.requires_grad_(not linear)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"transfer config field `optimizer`: adamw or sgd, got {cfg.optimizer!r}")
    if cfg.schedule not in ("constant", "poly"):
        raise ValueError(f"transfer config field `schedule`: constant or poly, got {cfg.schedule!r}")
    loss_fn = nn.CrossEntropyLoss(ignore_index=cfg.ignore_index if cfg.ignore_index is not None else -100)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(Subset(train, indices), batch_size=cfg.batch_size, shuffle=True, generator=g)
    total_steps = cfg.iterations if cfg.iterations is not None else cfg.epochs * len(loader)
    poly = cfg.schedule == "poly"
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (1 - k / total_steps) ** 0.9 if poly else 1.0)
    start, step, passes = time.perf_counter(), 0, math.ceil(total_steps / max(1, len(loader)))
    for epoch in range(passes):
        model.train()
        if linear:
            model.encoders.eval()
        total = 0.0
        for batch in loader:
            scores = model({m: views[m].normalize(batch[m]) for m in model.encoders})
            loss = loss_fn(scores, batch["mask"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
            step += 1
            if step == total_steps:
                break
        if progress:
            rate = step * cfg.batch_size / (time.perf_counter() - start)
            print(
                f"\rpass {epoch + 1}/{passes} step {step}/{total_steps} loss {total / max(1, len(loader)):.4f} "
                f"{rate:.0f} samples/s",
                end="",
            )
    if progress:
        print()
    test_metrics = evaluate_segmentation(model, views, test, num_classes, cfg.ignore_index, cfg.batch_size)
    return {"test": test_metrics, "train_indices": indices, "steps": step, "final_lr": sched.get_last_lr()[0]}
