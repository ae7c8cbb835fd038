"""Cross-modal retrieval: find the same location's other modality among N candidates.

For a pair of modalities ``(a, b)`` and N samples, query ``i`` is sample ``i`` of modality ``a`` and its one
correct answer is sample ``i`` of modality ``b`` among all N. Both sets are standardised per dimension over the N
samples (as the paper's batch-normalised embeddings) and compared by cosine similarity. The rank of the correct
answer counts every candidate scoring at least as high, itself included (ties count against the query: a
representation that maps everything to one point ranks every answer last, not first). Reported: recall@k (the
share of queries whose answer ranks within k) and the median rank, with the random floors ``k / N`` and
``(N + 1) / 2``.

Representations: the common slice of the embedding (``K_c`` dims, the one DeCUR aligns across modalities), the
whole embedding, and the backbone features. The backbones of two modalities are separate networks with no shared
coordinate system, so their retrieval is expected near the floor; it is reported as that reference.
"""

from __future__ import annotations

import itertools

import torch.nn.functional as F
from torch import Tensor

KS = (1, 5, 10)


def _standardized(x: Tensor) -> Tensor:
    x = x.double()
    x = x - x.mean(dim=0)
    return F.normalize(x / (x.std(dim=0, unbiased=False) + 1e-8), dim=1)


def ranks(query: Tensor, gallery: Tensor) -> Tensor:
    """1-based rank of gallery item ``i`` for query ``i`` (ties counted against the query), ``N`` ints."""
    if query.ndim != 2 or query.shape != gallery.shape or query.shape[0] < 2:
        raise ValueError(
            f"retrieval needs two N x D sets of the same shape, N >= 2, got {tuple(query.shape)}, "
            f"{tuple(gallery.shape)}"
        )
    sim = _standardized(query) @ _standardized(gallery).T
    return (sim >= sim.diagonal()[:, None]).sum(dim=1)


def retrieval_scores(query: Tensor, gallery: Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """recall@k, median rank and their random floors for ``query[i] → gallery[i]``."""
    r = ranks(query, gallery).double()
    n = r.numel()
    out = {f"recall@{k}": float((r <= k).double().mean()) for k in ks}
    out["median_rank"] = float(r.median())
    out |= {f"random_recall@{k}": min(1.0, k / n) for k in ks}
    out["random_median_rank"] = (n + 1) / 2
    out["candidates"] = float(n)
    return out


def pairwise_retrieval(
    features: dict[str, Tensor], embeddings: dict[str, Tensor], common_dim: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Retrieval in both directions for every pair of modalities, per representation.

    Args:
        features: Modality → backbone features ``N x D`` (the same N samples in the same order).
        embeddings: Modality → projector embeddings ``N x K``.
        common_dim: ``K_c``; the common representation is ``embeddings[:, :K_c]`` (skipped when 0).

    Returns:
        ``{"<a>-><b>": {"common": scores, "embedding": scores, "features": scores}, ...}``.

    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in itertools.permutations(list(embeddings), 2):
        spaces = {"embedding": (embeddings[a], embeddings[b]), "features": (features[a], features[b])}
        if common_dim > 0:
            spaces = {"common": (embeddings[a][:, :common_dim], embeddings[b][:, :common_dim]), **spaces}
        out[f"{a}->{b}"] = {name: retrieval_scores(q, g) for name, (q, g) in spaces.items()}
    return out


def format_retrieval(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """A table: recall@1/5/10 and median rank per direction and representation, with the floors."""
    first = next(iter(next(iter(results.values())).values()))
    n = int(first["candidates"])
    floor = " / ".join(f"{first[f'random_recall@{k}']:.3f}" for k in KS)
    lines = [
        f"Cross-modal retrieval among {n} candidates: recall@1 / @5 / @10, median rank "
        f"(random: {floor}, {first['random_median_rank']:.1f})"
    ]
    for direction, spaces in results.items():
        for space, s in spaces.items():
            recalls = " / ".join(f"{s[f'recall@{k}']:.3f}" for k in KS)
            lines.append(f"  {direction:<24}{space:<11}{recalls:>24}{s['median_rank']:>10.1f}")
    return "\n".join(lines)
