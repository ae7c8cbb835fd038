"""The convergence study: what the common and unique dimensions hold as training goes on, on the built-in data.

For every method x seed, a pretraining run with a ``TrajectoryProbe`` that, every ``every_n_steps`` optimiser
steps (and at step 0), evaluates the current encoders on held-out synthetic scenes (un-augmented, eval mode):

- cross-modal misalignment ``(1 − C_ii)^2`` of the common and of the unique dims (Eq. 1 over the evaluation set);
- R² of the ground-truth factor groups (shared = class fractions, optical-only, SAR-only) decoded by ridge probes
  from each modality's common slice, unique slice and backbone features;
- linear-probe mAP (micro) from both modalities, optical only and SAR only.

Each run's trajectory lands in ``<output>/runs/<method>-s<seed>/trajectory.json``; the study writes
``trajectories.csv`` (one row per run and evaluation step), ``summary.md`` (the last evaluation, mean ± std over
seeds) and ``trajectories.png``. Finished runs are reused.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from decur.config import load_config
from decur.data.build import build_dataset
from decur.data.synthetic import SyntheticMultimodal
from decur.evaluate.metrics import alignment
from decur.evaluate.probe import extract, grouped_r2, probe_map, probe_r2
from decur.evaluate.studies import ConvergenceConfig
from decur.train.module import PretrainModule
from decur.train.run import pretrain

METRICS = ("align_common", "align_unique")
GROUPS = ("shared", "optical", "sar")


class TrajectoryProbe(L.Callback):
    """Evaluates the model being trained every ``every`` optimiser steps; rows in ``rows``.

    Args:
        every: Steps between evaluations (also at step 0 and at the last step).
        train: Scenes the probes are fitted on.
        test: Scenes the probes are scored on.
        common_dim: ``K_c``.
        path: Where ``trajectory.json`` is written after every evaluation.

    """

    def __init__(
        self, every: int, train: SyntheticMultimodal, test: SyntheticMultimodal, common_dim: int, path: Path
    ) -> None:
        self.every, self.train, self.test, self.common_dim, self.path = every, train, test, common_dim, path
        self.rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []

    def _evaluate(self, module: Any, step: int) -> None:
        if any(r["step"] == step for r in self.rows) or not module.trainer.is_global_zero:
            return
        with torch.random.fork_rng(devices=[]):  # evaluating draws nothing from the training's random stream
            self.rows.append({"step": step, **evaluate_state(module, self.train, self.test, self.common_dim)})
        self.path.write_text(json.dumps(self.rows, indent=1))

    def rescore_last(self, run: Path) -> None:
        """Evaluate the run's final checkpoint again and replace the last row (a row written by an older decur)."""
        module = PretrainModule.from_run(run)
        with torch.random.fork_rng(devices=[]):
            row = {"step": self.rows[-1]["step"], **evaluate_state(module, self.train, self.test, self.common_dim)}
        self.rows[-1] = row
        self.path.write_text(json.dumps(self.rows, indent=1))

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Step 0: the randomly initialised encoders (or where a resumed run stands)."""
        self._evaluate(module, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        """Every ``every`` steps."""
        if trainer.global_step % self.every == 0:
            self._evaluate(module, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """The last step."""
        self._evaluate(module, trainer.global_step)


@torch.no_grad()
def evaluate_state(
    module: Any, train: SyntheticMultimodal, test: SyntheticMultimodal, common_dim: int
) -> dict[str, float]:
    """The study's numbers for the module's current weights (the module is put back in training mode)."""
    model = module.model
    was_training = model.training
    views = dict(module.views.items())
    tr, te = extract(model, views, train), extract(model, views, test)
    model.train(was_training)
    mods = model.modalities
    out: dict[str, float] = {}
    mis = alignment({m: te[f"emb/{m}"] for m in mods})  # the first two modalities, Eq. 1 over the set
    k = mis.shape[0]
    out["align_common"] = float(mis[:common_dim].mean()) if common_dim > 0 else float("nan")
    out["align_unique"] = float(mis[common_dim:].mean()) if common_dim < k else float("nan")
    out.update(slice_r2(tr, te, mods, common_dim, test))
    out.update(matched_slice_r2(tr, te, mods, common_dim, test))
    combos = {"+".join(mods): mods, **{m: [m] for m in mods}}
    for name, members in combos.items():
        xtr = torch.cat([tr[f"feat/{m}"] for m in members], 1)
        xte = torch.cat([te[f"feat/{m}"] for m in members], 1)
        out[f"map/{name}"] = probe_map(xtr, tr["label"], xte, te["label"])["map_micro"]
    return out


def slice_r2(
    tr: dict[str, torch.Tensor],
    te: dict[str, torch.Tensor],
    mods: list[str],
    common_dim: int,
    test: SyntheticMultimodal,
) -> dict[str, float]:
    """R² of each factor group from each modality's common slice, unique slice and backbone features.

    ``r2/<common|unique|features>/<m>/<group>``: ridge probes fitted on ``tr``, scored on ``te`` (the embeddings
    ``emb/<m>``, features ``feat/<m>`` and ``factors`` of the train and test scenes).
    """
    k = tr[f"emb/{mods[0]}"].shape[1]
    slices = {"common": slice(0, common_dim), "unique": slice(common_dim, k)}
    factor_names = test.factor_names
    groups = {g: [factor_names[i] for i in test.factor_groups[g]] for g in GROUPS if g != "shared"}
    out: dict[str, float] = {}
    for m in mods:
        reps = {
            f"{part}/{m}": (tr[f"emb/{m}"][:, sl], te[f"emb/{m}"][:, sl])
            for part, sl in slices.items()
            if sl.stop > sl.start
        }
        reps[f"features/{m}"] = (tr[f"feat/{m}"], te[f"feat/{m}"])
        for rep, (xtr, xte) in reps.items():
            r2 = grouped_r2(probe_r2(xtr, tr["factors"], xte, te["factors"]), test)
            out[f"r2/{rep}/shared"] = r2["shared"]
            for g, names in groups.items():
                out[f"r2/{rep}/{g}"] = float(np.mean([r2[n] for n in names]))
    return out


def matched_slice_r2(
    tr: dict[str, torch.Tensor],
    te: dict[str, torch.Tensor],
    mods: list[str],
    common_dim: int,
    test: SyntheticMultimodal,
    draws: int = 5,
) -> dict[str, float]:
    """R² of each factor group from the common and the unique slice *at the same width* (``r2m/<slice>/<m>/<g>``).

    A ridge probe on a wider slice decodes more (192 common dims vs 64 unique ones at K_c = 0.75 K), so "which
    slice holds a factor" is only answered at equal width: the wider slice is scored on ``draws`` random subsets of
    the narrower one's width (seeded), the mean taken; the narrower slice is scored whole.
    """
    k = tr[f"emb/{mods[0]}"].shape[1]
    width = min(common_dim, k - common_dim)
    if width < 1:
        return {}
    g = torch.Generator().manual_seed(0)
    slices = {"common": torch.arange(common_dim), "unique": torch.arange(common_dim, k)}
    names = test.factor_names
    groups = {"shared": None, **{grp: test.factor_groups[grp] for grp in GROUPS if grp != "shared"}}
    out: dict[str, float] = {}
    for m in mods:
        for part, dims in slices.items():
            subsets = (
                [dims]
                if len(dims) == width
                else [dims[torch.randperm(len(dims), generator=g)[:width]] for _ in range(draws)]
            )
            scores = [
                grouped_r2(probe_r2(tr[f"emb/{m}"][:, d], tr["factors"], te[f"emb/{m}"][:, d], te["factors"]), test)
                for d in subsets
            ]
            for grp, idx in groups.items():
                keys = ["shared"] if idx is None else [names[i] for i in idx]
                out[f"r2m/{part}/{m}/{grp}"] = float(np.mean([np.mean([sc[key] for key in keys]) for sc in scores]))
    return out


def run_names(cfg: ConvergenceConfig) -> dict[str, list[str]]:
    """Every run of the study by name (the methods, then the variants) with its own overrides."""
    runs = {m: [f"method.name={m}"] for m in cfg.methods}
    clash = set(runs) & set(cfg.variants)
    if clash:
        raise ValueError(f"convergence variants {sorted(clash)} have the name of a method; rename them")
    return runs | cfg.variants


def run_convergence(cfg: ConvergenceConfig, output: Path) -> list[dict[str, Any]]:
    """Run (or reuse) every method x seed; write ``trajectories.csv``, ``summary.md``, ``trajectories.png``."""
    cfg.validate()
    output.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in cfg.seeds:  # every method's first seed first: a study cut short still compares the methods
        for method, overrides in run_names(cfg).items():
            run = output / "runs" / f"{method}-s{seed}"
            run.mkdir(parents=True, exist_ok=True)
            pcfg = load_config(
                None, [*cfg.pretrain_overrides, *overrides, f"trainer.seed={seed}", "eval.enabled=false"]
            )
            pcfg.validate()
            train = build_dataset(pcfg, seed_offset=1_000, length=cfg.eval_train_samples)
            test = build_dataset(pcfg, seed_offset=2_000, length=cfg.eval_test_samples)
            assert isinstance(train, SyntheticMultimodal) and isinstance(test, SyntheticMultimodal)
            probe = TrajectoryProbe(cfg.every_n_steps, train, test, pcfg.common_dim, run / "trajectory.json")
            print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {method}, seed {seed}", flush=True)
            pretrain(pcfg, run, callbacks=[probe])
            if probe.rows and not any(k.startswith("r2m/") for k in probe.rows[-1]):
                probe.rescore_last(run)  # a run finished by an older decur: its last evaluation gains the new keys
            rows += [{"method": method, "seed": seed, **r} for r in probe.rows]
    _write(rows, cfg, output, time.perf_counter() - started)
    return rows


PANELS = [
    ("misalignment (1 − C_ii)²", ["align_common", "align_unique"]),
    ("R² shared factors", ["r2/common/optical/shared", "r2/unique/optical/shared"]),
    (
        "R² optical-only factors",
        [
            "r2/common/optical/optical",
            "r2/unique/optical/optical",
            "r2/features/optical/optical",
            "r2m/common/optical/optical",
            "r2m/unique/optical/optical",
        ],
    ),
    (
        "R² SAR-only factors",
        ["r2/common/sar/sar", "r2/unique/sar/sar", "r2/features/sar/sar", "r2m/common/sar/sar", "r2m/unique/sar/sar"],
    ),
    ("probe mAP", ["map/optical+sar", "map/optical", "map/sar"]),
]
"""The figure's panels: title and the trajectory keys drawn in it."""


