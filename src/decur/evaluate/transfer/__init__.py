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

The pieces: :mod:`.config` (the fields and their validation), :mod:`.data` (the datasets), :mod:`.seed` (one seed:
model, labelled subset, crops, fit, test), :mod:`.features` (features through ``trainer.predict``, the cached
linear-probe features), :mod:`.retrieval` (``task: retrieval``); this module runs every seed and aggregates.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from decur.evaluate.transfer.config import (
    DATASETS,
    MODELS,
    PROTOCOLS,
    RESUMABLE_CHANGES,
    SEGMENTATION_DATASETS,
    TASKS,
    TransferRun,
    check_pretrained,
)
from decur.evaluate.transfer.data import TransferData, load_data
from decur.evaluate.transfer.retrieval import run_retrieval
from decur.evaluate.transfer.seed import run_seed
from decur.train.engine import run_lock

__all__ = [
    "DATASETS",
    "MODELS",
    "PROTOCOLS",
    "RESUMABLE_CHANGES",
    "SEGMENTATION_DATASETS",
    "TASKS",
    "TransferData",
    "TransferRun",
    "check_pretrained",
    "load_data",
    "run_transfer",
]


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
        return run_retrieval(run, data, output, progress)
    start = starting_point(run, data)
    if is_launcher():
        print(start.describe())
    data = dataclasses.replace(
        data, train=Transformed(data.train, start.transforms), test=Transformed(data.test, start.transforms)
    )
    results = [run_seed(run, seed, data, start, output / f"seed{seed}", progress) for seed in run.seeds or [0]]
    summary: dict[str, Any] = {
        # what ran: pretrained weights bring their own architecture, whatever the config's `arch` says
        "config": {**dataclasses.asdict(run), "arch": start.arch},
        "arch": start.arch,
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
