"""The run machinery shared by pretraining and transfer: run folder, Lightning trainer, checkpoints, resume.

A run is a folder: ``config.yaml`` (the resolved config), ``checkpoints/last.ckpt`` (the full training state,
written atomically), ``metrics.csv`` and a summary JSON. Re-running the same command on the same folder resumes
from ``last.ckpt``; a folder holding a run with another config is refused, naming the fields that differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from decur.config import ConfigError, EngineConfig
from decur.train.callbacks import AtomicCheckpointIO, CSVMetrics, LastCheckpoint, Throughput

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


def build_trainer(
    output: Path,
    engine: EngineConfig,
    *,
    global_batch: int,
    max_epochs: int,
    max_steps: int = -1,
    every_n_steps: int | None = None,
    progress: bool = True,
    sparse_metrics: dict[str, int] | None = None,
    extra_callbacks: Iterable[L.Callback] = (),
) -> L.Trainer:
    """A Lightning trainer writing into the run folder ``output``.

    Args:
        output: Run folder.
        engine: Accelerator, devices, nodes, strategy, precision and log interval.
        global_batch: Samples per optimiser step over all processes (for samples/s).
        max_epochs: Epochs to train.
        max_steps: Optimiser steps to train (``-1``: as many as ``max_epochs`` give).
        every_n_steps: Also write ``last.ckpt`` every this many optimiser steps (iteration-based schedules).
        progress: Show the progress bar (samples/s, ETA).
        sparse_metrics: Metric-name prefix → the step interval at which it is measured (left empty in between).
        extra_callbacks: Further callbacks.

    """
    loggers: list[Any] = []
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(output, name="tensorboard", version=""))
    except ImportError:
        pass
    return L.Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        enable_progress_bar=progress,
        accelerator=engine.accelerator,
        devices=engine.devices,
        num_nodes=engine.num_nodes,
        strategy=engine.strategy,
        precision=engine.precision,  # type: ignore[arg-type]
        logger=loggers or False,
        log_every_n_steps=engine.log_every_n_steps,
        callbacks=[
            LastCheckpoint(output / "checkpoints" / "last.ckpt", every_n_steps),
            Throughput(global_batch),
            CSVMetrics(output / "metrics.csv", engine.log_every_n_steps, sparse_metrics),
            *extra_callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,  # LastCheckpoint writes last.ckpt; Lightning's default would add a second copy
        default_root_dir=output,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers are sharded and seeded
        deterministic=False,
    )


def per_process_batch(global_batch: int, trainer: L.Trainer, field: str) -> int:
    """``global_batch`` split over the trainer's processes; the config field must split evenly."""
    per_device = global_batch // trainer.world_size
    if per_device < 1 or per_device * trainer.world_size != global_batch:
        raise ConfigError(
            f"config field `{field}`: {global_batch} does not split evenly over {trainer.world_size} processes"
        )
    return per_device


def resume_point(checkpoint: Path) -> dict[str, int] | None:
    """``{"epoch": E, "step": S}`` at which a run resumes from ``checkpoint`` (``None`` when there is none).

    ``epoch`` is the number of finished epochs, ``step`` the number of optimiser steps taken.
    """
    if not checkpoint.is_file():
        return None
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    position = state.get("decur_position") or {"epoch": state.get("epoch", 0), "step": state.get("global_step", 0)}
    return {"epoch": int(position["epoch"]), "step": int(position["step"])}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_run(
    config: dict[str, Any], saved: Path, may_change: Iterable[str] = (), defaults: dict[str, Any] | None = None
) -> list[str]:
    """Refuse a run folder that holds a run with another config; returns the fields that changed but may.

    Args:
        config: The new run's config as plain data.
        saved: The folder's ``config.yaml``.
        may_change: Dotted field names allowed to differ (devices, workers, ...).
        defaults: The config class's defaults as plain data: a field that the saved file lacks (a run started by
            an older decur, before the field existed) is compared with its default instead, so upgrading decur
            does not orphan a run whose settings did not change.

    Raises:
        ConfigError: Naming every other field that differs.

    """
    if not saved.exists():
        return []
    old, new = flatten(yaml.safe_load(saved.read_text()) or {}), flatten(config)
    old = {k: v for k, v in flatten(defaults or {}).items() if k in new} | old
    changed = sorted(k for k in old.keys() | new.keys() if _plain(old.get(k)) != _plain(new.get(k)))
    allowed = set(may_change)
    refused = [k for k in changed if k not in allowed]
    if refused:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in refused)
        raise ConfigError(
            f"output folder {saved.parent} holds a run with a different config ({diffs}). "
            "Choose another --output to start a new run, or repeat the original settings to resume it."
        )
    return [k for k in changed if k in allowed]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_yaml(config: dict[str, Any], path: Path) -> None:
    """Write a config as YAML (the run folder's ``config.yaml``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
