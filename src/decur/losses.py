"""The DeCUR objective, its ablations and the baselines, as pure functions of projector outputs.

Notation follows the paper (Wang et al., "DeCUR: Decoupling Common & Unique Representations for Multimodal
Self-supervision", arXiv 2309.05300). Every function takes the raw projector outputs of the augmented views,
``z1, z1_prime`` (modality 1, views 1 and 2) and ``z2, z2_prime`` (modality 2), each ``N x K``, and returns a
dict of named loss terms whose ``"total"`` entry is the value to minimise. Functions that do not need a view
accept ``None`` for it, so every method has the same call shape.

Under DDP all statistics are computed over the *global* batch: each function gathers its inputs once with the
autograd-aware collective of ``decur.distributed``. Every rank then computes the same loss value.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from decur.distributed import gather_batch

LAMBDA = 0.0051
"""Weight of the off-diagonal terms in every Barlow-Twins-style term (the paper's λ for all four losses)."""

BN_EPS = 1e-5
"""Variance epsilon of the batch standardisation (as ``BatchNorm1d(affine=False)`` in Barlow Twins)."""


# --------------------------------------------------------------------------------------------------------------
# Eq. 1 and the two matrix objectives


def standardize(z: Tensor, eps: float = BN_EPS) -> Tensor:
    """Centre each dimension over the batch and scale it to unit (biased) variance.

    With this standardisation ``a.T @ b / N`` is exactly the normalised cross-correlation of Eq. 1.
    Half-precision inputs (autocast) are promoted to float32; float64 stays float64.
    """
    z = _full(z)
    z = z - z.mean(dim=0)
    return z / torch.sqrt(z.pow(2).mean(dim=0) + eps)


def _correlation(a: Tensor, b: Tensor) -> Tensor:
    """Eq. 1 on already standardised, already gathered embeddings."""
    return a.T @ b / a.shape[0]


def correlation_moments(a: Tensor, b: Tensor, *, gram: bool | None = None) -> tuple[Tensor, Tensor]:
    """Diagonal ``C_ii`` and squared Frobenius norm ``Σ_ij C_ij²`` of Eq. 1's matrix, all the objectives need.

    ``a`` and ``b`` are standardised ``N x K_a`` and ``N x K_b`` embeddings, so ``C = aᵀb / N``. The diagonal is
    ``Σ_b a_bi b_bi / N``. The norm is taken on whichever side is cheaper: ``‖aᵀb‖² / N²`` forms the
    ``K_a x K_b`` matrix (``N K_a K_b`` multiply-adds), while the identity ``‖aᵀb‖² = ⟨a aᵀ, b bᵀ⟩`` needs only the
    two ``N x N`` Gram matrices (``N² (K_a + K_b)``) — 4x fewer for the default batch of 128 and K = 1024, 16x for
    the paper's 256 and 8192, and no ``K x K`` matrix in memory. Both are exact; the result is float32 (or
    float64) even under autocast, where a half-precision ``K x K`` product would lose the small off-diagonal sums.

    Args:
        a: ``N x K_a`` standardised embeddings.
        b: ``N x K_b`` standardised embeddings of the same samples.
        gram: Force the Gram (``True``) or the matrix (``False``) form; ``None`` takes the cheaper.

    Returns:
        ``(diag, sum_sq)``: the ``min(K_a, K_b)`` diagonal entries and the scalar ``Σ_ij C_ij²``.

    """
    n, k_a, k_b = a.shape[0], a.shape[1], b.shape[1]
    if gram is None:
        gram = n * (k_a + k_b) < k_a * k_b
    k = min(k_a, k_b)
    with torch.autocast(a.device.type, enabled=False):
        diag = (a[:, :k] * b[:, :k]).sum(dim=0) / n
        if gram:
            sum_sq = ((a @ a.T) * (b @ b.T)).sum() / n**2
        else:
            sum_sq = _correlation(a, b).pow(2).sum()
    return diag, sum_sq


def cross_correlation(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Cross-correlation matrix of Eq. 1 over the global batch.

    ``C_ij = Σ_b z^A_bi z^B_bj / (sqrt(Σ_b (z^A_bi)^2) sqrt(Σ_b (z^B_bj)^2))`` on batch-centred embeddings.
    The objectives never form this matrix (see ``correlation_moments``); it is here to look at.

    Args:
        z_a: ``N x K_a`` embeddings.
        z_b: ``N x K_b`` embeddings of the same samples.

    Returns:
        ``K_a x K_b`` matrix with entries in [-1, 1].

    """
    _check_pair(z_a, z_b)
    return _correlation(standardize(gather_batch(z_a)), standardize(gather_batch(z_b)))


def correlation_objective(a: Tensor, b: Tensor, target: float, lambda_offdiag: float = LAMBDA) -> Tensor:
    """``Σ_i (t − C_ii)^2 + λ Σ_i Σ_{j≠i} C_ij^2``: every term of DeCUR is this one (Eq. 2-5).

    ``C`` is the cross-correlation of the standardised embeddings ``a`` and ``b`` (see ``correlation_moments``);
    target ``t = 1`` pulls it to the identity (Eq. 2 across modalities on the common dimensions, Eq. 4, 5 between
    a modality's two views: Barlow Twins), ``t = 0`` to zero (Eq. 3, the unique dimensions across modalities).
    """
    diag, sum_sq = correlation_moments(a, b)
    return (target - diag).pow(2).sum() + lambda_offdiag * (sum_sq - diag.pow(2).sum())


# --------------------------------------------------------------------------------------------------------------
# DeCUR (Eq. 2-6) and its ablations (Table 4)


def decur_loss(
    z1: Tensor,
    z1_prime: Tensor,
    z2: Tensor,
    z2_prime: Tensor,
    common_dim: int,
    *,
    lambda_common: float = LAMBDA,
    lambda_unique: float = LAMBDA,
    lambda_intra_1: float = LAMBDA,
    lambda_intra_2: float = LAMBDA,
    reference_weighting: bool = False,
    cross_both_views: bool = False,
    intra: bool = True,
    decouple: bool = True,
    separation: float = 0.0,
) -> dict[str, Tensor]:
    """DeCUR loss, Eq. 6: ``L = L_common + L_unique + L_M1 + L_M2``.

    The first ``common_dim`` embedding dimensions are common: their cross-modal correlation is pulled to the
    identity (Eq. 2). The remaining ``K − common_dim`` unique dimensions are decorrelated across modalities
    (Eq. 3). Within each modality all ``K`` dimensions follow Barlow Twins between the two views (Eq. 4, 5).
    The cross-modal terms use the first views ``z1`` and ``z2``. Computed by ``decur_multimodal`` (for two
    modalities its one pair gives Eq. 6 exactly), so the paper's objective is written once.

    Args:
        z1: Modality 1, view 1, ``N x K`` raw projector outputs.
        z1_prime: Modality 1, view 2.
        z2: Modality 2, view 1.
        z2_prime: Modality 2, view 2.
        common_dim: ``K_c`` in ``0..K``. ``K`` leaves no unique block, ``0`` no common block.
        lambda_common: λ_c of Eq. 2.
        lambda_unique: λ_u of Eq. 3.
        lambda_intra_1: λ_M1 of Eq. 4.
        lambda_intra_2: λ_M2 of Eq. 5.
        reference_weighting: Reference-code behaviour, off in the paper: total is
            ``(L_M1 + L_M2 + (L_common + L_unique) / 2) / 3`` instead of the plain sum of Eq. 6.
        cross_both_views: Reference-code behaviour, off in the paper: the cross-modal terms are averaged over
            both view pairs ``(z1, z2)`` and ``(z1', z2')``.
        intra: Ablation switch (Table 4, "w/o intra"): ``False`` drops ``L_M1`` and ``L_M2``.
        decouple: Ablation switch (Table 4, "w/o decoupling"): ``False`` treats all ``K`` dimensions as
            common, whatever ``common_dim`` says.
        separation: Not in the paper, off (0) by default: weight of ``separation_objective``, which
            decorrelates each modality's common dims from its own unique dims.

    Returns:
        ``{"total", "common", "unique", "intra_1", "intra_2"}`` (and ``"separation"`` when it is on), scalars.

    Raises:
        ValueError: If the four inputs differ in shape, ``N < 2`` or ``common_dim`` is outside ``0..K``.

    """
    return decur_multimodal(  # one pair of modalities: exactly Eq. 2-6 (and the variants above)
        [z1, z2],
        [z1_prime, z2_prime],
        common_dim,
        lambda_common=lambda_common,
        lambda_unique=lambda_unique,
        lambda_intra=[lambda_intra_1, lambda_intra_2],
        reference_weighting=reference_weighting,
        cross_both_views=cross_both_views,
        intra=intra,
        decouple=decouple,
        separation=separation,
    )


def separation_objective(z: Tensor, common_dim: int) -> Tensor:
    """``Σ_{i<K_c} Σ_{j≥K_c} C_ij²`` with ``C`` the correlation of one modality's view with itself (Eq. 1).

    Not part of the paper's loss. Eq. 3 decorrelates a modality's unique dims from the *other* modality's unique
    dims and Eq. 2 constrains the common dims only across modalities, so nothing keeps a factor of a modality's own
    out of its common dims; this term penalises any linear trace of the unique dims in the common ones (and the
    reverse) within the modality. ``z`` is standardised (``standardize``), ``N x K``.
    """
    return _correlation(z[:, :common_dim], z[:, common_dim:]).pow(2).sum()


def split_dimensions(cross: Tensor, intra: Tensor, pairs: list[tuple[int, int]]) -> tuple[int, Tensor]:
    """The split of ``common_dim: auto`` (not in the paper; docs/method.md, Eq. 7): how many dimensions are common.

    Measured at the end of a warm-up in which every dimension is trained as common. ``cross[p, i]`` is the mean
    cross-modal correlation ``C_ii`` of pair ``p = (a, b)`` between views of *different* crops: the variance of
    dimension ``i`` that the two modalities share. ``intra[m, i]`` is the mean correlation of modality ``m``'s two
    views: the variance of dimension ``i`` that survives the augmentations, shared or not (its reliability). The
    shared part of the invariant signal, pooled over the dimensions and averaged over the pairs, sets the number
    of common dimensions — the dimensions the shared signal fills once it is concentrated there, as Eq. 2 asks:

        ``K_c = round(K · mean_(a,b) [Σ_i C^ab_ii / Σ_i sqrt(C^aa'_ii C^bb'_ii)])``, clipped to ``0..K``.

    The common block takes the ``K_c`` dimensions with the largest attenuation-corrected correlation
    ``ρ_i = mean_(a,b) C^ab_ii / sqrt(C^aa'_ii C^bb'_ii)`` (Spearman's correction: the share of dimension ``i``'s own
    invariant signal that is shared), so the least reordering is needed.

    Args:
        cross: ``P x K`` cross-modal correlations, one row per pair of ``pairs``.
        intra: ``M x K`` view-to-view correlations per modality.
        pairs: The ``P`` pairs ``(a, b)`` of modality indices.

    Returns:
        ``(K_c, order)``: the number of common dimensions and a permutation of ``0..K−1`` that lists the common
        dimensions first, each block in its original order.

    Raises:
        ValueError: On shapes that do not match.

    """
    if cross.ndim != 2 or intra.ndim != 2 or cross.shape[0] != len(pairs) or cross.shape[1] != intra.shape[1]:
        raise ValueError(
            f"split_dimensions needs P x K cross and M x K intra correlations for P pairs, got {tuple(cross.shape)}, "
            f"{tuple(intra.shape)} and {len(pairs)} pairs"
        )
    k = cross.shape[1]
    ceiling, rho = corrected_correlation(cross, intra, pairs)
    share = torch.stack([cross[p].sum() / ceiling[p].sum().clamp_min(1e-12) for p in range(len(pairs))]).mean()
    k_c = int(torch.round(share.clamp(0, 1) * k))
    common = torch.zeros(k, dtype=torch.bool)
    common[torch.argsort(rho, descending=True, stable=True)[:k_c]] = True
    order = torch.cat([torch.nonzero(common).flatten(), torch.nonzero(~common).flatten()])
    return k_c, order


def corrected_correlation(cross: Tensor, intra: Tensor, pairs: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """Eq. 7's pieces: per pair the ceiling ``sqrt(C^aa'_ii C^bb'_ii)`` (``P x K``), and ``ρ_i`` averaged over pairs.

    ``ρ_i = mean_(a,b) C^ab_ii / sqrt(C^aa'_ii C^bb'_ii)`` is Spearman's correction for attenuation: the share of
    dimension ``i``'s augmentation-invariant signal that the modalities share (see ``split_dimensions``).
    """
    ceiling = torch.stack([torch.sqrt(intra[a].clamp_min(0) * intra[b].clamp_min(0)) for a, b in pairs])
    return ceiling, (cross / ceiling.clamp_min(1e-6)).mean(dim=0)


PAIR_WEIGHTINGS = ("sum", "mean")


def decur_multimodal(
    first: list[Tensor],
    second: list[Tensor | None],
    common_dim: int,
    *,
    lambda_common: float = LAMBDA,
    lambda_unique: float = LAMBDA,
    lambda_intra: list[float] | None = None,
    pairs: str = "sum",
    reference_weighting: bool = False,
    cross_both_views: bool = False,
    intra: bool = True,
    decouple: bool = True,
    separation: float = 0.0,
) -> dict[str, Tensor]:
    """DeCUR over ``M >= 2`` modalities: Eq. 2 and 3 for every pair of modalities, Eq. 4 for every modality.

    ``L = P(L_common^(a,b)) + P(L_unique^(a,b)) + Σ_m L_Mm`` where ``(a, b)`` runs over the ``M(M−1)/2`` pairs of
    modalities and ``P`` is their sum (``pairs="sum"``, the default: each pair gets the paper's cross-modal terms at
    full weight) or their mean (``pairs="mean"``: the cross-modal terms keep the weight of one pair). For ``M = 2``
    there is one pair and both give the paper's Eq. 6 exactly.

    Args:
        first: The first views ``N x K`` of the modalities, in order (modality 1 first).
        second: Their second views (``None`` entries only when ``intra`` and ``cross_both_views`` are off).
        common_dim: ``K_c`` in ``0..K``.
        lambda_common: λ_c of Eq. 2 (every pair).
        lambda_unique: λ_u of Eq. 3 (every pair).
        lambda_intra: λ_Mm per modality (default ``LAMBDA`` for each).
        pairs: ``sum`` or ``mean`` over the pairs of modalities.
        reference_weighting: total ``(Σ_m L_Mm + (L_common + L_unique) / 2) / 3`` (reference code, ``M = 2``).
        cross_both_views: cross-modal terms averaged over the first-view and the second-view pairs.
        intra: ``False`` drops the intra-modal terms (Table 4, "w/o intra").
        decouple: ``False`` treats all ``K`` dims as common (Table 4, "w/o decoupling").
        separation: Not in the paper, 0 (off) by default: adds ``separation x`` ``separation_objective`` of
            every modality, averaged over its views (needs ``decouple`` and both a common and a unique block).

    Returns:
        ``{"total", "common", "unique", "intra_1", ..., "intra_M"}``; for ``M > 2`` also ``common_<a>_<b>`` and
        ``unique_<a>_<b>`` per pair (modality numbers from 1); ``"separation"`` (weighted) when it is on.

    Raises:
        ValueError: On fewer than two modalities, inputs of different shapes, ``N < 2``, ``common_dim`` outside
            ``0..K`` or an unknown ``pairs``.

    """
    m = len(first)
    if m < 2 or len(second) != m:
        raise ValueError(f"decur_multimodal needs >= 2 modalities with two view lists of equal length, got {m}")
    if pairs not in PAIR_WEIGHTINGS:
        raise ValueError(f"pairs must be one of {PAIR_WEIGHTINGS}, got {pairs!r}")
    lambdas = lambda_intra if lambda_intra is not None else [LAMBDA] * m
    if len(lambdas) != m:
        raise ValueError(f"lambda_intra needs one value per modality ({m}), got {lambdas}")
    needs_second = intra or cross_both_views
    for z in (*first[1:], *(second if needs_second else [])):
        if z is None:
            raise ValueError("second views are needed for the intra-modal or both-view terms")
        _check_pair(first[0], z)
    _check_pair(first[0], first[0])
    dim = first[0].shape[1]
    if not 0 <= common_dim <= dim:
        raise ValueError(f"common_dim must lie in 0..{dim} (the embedding size), got {common_dim}")
    if separation < 0 or (separation > 0 and not (decouple and 0 < common_dim < dim)):
        raise ValueError(
            f"separation must be >= 0 and needs decoupling with 0 < common_dim < {dim}, got "
            f"separation={separation}, decouple={decouple}, common_dim={common_dim}"
        )
    kc = dim if not decouple else common_dim
    s1 = [standardize(gather_batch(z)) for z in first]
    s2 = [standardize(gather_batch(z)) for z in second] if needs_second else []  # type: ignore[arg-type]

    zero = s1[0].new_zeros(())
    view_sets = [s1, s2] if cross_both_views else [s1]
    terms: dict[str, Tensor] = {}
    common, unique = zero, zero
    pair_list = list(itertools.combinations(range(m), 2))
    for a, b in pair_list:
        c_ab, u_ab = zero, zero
        for views in view_sets:
            if kc > 0:  # only the two diagonal blocks of the K x K matrix are needed: Eq. 2
                c_ab = c_ab + correlation_objective(views[a][:, :kc], views[b][:, :kc], 1.0, lambda_common)
            if kc < dim:  # Eq. 3
                u_ab = u_ab + correlation_objective(views[a][:, kc:], views[b][:, kc:], 0.0, lambda_unique)
        c_ab, u_ab = c_ab / len(view_sets), u_ab / len(view_sets)
        if m > 2:
            terms[f"common_{a + 1}_{b + 1}"], terms[f"unique_{a + 1}_{b + 1}"] = c_ab, u_ab
        common, unique = common + c_ab, unique + u_ab
    if pairs == "mean":
        common, unique = common / len(pair_list), unique / len(pair_list)

    # Eq. 4, 5: each modality's two views
    intra_terms = [correlation_objective(s1[i], s2[i], 1.0, lambdas[i]) if intra else zero for i in range(m)]
    intra_sum = torch.stack(intra_terms).sum()
    total = (intra_sum + (common + unique) / 2) / 3 if reference_weighting else common + unique + intra_sum
    out = {"total": total, "common": common, "unique": unique}
    if separation > 0:
        sep_views = [s1, s2] if needs_second else [s1]
        sep = torch.stack([separation_objective(v[i], kc) for v in sep_views for i in range(m)]).sum()
        sep = separation * sep / len(sep_views)
        out |= {"total": total + sep, "separation": sep}
    out |= {f"intra_{i + 1}": t for i, t in enumerate(intra_terms)}
    return out | terms


def decur_without_intra(
    z1: Tensor, z1_prime: Tensor | None, z2: Tensor, z2_prime: Tensor | None, common_dim: int, **kw: float
) -> dict[str, Tensor]:
    """Table 4 ablation "w/o intra": ``L_common + L_unique`` only (second views unused)."""
    return decur_loss(z1, z1, z2, z2, common_dim, intra=False, **kw)  # type: ignore[arg-type]


def decur_without_decoupling(
    z1: Tensor, z1_prime: Tensor, z2: Tensor, z2_prime: Tensor, common_dim: int, **kw: float
) -> dict[str, Tensor]:
    """Table 4 ablation "w/o decoupling": cross-modal Barlow Twins on all dims plus both intra terms."""
    return decur_loss(z1, z1_prime, z2, z2_prime, common_dim, decouple=False, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# Baselines (Tables 1-2). Cross-modal baselines use the first view of each modality.


def barlow_twins_cross(
    z1: Tensor,
    z1_prime: Tensor | None,
    z2: Tensor,
    z2_prime: Tensor | None,
    common_dim: int = 0,
    *,
    lambda_offdiag: float = LAMBDA,
) -> dict[str, Tensor]:
    """Cross-modal Barlow Twins: Eq. 2 on all ``K`` dims between ``z1`` and ``z2`` (also Table 4, "BT only")."""
    loss = _barlow_twins(z1, z2, lambda_offdiag)
    return {"total": loss, "cross": loss}


def barlow_twins_single(
    z1: Tensor,
    z1_prime: Tensor,
    z2: Tensor | None = None,
    z2_prime: Tensor | None = None,
    common_dim: int = 0,
    *,
    lambda_offdiag: float = LAMBDA,
) -> dict[str, Tensor]:
    """Single-modal Barlow Twins between the two views of modality 1 (modality 2 unused)."""
    loss = _barlow_twins(z1, z1_prime, lambda_offdiag)
    return {"total": loss, "intra_1": loss}


def simclr_cross(
    z1: Tensor,
    z1_prime: Tensor | None,
    z2: Tensor,
    z2_prime: Tensor | None,
    common_dim: int = 0,
    *,
    temperature: float = 0.1,
) -> dict[str, Tensor]:
    """SimCLR across modalities: NT-Xent with ``(z1_b, z2_b)`` positive, all other 2N − 2 samples negative."""
    _check_pair(z1, z2)
    z = F.normalize(_full(torch.cat([gather_batch(z1), gather_batch(z2)])), dim=1)
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = F.cross_entropy(logits, target)
    return {"total": loss, "nt_xent": loss}


def clip_loss(
    z1: Tensor,
    z1_prime: Tensor | None,
    z2: Tensor,
    z2_prime: Tensor | None,
    common_dim: int = 0,
    *,
    logit_scale: Tensor,
) -> dict[str, Tensor]:
    """CLIP: symmetric InfoNCE between modalities with a learnable temperature ``exp(logit_scale)``."""
    _check_pair(z1, z2)
    a = F.normalize(_full(gather_batch(z1)), dim=1)
    b = F.normalize(_full(gather_batch(z2)), dim=1)
    logits = logit_scale.exp() * a @ b.T
    target = torch.arange(a.shape[0], device=a.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return {"total": loss, "info_nce": loss, "temperature": 1 / logit_scale.detach().exp()}


def vicreg_cross(
    z1: Tensor,
    z1_prime: Tensor | None,
    z2: Tensor,
    z2_prime: Tensor | None,
    common_dim: int = 0,
    *,
    lambda_invariance: float = 25.0,
    mu_variance: float = 25.0,
    nu_covariance: float = 1.0,
    eps: float = 1e-4,
) -> dict[str, Tensor]:
    """VICReg (Bardes et al. 2022) between the first views of the two modalities."""
    _check_pair(z1, z2)
    a, b = _full(gather_batch(z1)), _full(gather_batch(z2))
    invariance = F.mse_loss(a, b)
    variance, covariance = a.new_zeros(()), a.new_zeros(())
    for z in (a, b):
        z = z - z.mean(dim=0)
        variance = variance + F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean() / 2
        cov = z.T @ z / (z.shape[0] - 1)
        covariance = covariance + (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / z.shape[1]
    total = lambda_invariance * invariance + mu_variance * variance + nu_covariance * covariance
    return {"total": total, "invariance": invariance, "variance": variance, "covariance": covariance}


# --------------------------------------------------------------------------------------------------------------


def _barlow_twins(z_a: Tensor, z_b: Tensor, lambda_offdiag: float) -> Tensor:
    """Eq. 2 on all dimensions of two raw embeddings, over the global batch."""
    _check_pair(z_a, z_b)
    return correlation_objective(standardize(gather_batch(z_a)), standardize(gather_batch(z_b)), 1.0, lambda_offdiag)


def _full(z: Tensor) -> Tensor:
    """Promote half precision (autocast outputs) to float32; keep float32/float64 as they are."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"embeddings must be N x K matrices of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"correlations need a batch of at least 2 samples, got N={a.shape[0]}")
