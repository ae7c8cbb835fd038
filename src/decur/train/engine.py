"""The run machinery shared by pretraining and transfer: run folder, Lightning trainer, checkpoints, resume.

A run is a folder: ``config.yaml`` (the resolved config), ``checkpoints/last.ckpt`` (the full training state,
written atomically), ``metrics.csv`` and a summary JSON. Re-running the same command on the same folder resumes
from ``last.ckpt``; a folder holding a run with another config is refused, naming the fields that differ.

``config.yaml`` is written when training really starts (``WriteConfig``), and a folder is compared only with
a run that has a checkpoint: a start that failed (too few devices, a bad path) never binds its folder to its
config. While a process trains in a folder it holds ``<folder>/.lock`` (``run_lock``); a second process on
the same folder is refused, naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException

from decur.config import ConfigError, EngineConfig
from decur.errors import RunError
from decur.runfiles import read_checkpoint
from decur.train.callbacks import (
    AtomicCheckpointIO,
    CSVMetrics,
    LastCheckpoint,
    OneLineProgress,
    Throughput,
    WriteConfig,
)


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
    run_config: dict[str, Any] | None = None,
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
        run_config: The run's config as plain data, written to ``output/config.yaml`` when training starts.

    Raises:
        ConfigError: The accelerator, devices, nodes, strategy or precision cannot be set up on this machine.

    """
    engine, mapped = fit_to_machine(engine, global_batch)
    if mapped and is_launcher():
        print(f"decur: {mapped}", flush=True)
    loggers: list[Any] = []
    if engine.tensorboard:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(output, name="tensorboard", version=""))
        except (ImportError, ModuleNotFoundError):
            raise ConfigError(
                "config field `trainer.tensorboard`: TensorBoard is not installed (pip install tensorboard)"
            ) from None
    callbacks: list[L.Callback] = [] if run_config is None else [WriteConfig(run_config, output / "config.yaml")]
    try:
        return _trainer(
            output,
            engine,
            max_epochs,
            max_steps,
            progress,
            loggers,
            [
                *callbacks,
                Throughput(global_batch),
                # the step's metrics row is on disk before the checkpoint that claims the step: a process killed
                # between the two resumes from the earlier checkpoint and trims the row, never loses one
                CSVMetrics(output / "metrics.csv", engine.log_every_n_steps, sparse_metrics),
                LastCheckpoint(output / "checkpoints" / "last.ckpt", every_n_steps),
                *extra_callbacks,
            ],
        )
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        what = f"accelerator={engine.accelerator!r}, devices={engine.devices!r}, strategy={engine.strategy!r}"
        raise ConfigError(
            f"config section `trainer` ({what}) cannot run on this machine: {str(err).splitlines()[0]} "
            "(e.g. trainer.accelerator=cpu trainer.devices=1 trainer.strategy=auto)"
        ) from None


def fit_to_machine(engine: EngineConfig, global_batch: int) -> tuple[EngineConfig, str | None]:
    """The device count a config asks for, fitted to the devices this machine has; and what was changed, said.

    The paper trained on 4 GPUs with DDP, and its configs say so. Where fewer GPUs are present (or none, with
    ``accelerator: auto``) the run uses what there is, keeping the **global** batch (``data.batch_size``): the
    objective's correlations are batch statistics, so the batch is not split into accumulated micro-batches, which
    would change the loss. An explicit ``accelerator: cpu`` with several devices (CPU DDP) is kept as asked.
    """
    asked = engine.devices
    if not isinstance(asked, int) or asked <= 1 or engine.num_nodes > 1:
        return engine, None
    import dataclasses

    gpus = torch.cuda.device_count()
    if engine.accelerator == "auto" and gpus == 0:
        have, where = 1, "no GPU here: one CPU process"
    elif engine.accelerator in ("auto", "gpu", "cuda") and 0 < gpus < asked:
        have, where = gpus, f"{gpus} GPU(s) here"
    else:
        return engine, None
    fitted = dataclasses.replace(engine, devices=have, strategy="auto" if have == 1 else engine.strategy)
    note = (
        f"the config asks for {asked} devices ({engine.strategy}); {where} runs it with the global batch of "
        f"{global_batch} kept ({global_batch // have} per device instead of {global_batch // asked}); "
        "set trainer.devices / trainer.strategy to choose otherwise"
    )
    return fitted, note


EXPECTED_WARNINGS = {
    r"You're resuming from a checkpoint that ended before the epoch ended": "decur's loaders skip the batches a "
    "mid-epoch checkpoint had done (LastCheckpoint, seeded_loader)",
    r"The '\w+_dataloader' does not have many workers": "the worker count is the user's (data.num_workers)",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated": "inside Lightning 2.6 with torch >= 2.10, not decur's code",
    r"Your `IterableDataset` has `__len__` defined": "the v1.1 shard loader's length is exact by construction",
}
"""Warnings decur expects, each with the reason it is not the user's concern."""


