"""Training callbacks: throughput and data-wait, the CSV log, atomic checkpoint files, the loss-curve plot."""

from __future__ import annotations

import csv
import errno
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import TQDMProgressBar

from decur.errors import RunError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to ``<path>.tmp``, syncs it to disk, then renames it over ``<path>``.

    A process killed while saving leaves the previous checkpoint intact.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save atomically; on failure remove the partial file and raise ``RunError`` naming the cause.

        Raises:
            RunError: The file cannot be written (disk full, read-only, no permission); the previous checkpoint
                is left as it was.

        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except KeyboardInterrupt:
            tmp.unlink(missing_ok=True)  # interrupted while writing: the previous checkpoint stays as it was
            raise
        except (OSError, RuntimeError) as err:
            tmp.unlink(missing_ok=True)
            # torch's zip writer reports any failed write as "unexpected pos": a full disk only when it is full
            full = getattr(err, "errno", None) == errno.ENOSPC or (
                "unexpected pos" in str(err) and shutil.disk_usage(path.parent).free < 64 * 2**20
            )
            cause = "no space left on device" if full else (getattr(err, "strerror", None) or str(err).splitlines()[0])
            kept = "the previous checkpoint is intact" if path.is_file() else "no earlier checkpoint exists"
            raise RunError(
                f"{path}: cannot write the checkpoint ({cause}); {kept}. Fix: free space or make the folder "
                "writable, then re-run the same command to resume"
            ) from None


class WriteConfig(L.Callback):
    """Writes the run's config to ``config.yaml`` (rank 0) when training really starts.

    A start that fails earlier (too few devices, bad data) leaves no config behind, so it cannot refuse the
    corrected command as "a run with a different config".
    """

    def __init__(self, config: dict[str, Any], path: Path) -> None:
        self.config, self.path = config, path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the file."""
        if trainer.is_global_zero:
            import yaml

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(yaml.safe_dump(self.config, sort_keys=False))


class LastCheckpoint(L.Callback):
    """Saves the full training state to ``last.ckpt``: every epoch, every ``every_n_steps`` steps, and on a stop.

    A stop is SIGTERM, or SIGUSR1 where SLURM's requeueing does not own it.

    The write is atomic (through the trainer's checkpoint IO). The checkpoint records the finished epochs, the
    optimiser steps and, mid-epoch, the batches done in the unfinished epoch: the loaders start a resumed run's
    first epoch after those batches (``decur.data.sampling.seeded_loader``), so a run resumed from any step
    checkpoint continues with the batches the uninterrupted run would have seen.
    """

    def __init__(self, path: Path, every_n_steps: int | None = None) -> None:
        self.path, self.every_n_steps = path, every_n_steps
        self._batches = 0
        self.stopped_at: int | None = None
        """The optimiser step at which a signal stopped the run (its checkpoint saved), else ``None``."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """SIGUSR1 (a batch system's advance notice) stops like SIGTERM unless a handler (SLURM's requeue) has it."""
        import signal
        import threading

        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(usr1) in (signal.SIG_DFL, None):
                connector = trainer._signal_connector  # Lightning's flag: stop after the current batch

                def stop(signum: int, frame: Any) -> None:
                    connector.received_sigterm = True

                signal.signal(usr1, stop)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Write ``last.ckpt`` every ``every_n_steps`` optimiser steps, except at the end of an epoch."""
        self._batches = idx + 1  # Lightning counts a resumed epoch's batches on from its checkpoint
        n = self.every_n_steps
        last_of_epoch = idx + 1 == trainer.num_training_batches
        if n and trainer.global_step % n == 0 and not last_of_epoch:
            self._save(trainer, finished_epochs=trainer.current_epoch, batches=self._batches)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write ``last.ckpt``."""
        self._batches = 0
        self._save(trainer, finished_epochs=trainer.current_epoch + 1)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Asked to stop (SIGTERM / SIGUSR1): save where the run stands; the exception then ends it."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException) and trainer.state.stage == "train":
            last_of_epoch = self._batches == trainer.num_training_batches
            if last_of_epoch:  # on_train_epoch_end has not run: the epoch is done all the same
                self._save(trainer, finished_epochs=trainer.current_epoch + 1)
            else:
                self._save(trainer, finished_epochs=trainer.current_epoch, batches=self._batches)
            self.stopped_at = trainer.global_step

    def _save(self, trainer: L.Trainer, finished_epochs: int, batches: int = 0) -> None:
        self._position = {"epoch": finished_epochs, "step": trainer.global_step}
        if batches:
            self._position["batch"] = batches
        trainer.save_checkpoint(self.path, weights_only=False)  # full state, not only weights

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Record where the run stands: finished epochs, optimiser steps, batches of an unfinished epoch."""
        checkpoint["decur_position"] = dict(
            getattr(self, "_position", {"epoch": trainer.current_epoch, "step": trainer.global_step})
        )


class OneLineProgress(TQDMProgressBar):
    """One progress line per stage whatever extras are installed: the loss, samples/s and the ETA.

    The monitors (effective rank, embedding spread, alignment) go to ``metrics.csv`` and the plots, not to the bar.
    """

    SHOWN: ClassVar[dict[str, str]] = {
        "loss": "loss",
        "train/loss": "loss",
        "samples_per_s": "samples/s",
        "eta_min": "ETA min",
    }

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        """The ``SHOWN`` metrics under their short names."""
        metrics = super().get_metrics(trainer, pl_module)
        return {short: metrics[name] for name, short in self.SHOWN.items() if name in metrics}


class Throughput(L.Callback):
    """Shows samples/s, the share of time spent waiting for data and the ETA of the whole run.

    Data wait is the time between the end of one training step and the start of the next (the loader's
    ``next()``), measured on rank 0 and smoothed over ``window`` steps.
    """

    def __init__(self, global_batch: int, window: int = 20) -> None:
        self.global_batch, self.window = global_batch, window
        self._last_end: float | None = None
        self._start = 0.0
        self._steps: list[tuple[float, float]] = []  # (step time, data wait)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The first batch of an epoch includes worker start-up: do not count it."""
        self._last_end = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        """Mark the start of compute."""
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Update the smoothed rates and log them to the progress bar."""
        now = time.perf_counter()
        if self._last_end is not None:
            self._steps = [
                *self._steps[-(self.window - 1) :],
                (now - self._last_end, self._start - self._last_end),
            ]
            step_time = sum(s for s, _ in self._steps) / len(self._steps)
            wait = sum(w for _, w in self._steps) / max(1e-9, sum(s for s, _ in self._steps))
            remaining = max(0, trainer.estimated_stepping_batches - trainer.global_step)
            pl_module.log("samples_per_s", self.global_batch / step_time, prog_bar=True, rank_zero_only=True)
            pl_module.log("data_wait", wait, prog_bar=True, rank_zero_only=True)
            pl_module.log("eta_min", remaining * step_time / 60, prog_bar=True, rank_zero_only=True)
        self._last_end = now


class CSVMetrics(L.Callback):
    """Appends the logged training metrics to ``metrics.csv`` every ``every`` steps (rank 0).

    On resume, rows after the restored step are dropped first, so the file always describes one history.
    ``sparse`` maps a metric-name prefix to the interval at which it is measured (e.g. ``{"rank_": 50}``): at other
    steps its cell stays empty instead of repeating a stale value.
    """

    def __init__(self, path: Path, every: int, sparse: dict[str, int] | None = None) -> None:
        self.path, self.every, self.sparse = path, max(1, every), dict(sparse or {})
        self._fields: list[str] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Trim rows from an interrupted run beyond the checkpoint we resume from."""
        if trainer.global_rank != 0 or not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= trainer.global_step]
        if rows:
            self._fields = list(rows[0].keys())
            self._write(rows, mode="w")
        else:
            self.path.unlink()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Append one row of scalars every ``every`` steps (and after the first step)."""
        step = trainer.global_step
        if trainer.global_rank == 0 and (step % self.every == 0 or step == 1):
            self._append(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Always record the state at the end of an epoch."""
        if trainer.global_rank == 0 and trainer.global_step % self.every != 0:
            self._append(trainer)

    def _append(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        row: dict[str, Any] = {"step": step, "epoch": trainer.current_epoch}
        for k, v in sorted(trainer.callback_metrics.items()):
            interval = next((n for prefix, n in self.sparse.items() if k.startswith(prefix)), None)
            last = step == trainer.estimated_stepping_batches  # the module measures the final step too
            if interval is not None and (not interval or (step % interval and step != 1 and not last)):
                continue
            row[k] = float(v)
        for i, group in enumerate(trainer.optimizers[0].param_groups):
            row[f"lr_group{i}"] = group["lr"]
        if self._fields is None:
            self._fields = list(row.keys())
        elif set(row) - set(self._fields):  # a metric appeared later (e.g. samples/s): widen the header
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self._fields += [k for k in row if k not in self._fields]
            self._write(rows, mode="w")
        self._write([row], mode="a")

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        assert self._fields is not None
        new = mode == "w" or not self.path.exists()
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)


