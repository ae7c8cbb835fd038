"""The split study: ``method.common_dim: auto`` against the paper's grid search over shares of common dimensions.

Per setting of the synthetic truth (how much each modality sees alone) and seed: one pretraining per share of the
grid and one with ``auto``, each probed by the built-in evaluation (``decur.evaluate.probe.evaluate_run``: a
linear multi-label probe on the joint features, ridge R² of the factors). The grid's best share is the one with
the highest seed-mean mAP (the paper's criterion); ``auto`` is compared with it on mAP, on the R² of the unique
factors and on compute. Writes ``split.csv`` (one row per run), ``split.md`` (the table) and ``split.png``.
Re-running with the same output skips every run that is done.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from decur.config import load_config
from decur.evaluate.studies import SplitStudyConfig

__all__ = ["SplitStudyConfig", "run_split_study"]


def run_split_study(cfg: SplitStudyConfig, output: Path) -> list[dict[str, Any]]:
    """Run (or finish) the study into ``output``; returns the rows of ``split.csv``."""
    from decur.evaluate.probe import evaluate_run  # (torch)
    from decur.train.run import pretrain  # (Lightning: imported when a run starts)

    cfg.validate()
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    shares: list[float | str] = [*cfg.grid, "auto"]
    runs = [(name, seed, share) for name in cfg.settings for seed in cfg.seeds for share in shares]
    for i, (name, seed, share) in enumerate(runs):
        run_dir = output / "runs" / name / f"seed{seed}" / (f"share{share}" if share != "auto" else "auto")
        extra = ["method.common_dim=auto", *cfg.auto_overrides] if share == "auto" else [f"method.common_share={share}"]
        overrides = [*cfg.pretrain_overrides, *cfg.settings[name], f"trainer.seed={seed}", "eval.random_init=false"]
        summary_path = run_dir / "summary.json"
        done = summary_path.is_file() and "pretrained" in json.loads(summary_path.read_text())
        if not done:
            elapsed = time.perf_counter() - started
            print(f"[{elapsed:6.0f} s] run {i + 1}/{len(runs)}: {name}, seed {seed}, share {share}", flush=True)
            pretrain(load_config(None, [*overrides, *extra]), run_dir)
            evaluate_run(run_dir)
        row = _row(name, seed, share, json.loads(summary_path.read_text()))
        if share == "auto":
            row |= alternative_shares(run_dir / "checkpoints" / "last.ckpt")
        rows.append(row)
    _write(cfg, rows, output, (time.perf_counter() - started) / 60)
    return rows


ALTERNATIVES = {
    "alt_per_dim_half": "dimensions whose corrected correlation ρ_i exceeds ½ (each dimension to its nearer target)",
    "alt_mean_rho": "the mean over dimensions of ρ_i",
    "alt_raw_cross": "the mean cross-modal correlation C^ab_ii, uncorrected for the augmentations",
}
"""Other rules, computed on the same warm-up statistics as Eq. 7 (``decur.losses.split_dimensions``), for the record."""


def alternative_shares(checkpoint: Path) -> dict[str, float]:
    """The share of common dimensions each rule of ``ALTERNATIVES`` gives on an ``auto`` run's warm-up statistics."""
    import itertools

    import torch

    from decur.losses import corrected_correlation  # (torch: the report's reader needs none)

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["common_dim_auto"]
    cross, intra = state["cross"] / state["count"], state["intra"] / state["count"]
    _, rho = corrected_correlation(cross, intra, list(itertools.combinations(range(intra.shape[0]), 2)))
    return {
        "alt_per_dim_half": float((rho > 0.5).double().mean()),
        "alt_mean_rho": float(rho.clamp(0, 1).mean()),
        "alt_raw_cross": float(cross.mean(dim=0).clamp(0, 1).mean()),
    }


def _row(setting: str, seed: int, share: float | str, summary: dict[str, Any]) -> dict[str, Any]:
    pre = summary["pretrained"]
    joint = max(pre["map"], key=lambda k: k.count("+"))  # the multimodal combination
    r2 = pre["r2"][f"features/{joint}"]
    unique = [v for k, v in r2.items() if k != "shared"]
    k_c, found = summary["common_dim"], summary.get("common_dim_auto")
    return {
        "setting": setting,
        "seed": seed,
        "run": "auto" if share == "auto" else "grid",
        "common_share": found["common_share"] if found else float(share),
        "common_dim": k_c,
        "map_micro": pre["map"][joint]["map_micro"],
        "unique_r2": float(np.mean(unique)) if unique else float("nan"),
        "shared_r2": r2["shared"],
        "fit_seconds": summary["fit_seconds"],
    }


