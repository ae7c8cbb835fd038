"""``decur experiment``: the miniature of the paper's Tables 1, 2 and 4 on the built-in synthetic data.

For every method (DeCUR, its ablations, the baselines, random init) it pretrains once (resuming finished runs),
then transfers with every protocol x label fraction x modality combination and seed, and writes
``results.csv`` (one row per cell), ``results.md`` (mean ± std tables, plus the factor R² of the built-in
evaluation) and ``results.png``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from decur.config import load_config
from decur.datasets import UNIQUE_FACTORS
from decur.evaluate.studies import ExperimentConfig, SweepConfig
from decur.evaluate.transfer.config import TransferConfig
from decur.evaluate.transfer.run import run_transfer


def run_experiment(cfg: ExperimentConfig, output: Path, progress: bool = False) -> list[dict[str, Any]]:
    """Run the grid into ``output``; returns the rows of ``results.csv``."""
    from decur.evaluate.probe import evaluate_run  # (torch)
    from decur.train.run import pretrain  # (Lightning: imported when a run starts)

    cfg.validate()
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    r2: dict[str, dict[str, float]] = {}
    for entry in cfg.methods:
        name, _, single = entry.partition(":")
        run_dir: Path | None = None
        if name not in ("random", "random_bn"):
            overrides = [*cfg.pretrain_overrides, f"method.name={name}", f"data.image_size={cfg.image_size}"]
            if single:
                bands = {"optical": 13, "sar": 2}[single]
                overrides.append(f"data.modalities=[{{name: {single}, bands: {bands}, augment: {single}}}]")
            run_dir = output / "runs" / entry.replace(":", "-")
            print(f"[{time.perf_counter() - started:6.0f} s] pretraining {entry}", flush=True)
            pretrain(load_config(None, overrides), run_dir)
            r2[entry] = _factor_r2(evaluate_run(run_dir))
        for protocol in cfg.protocols:
            for fraction in cfg.label_fractions:
                for mods in cfg.modalities:
                    if single and mods != [single]:
                        continue
                    run = TransferConfig(
                        pretrained=str(run_dir) if run_dir else None,
                        modalities=mods,
                        protocol=protocol,
                        label_fraction=fraction,
                        epochs=cfg.linear_epochs if protocol == "linear" else cfg.finetune_epochs,
                        batch_size=cfg.batch_size,
                        seeds=cfg.seeds,
                        train_samples=cfg.train_samples,
                        test_samples=cfg.test_samples,
                        image_size=cfg.image_size,
                        adapt_bn=name == "random_bn",
                    )
                    cell = f"{entry.replace(':', '-')}/{protocol}-{fraction}-{'+'.join(mods)}"
                    result = run_transfer(run, output / "transfer" / cell, progress=progress)
                    rows.append(
                        {
                            "method": entry,
                            "protocol": protocol,
                            "label_fraction": fraction,
                            "modalities": "+".join(mods),
                            "seeds": len(cfg.seeds),
                            "map_micro_mean": result["map_micro"]["mean"],
                            "map_micro_std": result["map_micro"]["std"],
                            "map_macro_mean": result["map_macro"]["mean"],
                            "f1_micro_mean": result["f1_micro"]["mean"],
                        }
                    )
                    print(f"[{time.perf_counter() - started:6.0f} s] {rows[-1]}", flush=True)
    wall = time.perf_counter() - started
    _write(rows, r2, cfg, output, wall)
    return rows


def _factor_r2(summary: dict[str, Any]) -> dict[str, float]:
    """R² of the synthetic factors from the backbone features (all modalities of the run, concatenated)."""
    if "pretrained" not in summary:
        return {}
    features = {k: v for k, v in summary["pretrained"]["r2"].items() if k.startswith("features/")}
    if not features:
        return {}
    r2 = max(features.items(), key=lambda kv: kv[0].count("+"))[1]  # the multimodal entry where there is one
    only = {m: [r2[name] for name in names] for m, names in UNIQUE_FACTORS.items() if all(n in r2 for n in names)}
    return {
        "shared factors": r2["shared"],
        "optical-only factors": float(np.mean(only["optical"])),
        "SAR-only factors": float(np.mean(only["sar"])),
    }


def _write(
    rows: list[dict[str, Any]], r2: dict[str, dict[str, float]], cfg: ExperimentConfig, out: Path, wall: float
) -> None:
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    columns = sorted({(r["protocol"], r["label_fraction"], r["modalities"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["protocol"], r["label_fraction"], r["modalities"]): r for r in rows}
    lines = [
        f"# Miniature transfer grid (synthetic data) — mAP micro, mean ± std over {len(cfg.seeds)} seed(s)",
        "",
        f"Wall time {wall / 60:.1f} min. Grid: {json.dumps(cfg.__dict__)}",
        "",
        "| method | " + " | ".join(f"{p} {f:.0%} {m}" for p, f, m in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method in methods:
        cells = []
        for p, f, m in columns:
            r = cell.get((method, p, f, m))
            cells.append(f"{r['map_micro_mean']:.3f} ± {r['map_micro_std']:.3f}" if r else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if r2:
        keys = list(dict.fromkeys(k for v in r2.values() for k in v))
        lines += [
            "",
            "Factor R² of the built-in evaluation (ridge probe on the backbone features of the run's "
            "modalities; single-modal runs see only their own sensor):",
            "",
            "| method | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for method, values in r2.items():
            lines.append(f"| {method} | " + " | ".join(f"{values[k]:.3f}" if k in values else "–" for k in keys) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(rows, columns, methods, out / "results.png")


def _plot(rows: list[dict[str, Any]], columns: list[tuple], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell = {(r["method"], r["protocol"], r["label_fraction"], r["modalities"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(min(18, max(6, 0.3 * len(columns) * len(methods))), 5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        means = [cell[(method, *c)]["map_micro_mean"] if (method, *c) in cell else np.nan for c in columns]
        stds = [cell[(method, *c)]["map_micro_std"] if (method, *c) in cell else 0 for c in columns]
        ax.bar(np.arange(len(columns)) + i * width, means, width, yerr=stds, label=method)
    ax.set_xticks(np.arange(len(columns)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{p}\n{f:.0%}\n{m}" for p, f, m in columns], fontsize=7)
    ax.set_ylabel("mAP (micro)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_sweep(cfg: SweepConfig, output: Path) -> list[dict[str, Any]]:
    """Pretrain once per value, probe every modality combination; writes ``sweep.{csv,md,png}``."""
    import yaml

    from decur.train.run import pretrain  # (Lightning: imported when a run starts)

    cfg.validate()
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for value in cfg.values:
        label = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        run_dir = output / "runs" / f"{cfg.parameter}={label}".replace("/", "_").replace(" ", "")
        overrides = [*cfg.pretrain_overrides, f"data.image_size={cfg.image_size}", f"{cfg.parameter}={label}"]
        print(f"[{time.perf_counter() - started:6.0f} s] pretraining with {cfg.parameter}={label}", flush=True)
        pretrain(load_config(None, overrides), run_dir)
        for mods in cfg.modalities:
            result = run_transfer(
                TransferConfig(
                    pretrained=str(run_dir),
                    modalities=mods,
                    protocol="linear",
                    epochs=cfg.linear_epochs,
                    batch_size=cfg.batch_size,
                    seeds=cfg.seeds,
                    train_samples=cfg.train_samples,
                    test_samples=cfg.test_samples,
                    image_size=cfg.image_size,
                ),
                run_dir / "transfer" / "+".join(mods),
                progress=False,
            )
            rows.append(
                {
                    "value": label,
                    "modalities": "+".join(mods),
                    "map_micro_mean": result["map_micro"]["mean"],
                    "map_micro_std": result["map_micro"]["std"],
                }
            )
    _write_sweep(cfg, rows, output, (time.perf_counter() - started) / 60)
    return rows


def _write_sweep(cfg: SweepConfig, rows: list[dict[str, Any]], output: Path, minutes: float) -> None:
    """``sweep.csv`` (one row per value and modality combination), ``sweep.md`` (the table) and ``sweep.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(output / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labels = list(dict.fromkeys(r["value"] for r in rows))
    combos = list(dict.fromkeys(r["modalities"] for r in rows))
    cell = {(r["value"], r["modalities"]): r for r in rows}
    lines = [
        f"# Sweep of `{cfg.parameter}` — linear-probe mAP micro, {len(cfg.seeds)} seed(s)",
        "",
        f"Wall time {minutes:.1f} min. Fixed: {cfg.pretrain_overrides}",
        "",
        f"| {cfg.parameter} | " + " | ".join(combos) + " |",
        "|---|" + "---|" * len(combos),
    ]
    for v in labels:
        cells = [f"{cell[(v, c)]['map_micro_mean']:.3f} ± {cell[(v, c)]['map_micro_std']:.3f}" for c in combos]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    (output / "sweep.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in combos:
        means = [cell[(v, c)]["map_micro_mean"] for v in labels]
        stds = [cell[(v, c)]["map_micro_std"] for v in labels]
        ax.errorbar(range(len(labels)), means, yerr=stds, marker="o", capsize=3, label=c)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, fontsize=8)
    ax.set_xlabel(cfg.parameter)
    ax.set_ylabel("linear-probe mAP (micro)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output / "sweep.png", dpi=120)
    plt.close(fig)
