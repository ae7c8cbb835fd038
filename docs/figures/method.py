"""Draw docs/figures/method.png: DeCUR's networks and the targets of its correlation matrices (Eq. 2-5).

Run ``python docs/figures/method.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch

K, KC = 16, 12  # embedding width and common dimensions of the drawing (the paper: 8192, 87.5 %)


def box(ax, x, y, w, h, text, colour):
    """A rounded box with centred text."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=colour, ec="k", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)


def arrow(ax, x0, y0, x1, y1):
    """An arrow from (x0, y0) to (x1, y1)."""
    ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "lw": 0.8})


def networks(ax):
    """Two modalities x two views through E_m and P_m into split embeddings."""
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6.6)
    ax.axis("off")
    for row, (name, colour) in enumerate((("M2 (S2)", "#cfe3f7"), ("M1 (S1)", "#f7dccf"))):
        y = 0.6 + row * 3
        m = 2 - row
        for label, dy in (("view x", 1.2), ("view x'", 0.0)):
            box(ax, 0.1, y + dy, 1.6, 0.8, f"{name} {label}", colour)
            box(ax, 2.3, y + dy, 1.2, 0.8, f"E{m}", "#eeeeee")
            box(ax, 4.0, y + dy, 1.2, 0.8, f"P{m}", "#eeeeee")
            arrow(ax, 1.7, y + dy + 0.4, 2.3, y + dy + 0.4)
            arrow(ax, 3.5, y + dy + 0.4, 4.0, y + dy + 0.4)
            arrow(ax, 5.2, y + dy + 0.4, 5.8, y + dy + 0.4)
            common = 3.2 * KC / K
            ax.add_patch(plt.Rectangle((5.8, y + dy + 0.15), common, 0.5, fc="#4c72b0", ec="k", lw=0.5))
            ax.add_patch(plt.Rectangle((5.8 + common, y + dy + 0.15), 3.2 - common, 0.5, fc="#dd8452", ec="k", lw=0.5))
        ax.text(5.8 + 1.6 * KC / K, y + 2.15, "common", ha="center", fontsize=7, color="#4c72b0")
        ax.text(5.8 + 3.2 * KC / K + 1.6 * (K - KC) / K, y + 2.15, "unique", ha="center", fontsize=7, color="#dd8452")
    ax.text(
        5,
        6.35,
        "one encoder E and projector P per modality; embeddings split into common | unique",
        ha="center",
        fontsize=9,
    )


def target(ax, matrix, title, split=None):
    """A target correlation matrix, the common / unique blocks shaded when ``split`` is given."""
    ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1)
    if split is not None:  # the common block (top left) and the unique block (bottom right)
        ax.add_patch(plt.Rectangle((-0.5, -0.5), split, split, fc="#4c72b0", alpha=0.25, ec="#4c72b0"))
        ax.add_patch(
            plt.Rectangle((split - 0.5, split - 0.5), K - split, K - split, fc="#dd8452", alpha=0.25, ec="#dd8452")
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def main() -> None:
    """Draw and save the figure next to this script."""
    fig = plt.figure(figsize=(10, 3.6))
    networks(fig.add_axes((0.0, 0.0, 0.55, 1.0)))
    cross = np.zeros((K, K))
    cross[np.arange(KC), np.arange(KC)] = 1
    target(
        fig.add_axes((0.58, 0.12, 0.19, 0.7)),
        cross,
        "cross-modal corr(z1, z2)\ncommon block → I (Eq. 2)\nunique block → 0 (Eq. 3)",
        split=KC,
    )
    intra = "within a modality corr(z, z')\n→ I on all K dims\n(Eq. 4, 5)"
    target(fig.add_axes((0.80, 0.12, 0.19, 0.7)), np.eye(K), intra)
    out = Path(__file__).with_suffix(".png")
    fig.savefig(out, dpi=130)
    print(out)


if __name__ == "__main__":
    main()