def _write(rows: list[dict[str, Any]], cfg: ConvergenceConfig, output: Path, seconds: float) -> None:
    """``trajectories.csv``, ``summary.md`` (the last evaluation per method) and ``trajectories.png``."""
    rows = sorted(rows, key=lambda r: (r["method"], r["seed"], r["step"]))  # a resumed run evaluates out of order
    methods = [m for m in run_names(cfg) if any(r["method"] == m for r in rows)]
    columns = _write_csv(rows, output / "trajectories.csv")
    (output / "summary.md").write_text(_summary_table(rows, cfg, methods, columns, seconds))
    _plot_trajectories(rows, cfg, methods, output / "trajectories.png")


def _write_csv(rows: list[dict[str, Any]], path: Path) -> list[str]:
    """Every evaluation as a row; returns the metric columns (after method, seed, step)."""
    keys = sorted({k for r in rows for k in r})
    order = ["method", "seed", "step"] + [k for k in keys if k not in ("method", "seed", "step")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=order)
        writer.writeheader()
        writer.writerows(rows)
    return order[3:]


def _summary_table(
    rows: list[dict[str, Any]], cfg: ConvergenceConfig, methods: list[str], columns: list[str], seconds: float
) -> str:
    """Markdown: every metric's mean ± std over the seeds at each method's last evaluation."""
    last = {
        m: [
            max(rs, key=lambda r: r["step"])
            for s in cfg.seeds  # a study cut short: the seeds that finished
            if (rs := [r for r in rows if r["method"] == m and r["seed"] == s])
        ]
        for m in methods
    }
    short = {m: [r["seed"] for r in last[m]] for m in methods if len(last[m]) < len(cfg.seeds)}

    def cell(m: str, k: str) -> str:
        v = np.array([r.get(k, np.nan) for r in last[m]], dtype=float)
        return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if np.isfinite(v).any() else "–"

    lines = [
        f"# Convergence study: last evaluation (step {last[methods[0]][0]['step']}), mean ± std over seeds {cfg.seeds}",
        "",
        f"{len(rows)} evaluations, {seconds / 60:.1f} min.",
        "",
    ]
    if short:
        lines += ["Fewer seeds finished for: " + ", ".join(f"{m} {v}" for m, v in short.items()), ""]
    lines += ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(cell(m, k) for m in methods) + " |" for k in columns]
    return "\n".join(lines) + "\n"


