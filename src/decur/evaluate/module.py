"""The transfer LightningModule: classification (late fusion, mAP) or segmentation (FCN, mIoU) on the engine.

Linear probing freezes the encoders *and* keeps their BatchNorm layers in eval mode, so neither weights nor running
statistics move; with cached features (classification) only the head runs. Metrics are torchmetrics objects
updated in ``test_step`` and computed once over the whole evaluation set, summed or gathered over processes.
"""

from __future__ import annotations

from typing import Any, cast

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from decur.augment import ViewPipeline
from decur.errors import NonFiniteLossError
from decur.evaluate.metrics import PositiveCounts, SegmentationScores, macro_average_precision, predict_classes
from decur.evaluate.transfer.config import TransferOptimConfig
from decur.models import CMX, FCN, LateFusionClassifier, MultimodalModel
from decur.optim import decays, layer_decay_scales


def lr_factor(schedule: str, step: int, total: int, steps_per_epoch: int, epochs: int, warmup_steps: int = 0) -> float:
    """The learning-rate multiplier at optimiser step ``step`` of ``total`` (warm-up times the schedule)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "poly":
        return warm * max(0.0, 1 - step / max(1, total)) ** 0.9
    if schedule == "step":
        milestones = (int(0.6 * epochs) * steps_per_epoch, int(0.8 * epochs) * steps_per_epoch)
        return warm * 0.1 ** sum(step >= m for m in milestones)
    return warm


class TransferModule(L.LightningModule):
    """Trains a transfer model and scores it on the evaluation set.

    Args:
        model: A ``LateFusionClassifier``, ``FCN`` or ``CMX``.
        views: Modality → pipeline whose ``normalize`` standardises the inputs (no augmentation here: training
            crops are taken in the loader, identically for every modality and the mask).
        linear: Frozen encoders (BatchNorm in eval mode); only the head trains.
        optim: Optimiser and schedule.
        num_classes: Labels (classification) or classes including an ignored one (segmentation).
        ignore_index: Segmentation ground truth to ignore.

    """

    def __init__(
        self,
        model: LateFusionClassifier | FCN | CMX,
        views: dict[str, ViewPipeline],
        linear: bool,
        optim: TransferOptimConfig,
        num_classes: int,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.model, self.views = model, nn.ModuleDict(views)
        self.linear, self.optim, self.num_classes, self.ignore_index = linear, optim, num_classes, ignore_index
        self.segmentation = isinstance(model, FCN | CMX)
        for p in model.encoders.parameters():
            p.requires_grad_(not linear)
        if self.segmentation:
            self.loss_fn: nn.Module = nn.CrossEntropyLoss(ignore_index=-100 if ignore_index is None else ignore_index)
            self.scores = SegmentationScores(num_classes, ignore_index)
        else:
            self.loss_fn = nn.MultiLabelSoftMarginLoss()
            self.map_micro = MultilabelAveragePrecision(num_classes, average="micro")
            self.ap_per_class = MultilabelAveragePrecision(num_classes, average="none")
            self.positives = PositiveCounts(num_classes)
            self.f1_micro = MultilabelF1Score(num_classes, average="micro")
        self.results: dict[str, Any] = {}
        self.steps_run = 0
        """Optimiser steps this process ran (a resumed run counts only the steps after its checkpoint)."""

    def inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The standardised images of the modalities the model uses."""
        return {m: cast(ViewPipeline, self.views[m]).normalize(batch[m]) for m in self.model.encoders}

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Pooled features of a batch (linear probing's cached features), with labels and sample indices."""
        assert isinstance(self.model, LateFusionClassifier)
        out = {"features": self.model.features(self.inputs(batch)).float(), "label": batch["label"]}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    def on_train_epoch_start(self) -> None:
        """Frozen encoders keep their BatchNorm statistics."""
        if self.linear:
            self.model.encoders.eval()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimiser step on a labelled batch (or on cached features); stops on a non-finite loss."""
        if "features" in batch:
            assert isinstance(self.model, LateFusionClassifier)
            scores, target = self.model.head(batch["features"]), batch["label"]
        else:
            scores = self.model(self.inputs(batch))
            target = batch["mask"] if self.segmentation else batch["label"]
        loss = self.loss_fn(scores.float(), target)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite transfer loss at step {self.global_step}: lower `lr` or use trainer.precision=32-true; "
                "the last checkpoint is intact"
            )
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.steps_run += 1
        return loss

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate the evaluation metrics (un-augmented images, eval mode)."""
        scores = self.model(self.inputs(batch)).float()
        if self.segmentation:
            self.scores.update(predict_classes(scores, self.ignore_index), batch["mask"])
        else:
            target = batch["label"].long()
            self.map_micro.update(scores, target)
            self.ap_per_class.update(scores, target)
            self.positives.update(target)
            self.f1_micro.update(torch.sigmoid(scores), target)

    def on_test_epoch_end(self) -> None:
        """Compute the metrics over the whole set (all processes) into ``results``."""
        if self.segmentation:
            self.results = self.scores.compute()
            self.scores.reset()
        else:
            self.results = {"map_micro": float(self.map_micro.compute())}
            self.results.update(macro_average_precision(self.ap_per_class.compute(), self.positives.compute()))
            self.results["f1_micro"] = float(self.f1_micro.compute())
            for metric in (self.map_micro, self.ap_per_class, self.positives, self.f1_micro):
                metric.reset()

    def param_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters grouped by learning rate (layer decay) and weight decay (see below)."""
        o = self.optim
        scales = layer_decay_scales(self.model, o.layer_decay) if o.layer_decay != 1.0 else {}
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                decayed = o.name == "sgd" or decays(name, p)
                groups.setdefault((scales.get(name, 1.0), decayed), []).append(p)
        return [
            {"params": ps, "lr": o.lr * scale, "weight_decay": o.weight_decay if decayed else 0.0}
            for (scale, decayed), ps in groups.items()
        ]

    def configure_optimizers(self) -> Any:
        """SGD (momentum 0.9) or AdamW over the trainable parameters, with a per-step schedule.

        AdamW leaves biases and normalisation parameters (every tensor of fewer than 2 dimensions) undecayed, as
        SegFormer and CMX do, and a ViT's position embedding and class token (as in pretraining). With
        ``layer_decay < 1`` each ViT layer trains at its own rate (one group per rate).
        """
        o = self.optim
        groups = self.param_groups()
        if o.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=o.lr)
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, int(self.trainer.max_epochs or 1))
        per_epoch = max(1, int(self.trainer.num_training_batches))
        warmup = round(o.warmup_epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(o.schedule, step, total, per_epoch, epochs, warmup)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class EmbeddingModule(L.LightningModule):
    """Backbone features and projector embeddings of a pretrained model, for ``trainer.predict`` (eval mode).

    Args:
        model: The pretrained ``decur.models.MultimodalModel``.
        views: Modality → pipeline whose ``normalize`` standardises the inputs (no augmentation).

    """

    def __init__(self, model: MultimodalModel, views: dict[str, ViewPipeline]) -> None:
        super().__init__()
        self.model, self.views = model, nn.ModuleDict(views)

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``feat/<m>`` and ``emb/<m>`` per modality (float32), with the sample indices."""
        out = {"index": batch["index"]}
        for m, view in self.views.items():
            feat = self.model.features(m, cast(ViewPipeline, view).normalize(batch[m]))
            out[f"feat/{m}"] = feat.float()
            out[f"emb/{m}"] = self.model.projectors[m](feat).float()
        return out
