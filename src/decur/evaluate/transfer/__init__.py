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

The pieces: ``config`` (the fields and their validation), ``data`` (the datasets), ``seed`` (one seed:
model, labelled subset, crops, fit, test), ``features`` (features through ``trainer.predict``, the cached
linear-probe features), ``retrieval`` (``task: retrieval``), ``run`` (every seed and the aggregate).
"""

from __future__ import annotations

from typing import Any

from decur.evaluate.transfer.config import (
    MODELS,
    PROTOCOLS,
    RESUMABLE_CHANGES,
    TASKS,
    TransferConfig,
    check_pretrained,
)

__all__ = [
    "MODELS",
    "PROTOCOLS",
    "RESUMABLE_CHANGES",
    "TASKS",
    "TransferConfig",
    "TransferData",
    "check_pretrained",
    "load_data",
    "run_transfer",
]
_LAZY = {"TransferData": "data", "load_data": "data", "run_transfer": "run"}
"""Names whose modules import torch: loaded on first use, so that reading and checking a config stays light."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
