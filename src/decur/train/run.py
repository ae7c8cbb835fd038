"""A whole pretraining run: output folder, resume, Lightning trainer, evaluation and summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import lightning as L
import yaml

from decur.augment import ViewPipeline
from decur.config import Config, ConfigError, save_config
from decur.data.build import build_dataset, dataset_stats
from decur.data.sampling import seeded_loader
from decur.data.synthetic import SyntheticMultimodal
from decur.train.callbacks import (
    AtomicCheckpointIO,
    CSVMetrics,
    EpochCheckpoint,
    Throughput,
    plot_loss_curves,
)
from decur.train.host import tune_host
from decur.train.module import PretrainModule

# Fields that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {
    ("trainer", "devices"),
    ("trainer", "accelerator"),
    ("data", "num_workers"),
    ("model", "channels_last"),
}


def pretrain(cfg: Config, output: Path, *, evaluate: bool | None = None) -> dict[str, Any]:
    """Pretrain (or resume pretraining) into ``output`` and evaluate the encoders.

    Re-running with the same ``output`` continues from ``output/checkpoints/last.ckpt`` with weights, optimiser,
    scheduler, RNG states and epoch/step restored; a finished run is only re-evaluated.

    Args:
        cfg: The run configuration (validated here).
        output: Run folder: ``config.yaml``, ``checkpoints/``, ``metrics.csv``, ``loss.png``, ``summary.json``.
        evaluate: Run the built-in evaluation; default ``cfg.eval.enabled``.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        ConfigError: Invalid config, or ``output`` holds a run with a different config.

    """
    cfg.validate()
    output.mkdir(parents=True, exist_ok=True)
    _check_same_run(cfg, output / "config.yaml")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)

    tune_host()
    dataset = build_dataset(cfg)
    names = [m.name for m in cfg.data.modalities]
    stats = dataset_stats(dataset, names)
    module = PretrainModule(cfg, stats)
    trainer = _trainer(cfg, output)
    if trainer.is_global_zero:
        save_config(cfg, output / "config.yaml")
    per_device = cfg.data.batch_size // trainer.world_size
    if per_device * trainer.world_size != cfg.data.batch_size:
        raise ConfigError(
            f"config field `data.batch_size`: {cfg.data.batch_size} does not split evenly over "
            f"{trainer.world_size} processes"
        )
    loader = seeded_loader(
        dataset,
        batch_size=per_device,
        num_workers=cfg.data.num_workers,
        seed=cfg.trainer.seed,
        num_replicas=trainer.world_size,
        rank=trainer.global_rank,
        skip_log=output / "skipped.txt" if cfg.data.skip_bad else None,
    )
    if len(loader) < 1:
        raise ConfigError(f"config field `data.batch_size`: {cfg.data.batch_size} exceeds the dataset size")
    last = output / "checkpoints" / "last.ckpt"
    started = time.perf_counter()
    trainer.fit(module, loader, ckpt_path=last if last.exists() else None)
    wall = time.perf_counter() - started

    summary: dict[str, Any] = {
        "output": str(output),
        "method": cfg.method.name,
        "fit_seconds": round(wall, 1),
    }
    if not trainer.is_global_zero:
        return summary
    skipped = output / "skipped.txt"
    if skipped.exists():
        lines = sorted(set(skipped.read_text().splitlines()))
        summary["skipped_samples"] = lines
        print(f"{len(lines)} bad sample(s) were skipped (data.skip_bad), listed in {skipped}:")
        print("\n".join(f"  {line}" for line in lines[:20]))
    if (output / "metrics.csv").exists():
        plot_loss_curves(output / "metrics.csv", output / "loss.png")
    summary["final_loss"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    if (cfg.eval.enabled if evaluate is None else evaluate) and cfg.data.dataset == "synthetic":
        summary.update(_evaluate(module, cfg))
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _evaluate(module: PretrainModule, cfg: Config) -> dict[str, Any]:
    from decur.evaluate.probe import adapt_batchnorm, evaluate_encoders, random_init_like

    started = time.perf_counter()
    train = build_dataset(cfg, seed_offset=1_000, length=cfg.eval.train_samples)
    test = build_dataset(cfg, seed_offset=2_000, length=cfg.eval.test_samples)
    assert isinstance(train, SyntheticMultimodal) and isinstance(test, SyntheticMultimodal)
    model = module.model.cpu().float()
    views = {k: cast(ViewPipeline, v.cpu()) for k, v in module.views.items()}
    out: dict[str, Any] = {"pretrained": evaluate_encoders(model, views, train, test, cfg.common_dim)}
    if cfg.eval.random_init:
        rand = random_init_like(model, cfg.trainer.seed)
        out["random_init"] = evaluate_encoders(rand, views, train, test, cfg.common_dim)
        adapt_batchnorm(rand, views, train)
        out["random_init_bn"] = evaluate_encoders(rand, views, train, test, cfg.common_dim)
    out["eval_seconds"] = round(time.perf_counter() - started, 1)
    out["common_dim"] = cfg.common_dim
    return out


def _trainer(cfg: Config, output: Path) -> L.Trainer:
    t = cfg.trainer
    loggers: list[Any] = []
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(output, name="tensorboard", version=""))
    except ImportError:
        pass
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        logger=loggers or False,
        log_every_n_steps=t.log_every_n_steps,
        callbacks=[
            EpochCheckpoint(output / "checkpoints" / "last.ckpt"),
            Throughput(cfg.data.batch_size),
            CSVMetrics(output / "metrics.csv", t.log_every_n_steps),
        ],
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,  # EpochCheckpoint writes last.ckpt; Lightning's default would add a second copy
        default_root_dir=output,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # ours is already sharded and seeded
        deterministic=False,
    )


def _check_same_run(cfg: Config, saved: Path) -> None:
    if not saved.exists():
        return
    old = yaml.safe_load(saved.read_text())
    new = cfg.to_dict()
    diffs = [
        f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {value!r}"
        for section, fields in new.items()
        for key, value in fields.items()
        if old.get(section, {}).get(key) != value and (section, key) not in _RESUMABLE_CHANGES
    ]
    if diffs:
        raise ConfigError(
            f"output folder {saved.parent} holds a run with a different config ({'; '.join(diffs)}). "
            "Choose another --output to start a new run, or repeat the original settings to resume it."
        )
