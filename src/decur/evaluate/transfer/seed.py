"""One seed of a transfer run: the model on its starting encoders, the labelled subset and training crops, fit, test."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from decur.augment import ViewPipeline
from decur.config import ConfigError
from decur.data.build import data_fingerprint
from decur.data.crops import ScaleCrop, TrainCrop
from decur.data.sampling import seeded_loader
from decur.evaluate.metrics import label_subset
from decur.evaluate.module import TransferModule
from decur.evaluate.probe import adapt_batchnorm
from decur.evaluate.transfer.config import RESUMABLE_CHANGES, TransferConfig
from decur.evaluate.transfer.data import TransferData
from decur.evaluate.transfer.features import cached_features, shard_loader
from decur.models import CMX, FCN, LateFusionClassifier, encoder_width, feature_encoder, is_mit
from decur.models.encoder import VIT
from decur.models.mit import load_segformer_weights
from decur.train.engine import (
    build_trainer,
    check_checkpoint_fits,
    check_same_data,
    check_same_run,
    per_process_batch,
    resume_point,
)

if TYPE_CHECKING:
    from decur.evaluate.start import Start


def run_seed(
    run: TransferConfig, seed: int, data: TransferData, start: Start, folder: Path, progress: bool
) -> dict[str, Any]:
    """Train and test one seed in ``folder`` (resumed from its ``last.ckpt``; a finished seed is read back).

    Raises:
        ConfigError: ``folder`` holds a run of another config (beyond ``RESUMABLE_CHANGES``).

    """
    config = {**dataclasses.asdict(run), "seed": seed}
    defaults = {f.name: f.default for f in dataclasses.fields(TransferConfig) if f.default is not dataclasses.MISSING}
    check_same_run(config, folder / "config.yaml", RESUMABLE_CHANGES, defaults=defaults)
    _check_same_data(run, data, folder)
    done = folder / "results.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    L.seed_everything(seed, workers=True, verbose=False)
    module = build_module(run, data, seed, start)
    indices = label_subset(len(data.train), run.label_fraction, seed)  # type: ignore[arg-type]
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
    train, cached = training_set(run, data, start, module, Subset(data.train, indices), trainer, per_process)
    last = folder / "checkpoints" / "last.ckpt"
    resumed = resume_point(last)
    if resumed is not None:
        check_checkpoint_fits(last, module)
    batch = min(per_process, max(1, len(indices) // trainer.world_size))
    first_epoch = resumed["epoch"] if resumed is not None else 0
    workers = 0 if cached else run.num_workers
    loader = seeded_loader(
        train,
        batch_size=batch,
        num_workers=workers,
        seed=seed,
        num_replicas=trainer.world_size,
        rank=trainer.global_rank,
        start_epoch=first_epoch,
        start_batch=resumed.get("batch", 0) if resumed is not None else 0,
    )
    started = time.perf_counter()
    trainer.fit(module, loader, ckpt_path=last if resumed is not None else None)
    fit_seconds = time.perf_counter() - started
    eval_batch = run.eval_batch_size or (run.batch_size if run.task == "classification" else 1)
    trainer.test(module, shard_loader(data.test, eval_batch, trainer, run.num_workers), verbose=False)
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


def training_set(
    run: TransferConfig,
    data: TransferData,
    start: Start,
    module: TransferModule,
    labelled: Dataset[dict[str, Tensor]],
    trainer: L.Trainer,
    per_process: int,
) -> tuple[Dataset[dict[str, Tensor]], bool]:
    """What the training loader reads, and whether it is cached features.

    Linear classification with ``cache_features``: the frozen encoders' features, extracted once; classification
    otherwise: random resized crops (scale 0.8-1) + flips; segmentation: crops of ``crop_size`` (scale 0.2-1), or
    SegFormer/CMX's rescale + padded crop with ``train_scales``; ``augment: false``: the labelled samples as they are.
    """
    keys = list(module.model.encoders)
    if run.task == "classification" and run.resolved_protocol == "linear" and run.cache_features:
        return cached_features(trainer, module, labelled, per_process, run.num_workers), True
    if not run.augment:
        return labelled, False
    if run.task == "classification":
        return TrainCrop(labelled, keys, (0.8, 1.0)), False
    crop = run.crop_size or data.crop_size
    size = (crop, crop) if isinstance(crop, int) else (crop[0], crop[-1])
    if not run.train_scales:
        return TrainCrop(labelled, keys, (0.2, 1.0), size), False
    fill = {m: start.transforms[m].fill_value(data.stats[m][0]) for m in keys}
    ignore = -100 if data.ignore_index is None else data.ignore_index
    return ScaleCrop(labelled, keys, run.train_scales, size, fill, ignore), False


def _check_same_data(run: TransferConfig, data: TransferData, folder: Path) -> None:
    """A seed's results and checkpoint belong to its data: reused when the data moved, refused when they changed."""
    now = {split: data_fingerprint(getattr(data, split)) for split in ("train", "test")}
    started = (folder / "results.json").is_file() or (folder / "checkpoints" / "last.ckpt").is_file()
    other = f"transfer config field `root`: {run.root} holds other data than seed folder {folder} was trained on"
    check_same_data(now, folder, started, other)


def build_module(run: TransferConfig, data: TransferData, seed: int, start: Start) -> TransferModule:
    """The transfer model on pretrained (or random) encoders, wrapped in a ``TransferModule``.

    The data arrive transformed (``decur.evaluate.start.Transformed``), so the module's views only cast.
    """
    torch.manual_seed(seed)
    arch, encoders = start.arch, start.encoders()
    views = {m: ViewPipeline("none", c, 8, (1.0, 1.0), [0.0] * c, [1.0] * c) for m, c in start.bands.items()}
    if not run.pretrained:
        if run.segformer_weights is not None:
            for encoder in encoders.values():
                load_segformer_weights(encoder, run.segformer_weights)
        if run.adapt_bn:
            adapt_batchnorm(encoders, views, data.train)
    use = run.modalities or list(encoders)
    model: LateFusionClassifier | FCN | CMX
    if (run.resolved_model == "cmx") != is_mit(arch):
        raise ConfigError(
            f"transfer config field `model`: {run.resolved_model} does not take {arch} encoders "
            "(CMX needs MiT encoders; the FCN and late fusion need ResNets)"
        )
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
