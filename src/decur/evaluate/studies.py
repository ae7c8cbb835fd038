"""The configs of the studies on the synthetic data: the experiment grid, the sweeps and the convergence study.

Declared apart from the code that runs them (``decur.evaluate.experiment``, ``decur.evaluate.convergence``)
so that reading and checking them imports no torch; each registers its kind with ``decur.config.register_kind``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from decur.config import METHOD_NAMES, ConfigError, load_config, register_kind
from decur.evaluate.transfer.config import TransferConfig

ALL_METHODS = [
    "decur",
    "decur_no_intra",
    "decur_no_decoupling",
    "barlow_twins_cross",
    "barlow_twins_single:optical",
    "barlow_twins_single:sar",
    "simclr_cross",
    "clip",
    "vicreg_cross",
    "random",
    "random_bn",
]
"""``random``: random weights with BatchNorm's default statistics; ``random_bn``: random weights with BatchNorm
statistics re-estimated on the training images (the fair floor, see ``decur.evaluate.probe.adapt_batchnorm``)."""


@dataclass
class ProbeStudyConfig:
    """Settings shared by the experiment grid and the sweeps: pretraining overrides, inputs, seeds, transfer data."""

    pretrain_overrides: list[str] = field(default_factory=list)
    """Overrides of the built-in default pretraining config shared by every run (e.g. trainer.max_epochs=4)."""
    modalities: list[list[str]] = field(default_factory=lambda: [["optical", "sar"], ["optical"], ["sar"]])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    linear_epochs: int = 30
    train_samples: int = 1024
    test_samples: int = 512
    image_size: int = 64
    batch_size: int = 64

    def _validate_settings(self, kind: str) -> None:
        _need(bool(self.seeds), kind, "seeds", "an empty list runs nothing; give e.g. [0]")
        for name in ("linear_epochs", "train_samples", "test_samples", "image_size", "batch_size"):
            _need(getattr(self, name) >= 1, kind, name, f"must be >= 1, got {getattr(self, name)}")
        _need(bool(self.modalities) and all(self.modalities), kind, "modalities", "non-empty lists of modalities")
        for mods in self.modalities:
            TransferConfig(modalities=mods).validate(check_paths=False)
        load_config(None, self.pretrain_overrides).validate(check_paths=False)


def _need(ok: bool, kind: str, name: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{kind} config field `{name}`: {why}")


@dataclass
class ExperimentConfig(ProbeStudyConfig):
    """The grid. ``methods`` entries are method names; ``barlow_twins_single:<modality>`` trains one modality."""

    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    protocols: list[str] = field(default_factory=lambda: ["linear", "finetune"])
    label_fractions: list[float] = field(default_factory=lambda: [0.01, 1.0])
    finetune_epochs: int = 5

    def validate(self, check_paths: bool = True) -> ExperimentConfig:
        """Check every field before anything runs; raises ``ConfigError`` naming it."""
        self._validate_settings("experiment")
        _need(bool(self.methods), "experiment", "methods", "an empty list runs nothing")
        for entry in self.methods:
            name, _, single = entry.partition(":")
            known = name in (*METHOD_NAMES, "random", "random_bn")
            _need(
                known, "experiment", "methods", f"{entry!r}: not a method of {[*METHOD_NAMES, 'random', 'random_bn']}"
            )
            _need(
                not single or single in ("optical", "sar"),
                "experiment",
                "methods",
                f"{entry!r}: the single modality is optical or sar",
            )
        _need(
            set(self.protocols) <= {"linear", "finetune"} and bool(self.protocols),
            "experiment",
            "protocols",
            f"linear and/or finetune, got {self.protocols}",
        )
        _need(
            bool(self.label_fractions) and all(0 < f <= 1 for f in self.label_fractions),
            "experiment",
            "label_fractions",
            f"shares in (0, 1], got {self.label_fractions}",
        )
        _need(self.finetune_epochs >= 1, "experiment", "finetune_epochs", f"must be >= 1, got {self.finetune_epochs}")
        return self


@dataclass
class SweepConfig(ProbeStudyConfig):
    """One pretraining parameter varied, everything else fixed; linear-probe mAP per value (Figures 3, 6, 7).

    ``parameter`` is a dotted config field, e.g. ``method.common_share`` (the common-dimension share sweep) or
    ``model.projector`` (the projector-dimension sweep; ``[]`` = no projector).
    """

    parameter: str = "method.common_share"
    values: list[Any] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.875, 1.0])

    def validate(self, check_paths: bool = True) -> SweepConfig:
        """Check every field, and every value of the swept parameter as a pretraining config."""
        self._validate_settings("sweep")
        _need(bool(self.values), "sweep", "values", "an empty list runs nothing")
        for value in self.values:
            override = f"{self.parameter}={json.dumps(value)}"
            load_config(None, [*self.pretrain_overrides, override]).validate(check_paths=False)
        return self


@dataclass
class ConvergenceConfig:
    """The study: methods x seeds of one pretraining config, probed every ``every_n_steps`` steps."""

    methods: list[str] = field(
        default_factory=lambda: ["decur", "decur_no_intra", "decur_no_decoupling", "barlow_twins_cross"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrain_overrides: list[str] = field(default_factory=list)
    """Overrides of the built-in default pretraining config shared by every run."""
    variants: dict[str, list[str]] = field(default_factory=dict)
    """Further named runs (each for every seed): name -> overrides on top of ``pretrain_overrides``, e.g.
    ``{"decur_common25": ["method.name=decur", "method.common_share=0.25"]}``."""
    every_n_steps: int = 100
    eval_train_samples: int = 512
    eval_test_samples: int = 512

    def validate(self, check_paths: bool = True) -> ConvergenceConfig:
        """Check every field, and every method and variant as a pretraining config; raises ``ConfigError``."""

        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"convergence config field `{name}`: {why}")

        need(bool(self.seeds), "seeds", "an empty list runs nothing; give e.g. [0]")
        need(bool(self.methods) or bool(self.variants), "methods", "name at least one method or variant")
        for name in ("every_n_steps", "eval_train_samples", "eval_test_samples"):
            need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        runs = {m: [f"method.name={m}"] for m in self.methods} | self.variants
        for name, overrides in runs.items():
            try:
                load_config(None, [*self.pretrain_overrides, *overrides]).validate(check_paths=False)
            except ConfigError as err:
                raise ConfigError(f"convergence config run {name!r}: {err}") from None
        return self


@dataclass
class SplitStudyConfig:
    """``common_dim: auto`` against the paper's grid search, on synthetic worlds with more or less unique information.

    For every setting of the truth and every seed: one pretraining per share of ``grid`` (the paper's procedure,
    Fig. 3a / 6) and one with ``method.common_dim=auto``, each evaluated by the built-in probes (multi-label mAP of
    the joint features, R² of the factors).
    """

    settings: dict[str, list[str]] = field(
        default_factory=lambda: {
            "little": ["data.unique_factors=1", "data.unique_strength=0.3"],
            "medium": [],
            "much": ["data.unique_factors=4", "data.unique_strength=1.5"],
        }
    )
    """Name -> overrides that set the truth (``data.unique_factors``, ``data.unique_strength``), in order."""
    grid: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 0.875, 1.0])
    """The shares of common dimensions the grid search pretrains with."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrain_overrides: list[str] = field(default_factory=list)
    """Overrides of the built-in default pretraining config shared by every run."""
    auto_overrides: list[str] = field(default_factory=list)
    """Further overrides of the ``auto`` runs only (e.g. ``method.auto_warmup=0.25``)."""

    def validate(self, check_paths: bool = True) -> SplitStudyConfig:
        """Check every field, and every run as a pretraining config; raises ``ConfigError`` naming it."""
        _need(bool(self.settings), "split", "settings", "name at least one setting of the truth")
        _need(len(self.grid) >= 1, "split", "grid", "give the shares to search, e.g. [0.25, 0.5, 0.75, 1.0]")
        _need(all(0 <= v <= 1 for v in self.grid), "split", "grid", f"shares in [0, 1], got {self.grid}")
        _need(bool(self.seeds), "split", "seeds", "an empty list runs nothing; give e.g. [0]")
        for name, truth in self.settings.items():
            for extra in ([f"method.common_share={self.grid[0]}"], ["method.common_dim=auto", *self.auto_overrides]):
                try:
                    load_config(None, [*self.pretrain_overrides, *truth, *extra]).validate(check_paths=False)
                except ConfigError as err:
                    raise ConfigError(f"split config setting {name!r}: {err}") from None
        return self


register_kind("sweep", SweepConfig)
register_kind("split", SplitStudyConfig)
register_kind("experiment", ExperimentConfig)
register_kind("convergence", ConvergenceConfig)