def aggregate(rows: list[dict[str, Any]], settings: list[str]) -> list[dict[str, Any]]:
    """Per setting: the grid's best share (highest seed-mean mAP) against ``auto`` (means and stds over seeds)."""
    out = []
    for name in settings:
        grid = [r for r in rows if r["setting"] == name and r["run"] == "grid"]
        auto = [r for r in rows if r["setting"] == name and r["run"] == "auto"]
        shares = sorted({r["common_share"] for r in grid})
        curve = {s: [r for r in grid if r["common_share"] == s] for s in shares}
        best = max(shares, key=lambda s: float(np.mean([r["map_micro"] for r in curve[s]])))

        def stats(group: list[dict[str, Any]], key: str) -> tuple[float, float]:
            values = [r[key] for r in group]
            return float(np.mean(values)), float(np.std(values))

        grid_seconds = sum(r["fit_seconds"] for r in grid)
        out.append(
            {
                "setting": name,
                "best_share": best,
                "best_map": stats(curve[best], "map_micro"),
                "best_unique_r2": stats(curve[best], "unique_r2"),
                "auto_share": stats(auto, "common_share"),
                "auto_map": stats(auto, "map_micro"),
                "auto_unique_r2": stats(auto, "unique_r2"),
                "map_gap_points": 100 * (stats(auto, "map_micro")[0] - stats(curve[best], "map_micro")[0]),
                "compute_ratio": sum(r["fit_seconds"] for r in auto) / grid_seconds if grid_seconds else float("nan"),
                "alternatives": {k: stats(auto, k) for k in ALTERNATIVES if all(k in r for r in auto)},
                "curve": {s: (stats(curve[s], "map_micro"), stats(curve[s], "unique_r2")) for s in shares},
            }
        )
    return out


def _write(cfg: SplitStudyConfig, rows: list[dict[str, Any]], output: Path, minutes: float) -> None:
    with open(output / "split.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    summary = aggregate(rows, list(cfg.settings))

    def pm(v: tuple[float, float], digits: int = 3) -> str:
        return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"

    lines = [
        "# `common_dim: auto` against the grid search",
        "",
        f"`decur split` · {len(cfg.seeds)} seed(s) · grid {cfg.grid} · pretraining time of all runs "
        f"{sum(r['fit_seconds'] for r in rows) / 60:.1f} min · wall time of this invocation {minutes:.1f} min.",
        f"Shared overrides: {cfg.pretrain_overrides}; auto: {cfg.auto_overrides or 'defaults'}.",
        "",
        "| truth | overrides | grid best share | its mAP | its unique R² | auto share | auto mAP | auto unique R² "
        "| mAP gap (points) | compute auto / grid |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['setting']} | {' '.join(cfg.settings[s['setting']]) or '(defaults)'} | {s['best_share']} "
            f"| {pm(s['best_map'])} | {pm(s['best_unique_r2'])} | {pm(s['auto_share'])} | {pm(s['auto_map'])} "
            f"| {pm(s['auto_unique_r2'])} | {s['map_gap_points']:+.2f} | {s['compute_ratio']:.2f} |"
        )
    lines += ["", "Other rules on the same warm-up statistics (share of common dimensions, mean ± std over seeds):", ""]
    lines += ["| rule | " + " | ".join(s["setting"] for s in summary) + " |", "|---|" + "---|" * len(summary)]
    lines.append("| Eq. 7 (decur's) | " + " | ".join(pm(s["auto_share"]) for s in summary) + " |")
    for key, text in ALTERNATIVES.items():
        if all(key in s["alternatives"] for s in summary):
            lines.append(f"| {text} | " + " | ".join(pm(s["alternatives"][key]) for s in summary) + " |")
    lines += ["", "Grid curves (seed means): share → mAP / unique-factor R²", ""]
    for s in summary:
        cells = ", ".join(f"{k}: {m[0]:.3f} / {u[0]:.3f}" for k, (m, u) in s["curve"].items())
        lines.append(f"- {s['setting']}: {cells}")
    (output / "split.md").write_text("\n".join(lines) + "\n")
    _plot(summary, output / "split.png")


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(summary), figsize=(4 * len(summary), 6), squeeze=False, sharex=True)
    for col, s in enumerate(summary):
        shares = list(s["curve"])
        for row, (key, label) in enumerate((("map", "probe mAP (micro)"), ("unique_r2", "unique-factor R²"))):
            ax = axes[row][col]
            idx = 0 if key == "map" else 1
            means = [s["curve"][v][idx][0] for v in shares]
            stds = [s["curve"][v][idx][1] for v in shares]
            ax.errorbar(shares, means, yerr=stds, marker="o", ms=4, capsize=3, label="grid search")
            auto_y = s["auto_map"] if key == "map" else s["auto_unique_r2"]
            ax.errorbar(
                [s["auto_share"][0]], [auto_y[0]], xerr=[s["auto_share"][1]], yerr=[auto_y[1]],
                marker="*", ms=12, color="C3", capsize=3, label="auto (found share)",
            )  # fmt: skip
            ax.axvline(s["best_share"], color="C0", ls=":", lw=1)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{s['setting']} unique information")
            else:
                ax.set_xlabel("share of common dimensions")
        axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
