"""The figures of ``decur explain`` (matplotlib, imported when a figure is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from decur.explain.compute import Parts, Saliency


def _plots(
    out: Path,
    numbers: dict[str, Any],
    per_batch: list[dict[str, np.ndarray]],
    compared: tuple[np.ndarray, str] | None,
    parts: Parts,
    sal: Saliency,
    cam_relu: bool,
) -> list[tuple[str, str]]:
    """Every figure of the report into ``out``; returns ``(file, caption)`` pairs."""
    import matplotlib

    matplotlib.use("Agg")
    mods = numbers["modalities"]
    layer = numbers["gradcam_layer"]
    _plot_alignment(out / "alignment.png", per_batch, numbers["alignment"]["batch_size"], parts, compared)
    _plot_tsne(out / "tsne_dimensions.png", np.array(numbers["tsne"]["points"]), mods, parts)
    _plot_gradcam(out / "gradcam.png", sal.shown, mods, parts)
    _plot_scores(out / "saliency_statistics.png", sal.scores)
    _plot_spectral(out / "spectral_saliency.png", sal.spectral, numbers["spectral_bands"], mods, parts)
    return [
        (
            "alignment.png",
            "Per-dimension cross-modal misalignment on training-style batches (one outline per batch); "
            "common dims should sit near 0, unique dims near 1.",
        ),
        ("tsne_dimensions.png", "Each point is one embedding dimension; colour = modality x common/unique."),
        (
            "gradcam.png",
            f"GradCAM of the mean common / unique output of BN(f(x)) at stage {layer}"
            f"{' (ReLU)' if cam_relu else ' (signed, no ReLU)'}.",
        ),
        (
            "saliency_statistics.png",
            f"One common and one unique score per image pair, {numbers['saliency_pairs']} pairs (Fig. 5a).",
        ),
        (
            "spectral_saliency.png",
            "Integrated Gradients per band for the common / unique output: one value per "
            "sample and band (signed mean over the image, normalised per sample), box plots over the set (Fig. 5b).",
        ),
    ]


def _plot_alignment(
    path: Path,
    per_batch: list[dict[str, np.ndarray]],
    batch: int,
    parts: Parts,
    compared: tuple[np.ndarray, str] | None,
) -> None:
    import matplotlib.pyplot as plt

    pairs = list(per_batch[0]) if per_batch else []
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 3.5), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, pair in zip(axes[0], pairs, strict=True):
        for i, b in enumerate(per_batch):
            for part, sl in parts.present():
                colour = {"common": "C0", "unique": "C1"}[part]
                ax.hist(
                    b[pair][sl],
                    bins,
                    range=(0, 1),
                    histtype="step",
                    color=colour,
                    alpha=0.5 + 0.5 / (i + 1),
                    label=f"{part} ({sl.stop - sl.start})" if i == 0 else None,
                )
        ax.set_title(f"{pair}: {len(per_batch)} batch{'es' if len(per_batch) != 1 else ''} of {batch}")
        ax.set_xlabel("(1 − C_ii)²  (0 = aligned across modalities)")
        ax.set_ylabel("dimensions")
    if compared is not None:
        axes[0, 0].hist(
            compared[0],
            bins,
            range=(0, 1),
            histtype="stepfilled",
            color="k",
            alpha=0.2,
            label=f"{compared[1]} (one batch)",
        )
    for ax in axes[0]:
        ax.legend(fontsize=8)
    _save(fig, path)


def _plot_tsne(path: Path, xy: np.ndarray, mods: list[str], parts: Parts) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    markers = {"common": "o", "unique": "x"}
    for i, m in enumerate(mods):
        part_xy = xy[i * parts.k : (i + 1) * parts.k]
        for name, sl in parts.present():
            ax.scatter(part_xy[sl, 0], part_xy[sl, 1], s=8, marker=markers[name], label=f"{m} {name}")
    ax.legend(fontsize=8)
    ax.set_title("t-SNE of embedding dimensions")
    _save(fig, path)


def _plot_gradcam(path: Path, shown: dict[str, dict[str, Tensor]], mods: list[str], parts: Parts) -> None:
    import matplotlib.pyplot as plt

    chosen = parts.present()
    fig, axes = plt.subplots(len(mods), 1 + len(chosen), figsize=(3 * (1 + len(chosen)), 3 * len(mods)), squeeze=False)
    for r, m in enumerate(mods):
        image = render(m, shown["raw"][m]) if "raw" in shown else np.zeros((8, 8))
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].set_title(m)
        for c, (n, _) in enumerate(chosen, start=1):
            axes[r, c].imshow(image, cmap="gray")
            if n in shown:
                heat = axes[r, c].imshow(shown[n][m].numpy(), cmap="jet", alpha=0.45)
                fig.colorbar(heat, ax=axes[r, c], fraction=0.046, pad=0.04, label="GradCAM (a.u.)")
            axes[r, c].set_title(f"{m}: {n}")
    for a in axes.flat:
        a.axis("off")
    _save(fig, path)


def _plot_scores(path: Path, scores: dict[str, np.ndarray]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for n, v in scores.items():
        ax.hist(v, bins=30, range=(0, 1), alpha=0.6, label=f"{n} (mean {v.mean():.3f})")
    ax.set_xlabel("score of an image pair: mean of the per-patch normalised log product of the saliency maps")
    ax.set_ylabel("image pairs")
    ax.legend()
    _save(fig, path)


def _plot_spectral(
    path: Path, spectral: dict[str, dict[str, np.ndarray]], names: dict[str, list[str]], mods: list[str], parts: Parts
) -> None:
    import matplotlib.pyplot as plt

    chosen = parts.present()
    fig, axes = plt.subplots(1, len(mods), figsize=(5.5 * len(mods), 3.8), squeeze=False)
    width = 0.8 / max(1, len(chosen))
    for c, m in enumerate(mods):
        for i, (n, _) in enumerate(chosen):
            if m not in spectral.get(n, {}):
                continue
            pos = np.arange(len(names[m])) + i * width
            box = axes[0, c].boxplot(
                spectral[n][m], positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False
            )
            for patch in box["boxes"]:
                patch.set_facecolor(f"C{i}")
            axes[0, c].plot([], [], color=f"C{i}", lw=6, label=n)
        axes[0, c].axhline(0, color="k", lw=0.5)
        axes[0, c].set_xticks(np.arange(len(names[m])) + 0.4 - width / 2)
        axes[0, c].set_xticklabels(names[m], rotation=45, fontsize=8)
        axes[0, c].set_title(f"{m}: signed IG share per band, per sample")
        axes[0, c].legend(fontsize=8)
    _save(fig, path)


def render(modality: str, x: Tensor) -> np.ndarray:
    """A displayable H x W x 3 (or H x W) rendering of one raw (un-normalised) image."""
    x = x.float()
    if x.shape[0] >= 4:  # multispectral: true-colour composite from red, green, blue
        rgb = x[[3, 2, 1]] if x.shape[0] == 13 else x[:3]
        rgb = rgb / max(float(torch.quantile(rgb, 0.98)), 1e-6)
        return rgb.clamp(0, 1).permute(1, 2, 0).numpy()
    if x.shape[0] == 3:
        lo, hi = torch.quantile(x, 0.02), torch.quantile(x, 0.98)
        return ((x - lo) / (hi - lo + 1e-6)).clamp(0, 1).permute(1, 2, 0).numpy()
    band = x[0]
    lo, hi = torch.quantile(band, 0.02), torch.quantile(band, 0.98)
    return ((band - lo) / (hi - lo + 1e-6)).clamp(0, 1).numpy()


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