def quiet_lightning() -> None:
    """Lightning's start-up notes and tips off, the warnings of ``EXPECTED_WARNINGS`` filtered.

    decur's output is one progress line per stage; anything else Lightning warns about still shows.
    """
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def _trainer(
    output: Path,
    engine: EngineConfig,
    max_epochs: int,
    max_steps: int,
    progress: bool,
    loggers: list[Any],
    callbacks: list[L.Callback],
) -> L.Trainer:
    quiet_lightning()
    if progress:
        callbacks = [*callbacks, OneLineProgress()]
    return L.Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        enable_progress_bar=progress,
        accelerator=engine.accelerator,
        devices=engine.devices,
        num_nodes=engine.num_nodes,
        strategy=engine.strategy,
        precision=engine.precision,
        logger=loggers or False,
        log_every_n_steps=engine.log_every_n_steps,
        callbacks=callbacks,
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

    ``epoch`` is the number of finished epochs, ``step`` the number of optimiser steps taken; a checkpoint written
    mid-epoch adds ``batch``, the batches done in the unfinished epoch.
    """
    if not checkpoint.is_file():
        return None
    state = read_checkpoint(checkpoint, "resume")
    position = state.get("decur_position") or {"epoch": state.get("epoch", 0), "step": state.get("global_step", 0)}
    point = {"epoch": int(position["epoch"]), "step": int(position["step"])}
    return point | ({"batch": int(position["batch"])} if position.get("batch") else {})


def check_checkpoint_fits(path: Path, module: torch.nn.Module) -> None:
    """Refuse to resume from a checkpoint whose weights are not this run's model's (another run's ``last.ckpt``).

    Raises:
        RunError: Naming how many tensors are missing, extra or of another shape, with one example, and the fix.

    """
    saved = read_checkpoint(path, "resume")["state_dict"]
    own = module.state_dict()
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    shaped = sorted(k for k in set(own) & set(saved) if tuple(own[k].shape) != tuple(saved[k].shape))
    if not (missing or extra or shaped):
        return
    example = (
        f"{shaped[0]} is {tuple(saved[shaped[0]].shape)} there, {tuple(own[shaped[0]].shape)} here"
        if shaped
        else f"e.g. {(missing or extra)[0]!r} {'missing' if missing else 'not in this model'}"
    )
    raise RunError(
        f"{path}: holds another model's weights ({len(missing)} missing, {len(extra)} extra, {len(shaped)} of "
        f"another shape; {example}), not this run's. Fix: move it away to start over, or resume with the config "
        "that wrote it"
    )


def is_launcher() -> bool:
    """True in the process that launches (or alone runs) a job: no launcher gave it a non-zero rank."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` while a run trains in ``folder``; released when the process ends, however it ends.

    Only the launching process takes it (the DDP worker processes it starts share its run).

    Raises:
        RunError: Another process holds the lock (the message names its pid, host and start time).

    """
    if not is_launcher():
        yield
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(
            f"{folder}: cannot create the run folder ({err.strerror or err}). Fix: choose another "
            "--output, or make its parent writable"
        ) from None
    path = folder / ".lock"
    key = str(path.resolve())

    def refuse(holder: str) -> RunError:
        return RunError(
            f"{folder}: a run is already training in this folder ({holder or 'another process'}). Fix: wait for it, "
            "stop it, or choose another --output"
        )

    if key in _HELD:  # this process: a POSIX lock does not conflict with its own (and a second close would free it)
        raise refuse(path.read_text().strip())
    handle = open(path, "a+")
    try:
        # a POSIX record lock belongs to this process alone: forked loader workers do not inherit it (they would
        # an flock), so a killed run frees its folder at once, not when its orphaned workers notice and exit
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise refuse(holder) from None
    _HELD.add(key)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        _HELD.discard(key)
        handle.close()


_HELD: set[str] = set()
"""Lock files this process holds (``run_lock``)."""


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
        saved: The folder's ``config.yaml``; compared only when the folder also holds ``checkpoints/last.ckpt``.
        may_change: Dotted field names allowed to differ (devices, workers, ...).
        defaults: The config class's defaults as plain data: a field that the saved file lacks (a run started by
            an older decur, before the field existed) is compared with its default instead, so upgrading decur
            does not orphan a run whose settings did not change.

    Raises:
        ConfigError: Naming every other field that differs.

    """
    if not saved.exists() or not (saved.parent / "checkpoints" / "last.ckpt").exists():
        return []  # no run started here (or it failed before its first checkpoint): nothing to continue
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


def check_same_data(now: dict[str, Any], folder: Path, started: bool, other: str) -> None:
    """A run continues (or reuses its results) only on the data it started on, moved or not.

    Args:
        now: The data's fingerprint (``decur.data.build.data_fingerprint``).
        folder: The run or seed folder; its ``data.json`` holds the fingerprint it started with.
        started: Whether the folder holds a checkpoint or results of that start.
        other: The start of the message when the data differ (which field points at them, and where).

    Raises:
        ConfigError: The fingerprint differs from the recorded one.

    """
    saved = folder / "data.json"
    if started and saved.is_file():
        before = json.loads(saved.read_text())
        if before != now:
            raise ConfigError(
                f"{other} ({now} against {before}); a moved dataset may resume a run or reuse its results, a "
                "different one may not. Choose another --output"
            )
    elif is_launcher():
        folder.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(now))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_yaml(config: dict[str, Any], path: Path) -> None:
    """Write a config as YAML (the run folder's ``config.yaml``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