def plot_monitors(metrics_csv: Path, out_png: Path) -> None:
    """Plot the collapse monitors and the ``common_dim: auto`` estimate against the step, one panel each.

    Panels: ``emb_std_*``, ``rank_*``, ``align_*``, ``split_common_share``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    panels = (
        [(p, [k for k in rows[0] if k.startswith(p)]) for p in ("emb_std_", "rank_", "align_", "split_")]
        if rows
        else []
    )
    panels = [(p, keys) for p, keys in panels if keys]
    if not panels:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    titles = {
        "emb_std_": "std of L2-normalised embedding",
        "rank_": "effective rank (RankMe)",
        "align_": "cross-modal C_ii: common (→1), |unique| (→0)",
        "split_": "common_dim=auto: share of common dims",
    }
    for ax, (prefix, keys) in zip(axes[0], panels, strict=True):
        for k in keys:  # sparse monitors (RankMe every rank_every steps): their measured points, joined and marked
            points = [(s, float(r[k])) for s, r in zip(steps, rows, strict=True) if r.get(k) not in (None, "")]
            xs, ys = zip(*points, strict=True) if points else ((), ())
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, ms=3, label=k.removeprefix(prefix))
        ax.set_title(titles[prefix], fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def plot_loss_curves(metrics_csv: Path, out_png: Path) -> None:
    """Plot every ``train/*`` loss term against the step (log scale when positive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k.startswith("train/") and k != "train/temperature"]
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = plt.get_cmap("tab20" if len(keys) > 10 else "tab10")
    for i, k in enumerate(keys):  # one colour per term (three modalities give 10+ terms: tab10 would repeat)
        values = [float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows]
        ax.plot(steps, values, label=k.removeprefix("train/"), color=colours(i % colours.N))
    if all(float(r[k]) > 0 for r in rows for k in keys if r.get(k) not in (None, "")):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, never over them
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
