"""A whole pretraining run: output folder, resume, Lightning trainer and summary (on ``decur.train.engine``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from torch.utils.data import IterableDataset

from decur.config import ConfigError, PretrainConfig
from decur.data.build import build_dataset, check_bands, data_fingerprint, dataset_stats
from decur.data.sampling import seeded_loader, shard_loader
from decur.models.mit import load_segformer_weights
from decur.train.callbacks import plot_loss_curves, plot_monitors
from decur.train.engine import (
    build_trainer,
    check_checkpoint_fits,
    check_same_data,
    check_same_run,
    is_launcher,
    per_process_batch,
    resume_point,
    run_lock,
)
from decur.train.host import tune_host
from decur.train.module import PretrainModule

# Fields that may change between an interrupted run and its resumption (``trainer.max_epochs`` may only grow:
# that extends a finished run).
RESUMABLE_CHANGES = (
    "trainer.devices",
    "trainer.accelerator",
    "trainer.max_epochs",
    "data.num_workers",
    "data.root",  # the data's location is not part of a run's identity (staged to scratch, '/x' vs '/x/')
    "model.channels_last",
    "trainer.checkpoint_every",
    "trainer.tensorboard",
    "trainer.log_every_n_steps",
)


def pretrain(cfg: PretrainConfig, output: Path, callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Pretrain (or resume pretraining) into ``output``.

    Re-running with the same ``output`` continues from ``output/checkpoints/last.ckpt`` with weights, optimiser,
    scheduler, RNG states and epoch/step restored; a finished run trains no further. A larger
    ``trainer.max_epochs`` extends a finished run: the cosine schedule is then defined on the new total.

    Args:
        cfg: The run configuration (validated here).
        output: Run folder: ``config.yaml``, ``checkpoints/``, ``metrics.csv``, ``loss.png``, ``summary.json``.
        callbacks: Further Lightning callbacks (e.g. ``decur.evaluate.convergence.TrajectoryProbe``).

    Returns:
        The summary written to ``summary.json`` by rank 0, plus this process's ``rank``. ``resumed_from`` holds
        the epoch and step of the checkpoint the run continued from, or ``None``.

    Raises:
        ConfigError: Invalid config, or ``output`` holds a run with a different config.
        RunError: Another process trains in ``output``, its checkpoint is unreadable, or a checkpoint cannot be
            written.

    """
    cfg.validate()
    with run_lock(output):
        return _pretrain(cfg, output, callbacks)


def _pretrain(cfg: PretrainConfig, output: Path, callbacks: list[L.Callback] | None) -> dict[str, Any]:
    _check_same_run(cfg, output / "config.yaml")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)

    tune_host()
    dataset = build_dataset(cfg)
    check_bands(cfg, dataset)
    _check_same_data(cfg, dataset, output)
    names = [m.name for m in cfg.data.modalities]
    stats = dataset_stats(dataset, names)
    module = PretrainModule(cfg, stats)
    trainer = build_trainer(
        output,
        cfg.trainer,
        global_batch=cfg.data.batch_size,
        max_epochs=cfg.trainer.max_epochs,
        every_n_steps=cfg.trainer.checkpoint_every,
        sparse_metrics={"rank_": cfg.trainer.rank_every},
        extra_callbacks=callbacks or (),
        run_config=cfg.to_dict(),
    )
    last = output / "checkpoints" / "last.ckpt"
    resumed = resume_point(last)
    if resumed is None and cfg.model.init_weights is not None:  # a fresh run starts from SegFormer's weights
        for encoder in module.model.encoders.values():
            load_segformer_weights(encoder, cfg.model.init_weights)
    common: dict[str, Any] = {
        "batch_size": per_process_batch(cfg.data.batch_size, trainer, "data.batch_size"),
        "num_workers": cfg.data.num_workers,
        "seed": cfg.trainer.seed,
        "num_replicas": trainer.world_size,
        "rank": trainer.global_rank,
        "start_epoch": resumed["epoch"] if resumed is not None else 0,
        "start_batch": resumed.get("batch", 0) if resumed is not None else 0,
    }
    if isinstance(dataset, IterableDataset):  # file shards (SSL4EO-S12 v1.1): each process reads its own files
        loader = shard_loader(dataset, **common)
        # its length is exact by construction (whole files per worker, full batches counted per worker)
    else:
        loader = seeded_loader(dataset, skip_log=output / "skipped.txt" if cfg.data.skip_bad else None, **common)
    if len(loader) < 1:
        raise ConfigError(f"config field `data.batch_size`: {cfg.data.batch_size} exceeds the dataset size")
    if resumed is not None:
        check_checkpoint_fits(last, module)
    if resumed is not None and trainer.is_global_zero:
        within = f" (batch {resumed['batch']} of epoch {resumed['epoch'] + 1})" if "batch" in resumed else ""
        print(f"resuming {output} from epoch {resumed['epoch']}, step {resumed['step']}{within} ({last})")
    started = time.perf_counter()
    trainer.fit(module, loader, ckpt_path=last if resumed is not None else None)
    wall = time.perf_counter() - started

    summary: dict[str, Any] = {
        "output": str(output),
        "method": cfg.method.name,
        "resumed_from": resumed,
        "fit_seconds": round(wall, 1),
        "global_step": trainer.global_step,
        "steps_run": module.steps_run,
    }
    if module.split is not None:
        summary["common_dim_auto"] = module.split.summary()
    if not trainer.is_global_zero:
        return {**summary, "rank": trainer.global_rank}
    return {**_finish(output, summary, trainer), "rank": 0}


def _finish(output: Path, summary: dict[str, Any], trainer: L.Trainer) -> dict[str, Any]:
    """Process 0 after training: the skipped samples said, the loss and monitor plots, ``summary.json``."""
    skipped = output / "skipped.txt"
    if skipped.exists():
        lines = sorted(set(skipped.read_text().splitlines()))
        summary["skipped_samples"] = lines
        print(f"{len(lines)} bad sample(s) were skipped (data.skip_bad), listed in {skipped}:")
        print("\n".join(f"  {line}" for line in lines[:20]))
    if (output / "metrics.csv").exists():
        plot_loss_curves(output / "metrics.csv", output / "loss.png")
        plot_monitors(output / "metrics.csv", output / "monitors.png")
    summary["final_loss"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _check_same_data(cfg: PretrainConfig, dataset: Any, output: Path) -> None:
    """A resumed run continues on the data it started on (moved or not), never on other data (``data.json``)."""
    started = (output / "checkpoints" / "last.ckpt").exists()
    other = f"config field `data.root`: {cfg.data.root} holds other data than the run in {output} started on"
    check_same_data(data_fingerprint(dataset), output, started, other)


def _check_same_run(cfg: PretrainConfig, saved: Path) -> None:
    changed = check_same_run(cfg.to_dict(), saved, RESUMABLE_CHANGES, defaults=PretrainConfig().to_dict())
    if "data.root" in changed and is_launcher():
        old = (yaml.safe_load(saved.read_text()) or {}).get("data", {}).get("root")
        note = f"data.root changed from {old} to {cfg.data.root} (allowed: the data's location is not the run)"
        print(f"resuming with {note}")
        with open(saved.parent / "history.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} resumed with {note}\n")
    if "trainer.max_epochs" in changed:
        old = int(yaml.safe_load(saved.read_text())["trainer"]["max_epochs"])
        if cfg.trainer.max_epochs < old:
            raise ConfigError(
                f"config field `trainer.max_epochs`: the run in {saved.parent} was planned for {old} epochs; "
                f"{cfg.trainer.max_epochs} would shorten it. A run can be extended, not shortened."
            )
