"""Collapse monitors: cheap statistics of the batch embeddings that reveal a silent collapse while training.

- ``emb_std_<m>``: mean over dimensions of the std over the batch of the L2-normalised embedding. A healthy
  embedding spreads over the sphere, ``≈ 1/√K``; a collapsed one maps every input to one point, ``→ 0``
  (the SimSiam paper's monitor).
- ``rank_<m>``: RankMe (Garrido et al. 2023), ``exp`` of the entropy of the normalised singular values of the batch
  embedding: the number of dimensions in use, from 1 (collapse) to ``min(N, K)``.
- ``align_common`` / ``align_unique`` (two modalities): the mean cross-modal correlation ``C_ii`` of the common
  dimensions (DeCUR pulls it to 1) and the mean ``|C_ii|`` of the unique ones (pushed to 0), on batch-standardised
  first views, as in Eq. 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def embedding_std(z: Tensor) -> Tensor:
    """Mean per-dimension std of the L2-normalised embeddings ``N x K`` (``≈ 1/√K`` healthy, ``0`` collapsed)."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def effective_rank(z: Tensor, eps: float = 1e-7) -> Tensor:
    """RankMe of ``N x K`` embeddings: ``exp(−Σ p_k log p_k)``, ``p = σ / Σσ + ε`` over the singular values σ."""
    s = torch.linalg.svdvals(z.detach().float())
    p = s / s.sum().clamp_min(eps) + eps
    return torch.exp(-(p * p.log()).sum())


def cross_alignment(za: Tensor, zb: Tensor, common_dim: int) -> tuple[Tensor, Tensor]:
    """``(mean C_ii of the common dims, mean |C_ii| of the unique dims)`` of two modalities' embeddings."""
    a, b = (F.batch_norm(z.detach().float(), None, None, training=True, eps=1e-5) for z in (za, zb))
    c_ii = (a * b).mean(dim=0)
    nan = torch.tensor(math.nan, device=c_ii.device)
    common = c_ii[:common_dim].mean() if common_dim > 0 else nan
    unique = c_ii[common_dim:].abs().mean() if common_dim < c_ii.numel() else nan
    return common, unique


def collapsed(std: float, dim: int, factor: float = 0.1) -> bool:
    """True when ``emb_std`` fell below ``factor / √K``: (almost) every input maps to the same direction."""
    return std < factor / math.sqrt(dim)