def _plot_trajectories(rows: list[dict[str, Any]], cfg: ConvergenceConfig, methods: list[str], path: Path) -> None:
    """One row of ``PANELS`` per method, one line per key and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(methods), len(PANELS), figsize=(4 * len(PANELS), 2.8 * len(methods)), squeeze=False)
    for i, m in enumerate(methods):
        for j, (title, ks) in enumerate(PANELS):
            ax = axes[i, j]
            for c, k in enumerate(ks):
                for s in cfg.seeds:
                    pts = sorted((r["step"], r[k]) for r in rows if r["method"] == m and r["seed"] == s and k in r)
                    if pts:
                        xs, ys = zip(*pts, strict=True)
                        ax.plot(
                            xs,
                            ys,
                            color=f"C{c}",
                            alpha=0.8,
                            marker="o" if len(pts) == 1 else None,
                            ls="--" if k.startswith("r2m/") else "-",
                            label=_label(k) if s == cfg.seeds[0] else None,
                        )
            if title.startswith("R²"):  # a ridge probe on random-init features can score far below 0 at step 0
                ax.set_ylim(bottom=max(ax.get_ylim()[0], -0.1))
            ax.set_title(f"{m}: {title}", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _label(key: str) -> str:
    """Legend text of a trajectory key: ``r2/common/sar/sar`` → ``common/sar/sar``; equal-width R² marked."""
    return f"{key[4:]} (equal width)" if key.startswith("r2m/") else key.split("/", 1)[-1]
