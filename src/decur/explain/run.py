"""``explain``: Algorithm 2 on a run, its numbers (``explain.json``), figures and ``report.md``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from decur.config import ConfigError
from decur.data.build import build_dataset
from decur.data.synthetic import SyntheticMultimodal
from decur.datasets import dataset_spec
from decur.explain.compute import (
    ExplainConfig,
    Parts,
    alignment_per_batch,
    alignment_summary,
    dimension_tsne,
    embeddings,
    ground_truth_check,
    resolve_device,
    saliency_numbers,
    saliency_over_set,
)
from decur.explain.figures import _plots


def explain(
    run: str | Path,
    out: str | Path,
    compare: str | Path | None = None,
    options: ExplainConfig | None = None,
) -> dict:
    """Write every plot, ``explain.json`` and ``report.md`` for ``run`` into ``out``; returns the numbers.

    Each step of Algorithm 2 is computed by its own function (numbers first); the plots and the report read them.
    Forward passes, GradCAM and Integrated Gradients run on ``options.accelerator`` (the GPU when there is one).
    """
    from decur.train.module import PretrainModule  # (Lightning: the figures' readers need none)

    o = (options or ExplainConfig()).validate()
    started = time.perf_counter()
    out = Path(out)
    device = resolve_device(o.accelerator)
    module, dataset = _run_and_data(run, o.samples, device)
    out.mkdir(parents=True, exist_ok=True)  # after the run and its data are known good: no empty folder on error
    cfg, mods = module.cfg, module.model.modalities
    n_samples = min(o.samples, len(dataset))  # type: ignore[arg-type]
    parts = Parts(cfg.common_dim, cfg.embed_dim)
    numbers: dict[str, Any] = {
        "run": str(run),
        "modalities": mods,
        "common_dim": parts.kc,
        "embed_dim": parts.k,
        "options": dict(vars(o)),
    }
    notes = [
        f"this run has no {n} dimensions (common_dim = {'K' if n == 'unique' else 0}): {n}-dimension outputs "
        "are skipped"
        for n in ("unique", "common")
        if n not in dict(parts.present())
    ]

    def stage(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.1f} s] {text}", flush=True)

    batch = min(cfg.data.batch_size, n_samples)
    if batch < o.MIN_BATCH:
        raise ConfigError(
            f"{run}: its batches hold {batch} samples; correlations over fewer than {o.MIN_BATCH} are meaningless "
            "(over 2 each one is ±1). Give --samples of at least 4, or explain a run trained with larger batches"
        )
    if batch < 16:
        notes.append(f"the alignment correlations are over batches of {batch} samples only: read them as noisy")
    used = min(o.alignment_batches, max(1, len(dataset) // batch))  # type: ignore[arg-type]
    fewer = f" ({o.alignment_batches} asked; {len(dataset)} samples hold {used})" if used < o.alignment_batches else ""  # type: ignore[arg-type]
    stage(f"alignment on {used} training-style batches of {batch}{fewer}")
    per_batch = alignment_per_batch(module, dataset, used, batch)
    numbers["alignment"] = alignment_summary(per_batch, parts, batch)
    above = sum(sum(p["above_one"]) for p in numbers["alignment"]["pairs"].values())
    if above:
        notes.append(
            f"{above} dimension(s) over all batches and pairs have (1 − C_ii)² > 1 (anti-correlated): "
            "outside the histogram's range (0, 1), counted in explain.json "
            "(alignment.pairs.*.above_one)"
        )
    compared = None
    if compare is not None:
        other = PretrainModule.from_run(compare).to(device)
        if other.model.modalities != mods:
            raise ConfigError(
                f"--compare {compare}: a run of the modalities {other.model.modalities}, this run has {mods}; "
                "compare runs of the same modalities"
            )
        first = next(iter(alignment_per_batch(other, dataset, 1, batch)[0].values()))
        numbers["compare"] = {"run": str(compare), "per_dimension": first.tolist(), "above_one": int((first > 1).sum())}
        compared = (first, f"{Path(compare).name} ({other.cfg.method.name}, K_c={other.cfg.common_dim})")

    stage(f"embeddings of {n_samples} samples, t-SNE of the embedding dimensions")
    z = embeddings(module, dataset, n_samples)
    numbers["tsne"] = {"points": dimension_tsne(z).tolist()}

    stage(f"GradCAM and Integrated Gradients on {n_samples} samples, batches of {o.batch_size}")
    sal = saliency_over_set(module, dataset, n_samples, parts, o, device)
    numbers.update(saliency_numbers(sal, {mod.name: mod.bands for mod in cfg.data.modalities}))
    if isinstance(dataset, SyntheticMultimodal) and len(parts.present()) == 2:
        stage("ground-truth check against the synthetic factors")
        numbers["ground_truth"] = ground_truth_check(dataset, z, parts.kc, numbers["spectral_saliency"])
    numbers["notes"] = notes
    numbers["seconds"] = round(time.perf_counter() - started, 1)
    plots = _plots(out, numbers, per_batch, compared, parts, sal, o.cam_relu)
    (out / "explain.json").write_text(json.dumps(numbers, indent=1))
    (out / "report.md").write_text(_report(run, numbers, plots, n_samples))
    return numbers


def _run_and_data(run: str | Path, samples: int, device: torch.device) -> tuple[Any, Dataset]:
    """The run's module on ``device`` and the samples to explain (the synthetic data drawn fresh; else the run's)."""
    from decur.train.module import PretrainModule  # (Lightning: the figures' readers need none)

    module = PretrainModule.from_run(run).to(device)
    cfg, mods = module.cfg, module.model.modalities
    if len(mods) < 2:
        raise ConfigError(
            f"{run}: a one-modality run ({cfg.method.name} on {mods}) has no cross-modal common and unique "
            "dimensions to explain; explain a run of two or more modalities (decur, barlow_twins_cross, ...)"
        )
    generated = dataset_spec(cfg.data.dataset).generated  # fresh scenes of the same world, else the data
    dataset = build_dataset(cfg, seed_offset=3_000, length=samples) if generated else build_dataset(cfg)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise ValueError(f"{run}: explain reads samples by index; point it at a map-style copy of the data")
    return module, dataset


def _report(run: str | Path, numbers: dict[str, Any], plots: list[tuple[str, str]], n: int) -> str:
    a = numbers["alignment"]
    lines = [f"# What the common and unique dimensions of `{run}` look at", ""]
    lines += [f"> {note}" for note in numbers["notes"]]
    lines += [
        f"Modalities {numbers['modalities']}, K = {numbers['embed_dim']}, common dims K_c = {numbers['common_dim']}, "
        f"{n} samples ({numbers['saliency_pairs']} image pairs in the saliency statistics), {numbers['seconds']} s.",
        "",
        f"Mean misalignment (1 − C_ii)² over {a['batches']} training-style batches of {a['batch_size']}: common "
        f"{_fmt(a['common_mean'])}, unique {_fmt(a['unique_mean'])}.",
        "",
    ]
    if "ground_truth" in numbers:
        g = numbers["ground_truth"]
        lines += [
            "Against the synthetic data's known factors: unique-dim misalignment is "
            f"{g['alignment_ratio']:.2f}x the common-dim one (whole evaluation set); the optical unique dims put "
            f"{_fmt(g.get('optical_unique_band_share_unique'))} of their band attribution (weighted by where haze "
            f"and phenology act) on those bands, the common dims {_fmt(g.get('optical_unique_band_share_common'))}.",
            "",
            "R² of the known factors decoded from each slice (ridge probe; 'shared' = mean over class fractions):",
            "",
        ]
        columns = list(next(iter(g["factor_r2"].values())))
        lines += ["| slice | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [
            f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |" for name, row in g["factor_r2"].items()
        ]
        lines.append("")
    for name, caption in plots:
        lines += [f"![{name}]({name})", "", caption, ""]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
