"""Features through ``trainer.predict``, sharded over processes and gathered in order; cached linear-probe features."""

from __future__ import annotations

from typing import cast

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from decur.evaluate.module import TransferModule


def predict_all(
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


def cached_features(
    trainer: L.Trainer, module: TransferModule, subset: Dataset[dict[str, Tensor]], batch: int, workers: int
) -> FeatureSet:
    """The frozen encoders' features of every labelled sample, extracted once through ``trainer.predict``.

    Every process extracts its shard; the shards are gathered so that each process holds all features in the
    subset's order (the head's loader shards them again, seeded).
    """
    got = predict_all(trainer, module, subset, batch, workers)
    return FeatureSet(got["features"], got["label"].float())


class _Indexed(Dataset[dict[str, Tensor]]):
    def __init__(self, dataset: Dataset[dict[str, Tensor]]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {**self.dataset[index], "index": torch.tensor(index)}


def shard_loader(
    dataset: Dataset[dict[str, Tensor]], batch: int, trainer: L.Trainer, workers: int
) -> DataLoader[dict[str, Tensor]]:
    """Evaluation loader: process ``r`` of ``w`` reads samples ``r, r + w, ...`` (no padding, no duplicates)."""
    indices = list(range(trainer.global_rank, len(dataset), trainer.world_size))  # type: ignore[arg-type]
    return DataLoader(
        dataset, batch_size=batch, sampler=indices, num_workers=workers, pin_memory=torch.cuda.is_available()
    )
