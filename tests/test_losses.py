"""The loss module against an independent implementation of Eq. 1-6, lightly's losses, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from decur import losses

LAM = 0.0051


# ---- an independent reference, written from the paper's equations with explicit sums in numpy float64 ----------


def ref_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. 1, literally: C_ij = Σ_b a_bi b_bj / (sqrt(Σ_b a_bi²) sqrt(Σ_b b_bj²)) on batch-centred inputs."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    k_a, k_b = a.shape[1], b.shape[1]
    c = np.zeros((k_a, k_b))
    for i in range(k_a):
        for j in range(k_b):
            c[i, j] = (a[:, i] * b[:, j]).sum() / (math.sqrt((a[:, i] ** 2).sum()) * math.sqrt((b[:, j] ** 2).sum()))
    return c


def ref_bt(c: np.ndarray, lam: float, target_diag: float) -> float:
    total = 0.0
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            total += (target_diag - c[i, j]) ** 2 if i == j else lam * c[i, j] ** 2
    return total


def ref_decur(z1, z1p, z2, z2p, kc):
    c = ref_corr(z1, z2)
    k = c.shape[0]
    common = ref_bt(c[:kc, :kc], LAM, 1.0) if kc > 0 else 0.0
    unique = ref_bt(c[kc:, kc:], LAM, 0.0) if kc < k else 0.0
    intra_1 = ref_bt(ref_corr(z1, z1p), LAM, 1.0)
    intra_2 = ref_bt(ref_corr(z2, z2p), LAM, 1.0)
    return {
        "common": common,
        "unique": unique,
        "intra_1": intra_1,
        "intra_2": intra_2,
        "total": common + unique + intra_1 + intra_2,
    }


def embeddings(n=12, k=10, seed=0, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, k, generator=g, dtype=dtype)
    zs = [base + 0.7 * torch.randn(n, k, generator=g, dtype=dtype) * (i + 1) for i in range(4)]
    return [z.requires_grad_(requires_grad) for z in zs]


# ---- values and gradients against the reference ------------------------------------------------------------------


@pytest.mark.parametrize("kc", [0, 3, 7, 10])
def test_decur_loss_matches_independent_reference(kc):
    zs = embeddings()
    ours = losses.decur_loss(*zs, kc)
    ref = ref_decur(*[z.numpy() for z in zs], kc)
    for key, value in ref.items():
        # the only difference is the BatchNorm-style epsilon (1e-5 on a variance of ~1-10)
        assert float(ours[key]) == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_cross_correlation_is_eq1():
    z1, _, z2, _ = embeddings(n=9, k=5)
    c = losses.cross_correlation(z1, z2)
    np.testing.assert_allclose(c.numpy(), ref_corr(z1.numpy(), z2.numpy()), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kc", [0, 9, 24])
def test_decur_loss_matches_reference_when_the_batch_is_smaller_than_k(kc):
    """N < K: the norms go through the N x N Gram matrices (as in every real run), still Eq. 1-6."""
    zs = embeddings(n=6, k=24, seed=3)
    ours = losses.decur_loss(*zs, kc)
    ref = ref_decur(*[z.numpy() for z in zs], kc)
    for key, value in ref.items():
        assert float(ours[key]) == pytest.approx(value, rel=1e-4, abs=1e-6), key


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 20), k_a=st.integers(1, 20), k_b=st.integers(1, 20))
def test_correlation_moments_gram_and_matrix_forms_agree_with_the_matrix(seed, n, k_a, k_b):
    g = torch.Generator().manual_seed(seed)
    a = losses.standardize(torch.randn(n, k_a, generator=g, dtype=torch.float64))
    b = losses.standardize(torch.randn(n, k_b, generator=g, dtype=torch.float64))
    c = a.T @ b / n
    k = min(k_a, k_b)
    for gram in (True, False, None):
        diag, sum_sq = losses.correlation_moments(a, b, gram=gram)
        torch.testing.assert_close(diag, torch.diagonal(c)[:k])
        torch.testing.assert_close(sum_sq, c.pow(2).sum())


def test_loss_stays_float32_under_autocast():
    """A bf16 K x K product would move the loss by ~1e-3 relative; the objectives switch autocast off."""
    zs = embeddings(n=32, k=64, dtype=torch.float32)
    plain = losses.decur_loss(*zs, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = losses.decur_loss(*zs, 48)
    for key in plain:
        assert float(mixed[key]) == pytest.approx(float(plain[key]), rel=1e-5), key


@pytest.mark.parametrize(("n", "k", "kc"), [(12, 10, 6), (6, 24, 16)])  # matrix and Gram forms
def test_decur_input_gradients_match_reference_autograd(n, k, kc):
    """Gradient of our loss vs the gradient of a separate float64 torch transcription of Eq. 1-6 (no eps)."""

    def corr(a, b):
        a = a - a.mean(0)
        b = b - b.mean(0)
        return (a.T @ b) / torch.outer(a.norm(dim=0), b.norm(dim=0))

    def bt(c, target):
        eye = torch.eye(c.shape[0], dtype=c.dtype)
        return ((target * eye - c) ** 2 * (eye + LAM * (1 - eye))).sum()

    zs = embeddings(n=n, k=k, requires_grad=True)
    losses.decur_loss(*zs, kc)["total"].backward()
    ours = [z.grad.clone() for z in zs]
    zs_ref = [z.detach().clone().requires_grad_(True) for z in zs]
    z1, z1p, z2, z2p = zs_ref
    c = corr(z1, z2)
    total = bt(c[:kc, :kc], 1.0) + bt(c[kc:, kc:], 0.0) + bt(corr(z1, z1p), 1.0) + bt(corr(z2, z2p), 1.0)
    total.backward()
    for g_ours, z in zip(ours, zs_ref, strict=True):
        torch.testing.assert_close(g_ours, z.grad, rtol=1e-3, atol=1e-6)


# ---- properties ---------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kc=st.integers(0, 8),
    log_scale=st.lists(st.floats(-1.0, 2.0), min_size=8, max_size=8),
    shift=st.floats(-50, 50),
)
def test_per_dimension_affine_rescaling_leaves_loss_unchanged(seed, kc, log_scale, shift):
    zs = embeddings(n=16, k=8, seed=seed)
    scale = torch.tensor(log_scale, dtype=torch.float64).exp()
    base = losses.decur_loss(*zs, kc)
    moved = losses.decur_loss(*[z * scale + shift for z in zs], kc)
    for key in base:
        assert float(moved[key]) == pytest.approx(float(base[key]), rel=2e-3, abs=1e-6), key


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_all_common_equals_cross_modal_bt_plus_intra(seed):
    zs = embeddings(n=10, k=6, seed=seed)
    full = losses.decur_loss(*zs, 6)
    bt_cross = losses.barlow_twins_cross(*zs)["total"]
    intra = losses.barlow_twins_single(zs[0], zs[1])["total"] + losses.barlow_twins_single(zs[2], zs[3])["total"]
    assert float(full["unique"]) == 0.0
    torch.testing.assert_close(full["total"], bt_cross + intra)
    torch.testing.assert_close(losses.decur_without_decoupling(*zs, 2)["total"], full["total"])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), kc=st.integers(0, 6))
def test_swapping_modalities_swaps_intra_terms(seed, kc):
    z1, z1p, z2, z2p = embeddings(n=10, k=6, seed=seed)
    a = losses.decur_loss(z1, z1p, z2, z2p, kc)
    b = losses.decur_loss(z2, z2p, z1, z1p, kc)
    torch.testing.assert_close(a["intra_1"], b["intra_2"])
    torch.testing.assert_close(a["intra_2"], b["intra_1"])
    torch.testing.assert_close(a["common"], b["common"])
    torch.testing.assert_close(a["unique"], b["unique"])


def test_no_common_block_and_no_unique_block():
    zs = embeddings()
    assert float(losses.decur_loss(*zs, 0)["common"]) == 0.0
    assert float(losses.decur_loss(*zs, 10)["unique"]) == 0.0


def test_perfectly_aligned_common_and_independent_unique_give_low_loss():
    g = torch.Generator().manual_seed(0)
    n = 4096
    shared = torch.randn(n, 4, generator=g, dtype=torch.float64)
    z1 = torch.cat([shared, torch.randn(n, 4, generator=g, dtype=torch.float64)], 1)
    z2 = torch.cat([shared, torch.randn(n, 4, generator=g, dtype=torch.float64)], 1)
    out = losses.decur_loss(z1, z1, z2, z2, 4)
    assert float(out["common"]) < 0.01 and float(out["unique"]) < 0.01
    assert float(out["intra_1"]) < 0.01  # identical views
    # with the blocks swapped (common dims declared unique) the loss is large
    assert float(losses.decur_loss(z1, z1, z2, z2, 0)["unique"]) > 3.9


# ---- reference-code switches and ablations ---------------------------------------------------------------------


def test_reference_weighting_and_both_view_pairs():
    zs = embeddings()
    plain = losses.decur_loss(*zs, 5)
    weighted = losses.decur_loss(*zs, 5, reference_weighting=True)
    expected = (plain["intra_1"] + plain["intra_2"] + (plain["common"] + plain["unique"]) / 2) / 3
    torch.testing.assert_close(weighted["total"], expected)
    both = losses.decur_loss(*zs, 5, cross_both_views=True)
    second = losses.decur_loss(zs[1], zs[0], zs[3], zs[2], 5)
    torch.testing.assert_close(both["common"], (plain["common"] + second["common"]) / 2)
    torch.testing.assert_close(both["unique"], (plain["unique"] + second["unique"]) / 2)


def test_ablation_without_intra():
    zs = embeddings()
    full = losses.decur_loss(*zs, 5)
    out = losses.decur_without_intra(zs[0], None, zs[2], None, 5)
    torch.testing.assert_close(out["total"], full["common"] + full["unique"])
    assert float(out["intra_1"]) == 0.0


def test_lambdas_are_separate():
    zs = embeddings()
    a = losses.decur_loss(*zs, 5)
    b = losses.decur_loss(*zs, 5, lambda_intra_2=0.5)
    torch.testing.assert_close(a["intra_1"], b["intra_1"])
    assert float(b["intra_2"]) > float(a["intra_2"])


def test_separation_term_against_the_reference_and_its_properties():
    zs = embeddings()
    plain = losses.decur_loss(*zs, 4)
    out = losses.decur_loss(*zs, 4, separation=0.3)
    expected = 0.0
    for z in zs:  # both views of both modalities, averaged over the two views
        c = ref_corr(z.numpy(), z.numpy())
        expected += 0.3 * (c[:4, 4:] ** 2).sum() / 2
    assert float(out["separation"]) == pytest.approx(expected, rel=1e-4)  # standardize adds eps 1e-5 to the variance
    torch.testing.assert_close(out["total"], plain["total"] + out["separation"])
    assert "separation" not in plain  # off by default: the paper's loss unchanged
    # independent common and unique blocks cost (almost) nothing, a unique dim copied into the common block a lot
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4096, 8, generator=g, dtype=torch.float64)
    low = float(losses.decur_loss(z, z, z, z, 4, separation=1.0)["separation"])
    copied = z.clone()
    copied[:, 0] = z[:, 6]
    high = float(losses.decur_loss(copied, copied, z, z, 4, separation=1.0)["separation"])
    assert low < 0.05 and high > 0.9
    with pytest.raises(ValueError, match="separation"):
        losses.decur_loss(*zs, 4, separation=1.0, decouple=False)
    with pytest.raises(ValueError, match="separation"):
        losses.decur_loss(*zs, 10, separation=1.0)


# ---- baselines against lightly's implementations -----------------------------------------------------------------


def test_barlow_twins_matches_lightly():
    from lightly.loss import BarlowTwinsLoss

    z1, _, z2, _ = embeddings(n=32, k=16, dtype=torch.float32)
    expected = BarlowTwinsLoss(lambda_param=LAM)(z1, z2)
    torch.testing.assert_close(losses.barlow_twins_cross(z1, None, z2, None)["total"], expected, rtol=1e-5, atol=1e-4)


def test_simclr_cross_matches_lightly_ntxent():
    from lightly.loss import NTXentLoss

    z1, _, z2, _ = embeddings(n=16, k=8, dtype=torch.float32)
    expected = NTXentLoss(temperature=0.2)(z1, z2)
    torch.testing.assert_close(losses.simclr_cross(z1, None, z2, None, temperature=0.2)["total"], expected)


def test_vicreg_matches_lightly():
    from lightly.loss import VICRegLoss

    z1, _, z2, _ = embeddings(n=16, k=8, dtype=torch.float32)
    expected = VICRegLoss()(z1, z2)
    torch.testing.assert_close(losses.vicreg_cross(z1, None, z2, None)["total"], expected)


def test_clip_loss_against_hand_written_infonce():
    z1, _, z2, _ = embeddings(n=6, k=4)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    out = losses.clip_loss(z1, None, z2, None, logit_scale=scale)
    a = z1 / z1.norm(dim=1, keepdim=True)
    b = z2 / z2.norm(dim=1, keepdim=True)
    sim = (a @ b.T / 0.07).numpy()
    rows = np.mean([-sim[i, i] + np.log(np.exp(sim[i]).sum()) for i in range(6)])
    cols = np.mean([-sim[i, i] + np.log(np.exp(sim[:, i]).sum()) for i in range(6)])
    assert float(out["total"].detach()) == pytest.approx((rows + cols) / 2, rel=1e-6)
    out["total"].backward()
    assert scale.grad is not None and torch.isfinite(scale.grad)


# ---- errors -----------------------------------------------------------------------------------------------------


def test_clear_errors():
    zs = embeddings(n=8, k=6)
    with pytest.raises(ValueError, match="equal shape"):
        losses.decur_loss(zs[0], zs[1], zs[2][:, :5], zs[3], 3)
    with pytest.raises(ValueError, match="at least 2"):
        losses.decur_loss(*[z[:1] for z in zs], 3)
    with pytest.raises(ValueError, match=r"common_dim must lie in 0\.\.6"):
        losses.decur_loss(*zs, 7)
    with pytest.raises(ValueError, match="common_dim"):
        losses.decur_loss(*zs, -1)


def test_half_precision_inputs_are_promoted():
    zs = [z.to(torch.bfloat16) for z in embeddings(dtype=torch.float32)]
    out = losses.decur_loss(*zs, 4)
    assert out["total"].dtype == torch.float32 and torch.isfinite(out["total"])


# ---- every weight on its own, against the reference (a λ taken from the wrong argument changes one term) --------


def ref_bn_corr(a: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Eq. 1 as Barlow Twins computes it: affine-free BatchNorm (biased variance + 1e-5), then a.T b / N."""
    sa = (a - a.mean(0)) / np.sqrt(a.var(0) + eps)
    sb = (b - b.mean(0)) / np.sqrt(b.var(0) + eps)
    return sa.T @ sb / len(a)


def ref_multimodal(views, views2, kc, lam_c, lam_u, lam_intra, pairs="sum"):
    """Eq. 2-6 over every pair of M modalities, each λ where the paper puts it (λ_c, λ_u, λ_Mm)."""
    m, k = len(views), views[0].shape[1]
    n_pairs = m * (m - 1) // 2
    common = unique = 0.0
    for a in range(m):
        for b in range(a + 1, m):
            c = ref_bn_corr(views[a], views[b])
            common += ref_bt(c[:kc, :kc], lam_c, 1.0) if kc > 0 else 0.0
            unique += ref_bt(c[kc:, kc:], lam_u, 0.0) if kc < k else 0.0
    if pairs == "mean":
        common, unique = common / n_pairs, unique / n_pairs
    intra = [ref_bt(ref_bn_corr(views[i], views2[i]), lam_intra[i], 1.0) for i in range(m)]
    return common, unique, intra


WEIGHTS = {"lambda_common": 0.3, "lambda_unique": 0.7, "lambda_intra_1": 0.11, "lambda_intra_2": 0.9}


@pytest.mark.parametrize("varied", list(WEIGHTS))
@pytest.mark.parametrize("path", ["eq6", "reference_code_path"])
def test_each_lambda_of_eq2_to_5_weighs_its_own_term(varied, path):
    """One λ at a time: only its term moves, by the amount the reference computes (small-variance inputs, so the
    BatchNorm epsilon is part of the check)."""
    zs = [z * 0.02 for z in embeddings(n=16, k=8, seed=3)]
    lam = {name: LAM for name in WEIGHTS} | {varied: WEIGHTS[varied]}
    extra = {"cross_both_views": False, "reference_weighting": True} if path == "reference_code_path" else {}
    ours = losses.decur_loss(*zs, 5, **lam, **extra)
    v = [z.numpy() for z in zs]
    common, unique, intra = ref_multimodal(
        [v[0], v[2]], [v[1], v[3]], 5, lam["lambda_common"], lam["lambda_unique"],
        [lam["lambda_intra_1"], lam["lambda_intra_2"]],
    )  # fmt: skip
    expected = {"common": common, "unique": unique, "intra_1": intra[0], "intra_2": intra[1]}
    for key, value in expected.items():
        assert float(ours[key]) == pytest.approx(value, rel=1e-6), key
    total = (sum(intra) + (common + unique) / 2) / 3 if extra else common + unique + sum(intra)
    assert float(ours["total"]) == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize("pairs", ["sum", "mean"])
def test_three_modalities_each_with_its_own_intra_weight_and_the_pair_terms(pairs):
    g = torch.Generator().manual_seed(5)
    base = torch.randn(14, 9, generator=g, dtype=torch.float64)
    first = [base + 0.5 * torch.randn(14, 9, generator=g, dtype=torch.float64) for _ in range(3)]
    second = [z + 0.3 * torch.randn(14, 9, generator=g, dtype=torch.float64) for z in first]
    lam_intra = [0.05, 0.5, 2.0]
    ours = losses.decur_multimodal(
        first, second, 4, lambda_common=0.2, lambda_unique=0.9, lambda_intra=lam_intra, pairs=pairs
    )
    v1, v2 = [z.numpy() for z in first], [z.numpy() for z in second]
    common, unique, intra = ref_multimodal(v1, v2, 4, 0.2, 0.9, lam_intra, pairs)
    assert float(ours["common"]) == pytest.approx(common, rel=1e-6)
    assert float(ours["unique"]) == pytest.approx(unique, rel=1e-6)
    for i in range(3):
        assert float(ours[f"intra_{i + 1}"]) == pytest.approx(intra[i], rel=1e-6)
    assert float(ours["total"]) == pytest.approx(common + unique + sum(intra), rel=1e-6)
    c13 = ref_bn_corr(v1[0], v1[2])
    assert float(ours["common_1_3"]) == pytest.approx(ref_bt(c13[:4, :4], 0.2, 1.0), rel=1e-6)
    assert float(ours["unique_1_3"]) == pytest.approx(ref_bt(c13[4:, 4:], 0.9, 0.0), rel=1e-6)


def test_multimodal_defaults_are_the_papers_eq6():
    """Called with nothing but the views: λ = 0.0051 everywhere, plain sum, intra terms on, dims decoupled."""
    zs = [z * 0.02 for z in embeddings(n=16, k=8, seed=4)]
    ours = losses.decur_multimodal([zs[0], zs[2]], [zs[1], zs[3]], 5)
    v = [z.numpy() for z in zs]
    common, unique, intra = ref_multimodal([v[0], v[2]], [v[1], v[3]], 5, LAM, LAM, [LAM, LAM])
    assert float(ours["total"]) == pytest.approx(common + unique + sum(intra), rel=1e-6)
    assert "separation" not in ours and "common_1_2" not in ours


def test_the_batch_standardisation_is_barlow_twins_batchnorm():
    """(z − mean) / sqrt(biased var + 1e-5), per dimension: on a dimension of variance 1e-5 the epsilon halves
    the variance."""
    z = torch.tensor([[0.0, 1.0], [0.0063245553, 3.0]], dtype=torch.float64)  # dim 0: variance 1e-5
    s = losses.standardize(z)
    expected0 = (z[:, 0] - z[:, 0].mean()) / math.sqrt(1e-5 + 1e-5)
    expected1 = (z[:, 1] - 2.0) / math.sqrt(1.0 + 1e-5)
    torch.testing.assert_close(s[:, 0], expected0)
    torch.testing.assert_close(s[:, 1], expected1)


def test_the_messages_of_bad_calls_name_what_is_wrong():
    zs = embeddings(n=6, k=4)
    cases = [
        (lambda: losses.decur_multimodal([zs[0]], [zs[1]], 2), ">= 2 modalities"),
        (lambda: losses.decur_multimodal(zs[:2], zs[2:], 2, pairs="max"), "pairs must be one of"),
        (lambda: losses.decur_multimodal(zs[:2], zs[2:], 2, lambda_intra=[0.1]), "one value per modality"),
        (lambda: losses.decur_multimodal(zs[:2], [None, None], 2), "second views are needed"),
        (lambda: losses.decur_multimodal(zs[:2], zs[2:], 5), r"common_dim must lie in 0..4"),
        (lambda: losses.decur_loss(*zs, -1), r"common_dim must lie in 0..4"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# ---- the edges of every switch and guard (found by mutmut: `make mutation-score MODULES=losses`) ----------------


def test_one_common_dimension_is_a_common_block_and_k_minus_one_a_unique_one():
    zs = embeddings(n=10, k=6, seed=7)
    for kc in (1, 5):
        ours = losses.decur_loss(*zs, kc)
        ref = ref_decur(*[z.numpy() for z in zs], kc)
        assert float(ours["common"]) == pytest.approx(ref["common"], rel=1e-4)
        assert float(ours["unique"]) == pytest.approx(ref["unique"], rel=1e-4)
        assert float(ours["common"]) > 0 and float(ours["unique"]) > 0


def test_switches_reach_the_reference_code_path_and_the_multimodal_form():
    zs = embeddings(n=12, k=8, seed=8)
    plain = losses.decur_loss(*zs, 5, intra=False)
    weighted = losses.decur_loss(*zs, 5, intra=False, reference_weighting=True)
    assert float(weighted["intra_1"]) == float(weighted["intra_2"]) == 0.0
    torch.testing.assert_close(weighted["total"], (plain["common"] + plain["unique"]) / 2 / 3)
    multi = losses.decur_multimodal([zs[0], zs[2]], [None, None], 5, intra=False)  # second views not needed
    torch.testing.assert_close(multi["total"], plain["total"])
    assert float(multi["intra_1"]) == 0.0
    coupled = losses.decur_multimodal([zs[0], zs[2]], [zs[1], zs[3]], 5, decouple=False)
    torch.testing.assert_close(coupled["common"], losses.decur_loss(*zs, 8)["common"])
    assert float(coupled["unique"]) == 0.0
    assert float(losses.decur_multimodal([zs[0], zs[2]], [zs[1], zs[3]], 0)["common"]) == 0.0  # K_c = 0 accepted


def test_ablations_pass_the_weights_on():
    zs = embeddings(n=12, k=8, seed=9)
    a = losses.decur_without_intra(zs[0], None, zs[2], None, 5, lambda_common=0.5)
    assert float(a["common"]) == pytest.approx(float(losses.decur_loss(*zs, 5, lambda_common=0.5)["common"]))
    b = losses.decur_without_decoupling(*zs, 5, lambda_common=0.5)
    assert float(b["common"]) == pytest.approx(float(losses.decur_loss(*zs, 8, lambda_common=0.5)["common"]))


def test_every_modalitys_shape_is_checked_and_two_samples_suffice():
    zs = embeddings(n=6, k=4)
    odd = torch.randn(6, 5, dtype=torch.float64)
    for first in ([odd, zs[0], zs[1]], [zs[0], odd, zs[1]], [zs[0], zs[1], odd]):
        with pytest.raises(ValueError, match="equal shape"):
            losses.decur_multimodal(first, [None] * 3, 2, intra=False)
    with pytest.raises(ValueError, match=r"^correlations need a batch of at least 2 samples, got N=1$"):
        losses.decur_loss(*[z[:1] for z in zs], 2)
    assert torch.isfinite(losses.decur_loss(*[z[:2] for z in zs], 2)["total"])


def test_separation_needs_a_common_and_a_unique_block_and_keeps_every_term():
    zs = embeddings(n=12, k=8, seed=10)
    assert "separation" not in losses.decur_multimodal([zs[0], zs[2]], [zs[1], zs[3]], 0)  # 0 = off, any K_c
    out = losses.decur_multimodal([zs[0], zs[2]], [None, None], 1, intra=False, separation=0.5)
    ref = losses.decur_multimodal([zs[0], zs[2]], [None, None], 1, intra=False)
    assert set(ref) < set(out) and float(out["separation"]) > 0
    torch.testing.assert_close(out["total"], ref["total"] + out["separation"])
    for kc in (0, 8):
        with pytest.raises(ValueError, match="separation must be >= 0 and needs decoupling"):
            losses.decur_multimodal([zs[0], zs[2]], [zs[1], zs[3]], kc, separation=0.5)


def test_baselines_name_their_terms_and_keep_their_defaults():
    """Term names are what the run logs and plots; the defaults are the cited papers' (SimCLR τ = 0.1 as
    lightly's NTXentLoss(0.1), Barlow Twins λ = 0.0051, VICReg 25/25/1 with ε = 1e-4)."""
    from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss

    z1, z1p, z2, _ = embeddings(n=16, k=8, dtype=torch.float32)
    bt = losses.barlow_twins_cross(z1, None, z2, None)
    assert set(bt) == {"total", "cross"}
    assert set(losses.barlow_twins_single(z1, z1p)) == {"total", "intra_1"}
    strong = losses.barlow_twins_cross(z1, None, z2, None, lambda_offdiag=0.5)["total"]
    torch.testing.assert_close(strong, BarlowTwinsLoss(lambda_param=0.5)(z1, z2), rtol=1e-5, atol=1e-4)
    sim = losses.simclr_cross(z1, None, z2, None)
    assert set(sim) == {"total", "nt_xent"}
    torch.testing.assert_close(sim["total"], NTXentLoss(temperature=0.1)(z1, z2))
    flat = z1.clone()
    flat[:, 0] = 1.0  # a collapsed dimension: variance 0, the ε keeps the square root finite
    vic = losses.vicreg_cross(flat, None, z2, None)
    assert set(vic) == {"total", "invariance", "variance", "covariance"}
    torch.testing.assert_close(vic["total"], VICRegLoss()(flat, z2))
    scale = torch.tensor(math.log(1 / 0.07))
    clip = losses.clip_loss(z1, None, z2, None, logit_scale=scale)
    assert set(clip) == {"total", "info_nce", "temperature"}
    assert float(clip["temperature"]) == pytest.approx(0.07)


# ---- the split of common_dim: auto (Eq. 7, decur.losses.split_dimensions) ----


def test_the_shared_share_of_the_invariant_signal_sets_k_c_and_the_corrected_correlation_picks_the_dimensions():
    # by hand: ceilings sqrt(intra_a * intra_b) = [0.8, 0.2, 0.6, 0.7] (sum 2.3); cross sums to 1.42
    # share = 1.42 / 2.3 = 0.6174 -> K_c = round(4 * 0.6174) = round(2.47) = 2
    # rho = cross / ceiling = [0.5, 0.9, 0.4833, 0.7857] -> the two largest: dims 1 and 3 (the raw correlations
    # would pick 3 and 0; the mean of rho, 0.667, would give K_c = 3; the mean raw correlation, 0.355, K_c = 1)
    cross = torch.tensor([[0.4, 0.18, 0.29, 0.55]], dtype=torch.float64)
    intra = torch.tensor([[0.64, 0.0625, 0.36, 1.0], [1.0, 0.64, 1.0, 0.49]], dtype=torch.float64)
    k_c, order = losses.split_dimensions(cross, intra, [(0, 1)])
    assert k_c == 2
    assert order.tolist() == [1, 3, 0, 2]  # common first, each block in its original order


def test_nothing_shared_gives_no_common_block_and_everything_shared_gives_all():
    intra = torch.full((2, 5), 0.8)
    assert losses.split_dimensions(torch.zeros(1, 5), intra, [(0, 1)])[0] == 0
    assert losses.split_dimensions(torch.full((1, 5), 0.8), intra, [(0, 1)])[0] == 5
    assert losses.split_dimensions(torch.full((1, 5), 0.95), intra, [(0, 1)])[0] == 5  # clipped to K


def test_three_modalities_average_the_pairs_shares():
    # ceilings 1: pair shares (0.9 + 0.9) / 2 = 0.9, (0.9 + 0.1) / 2 = 0.5, (0.0 + 0.1) / 2 = 0.05 -> mean 0.4833
    # -> K_c = round(2 * 0.4833) = 1 (the least shared pair alone would give 0); rho per dim: 0.6, 0.367 -> dim 0
    cross = torch.tensor([[0.9, 0.9], [0.9, 0.1], [0.0, 0.1]])
    intra = torch.ones(3, 2)
    k_c, order = losses.split_dimensions(cross, intra, [(0, 1), (0, 2), (1, 2)])
    assert (k_c, order.tolist()) == (1, [0, 1])


def test_split_refuses_shapes_that_do_not_match():
    with pytest.raises(ValueError, match="P x K"):
        losses.split_dimensions(torch.zeros(2, 4), torch.ones(2, 4), [(0, 1)])


def test_split_works_on_small_ceilings_clips_negative_shares_and_breaks_ties_by_index():
    # ceilings 0.04 per dimension (sum 0.2 over 5), cross 0.02 each (sum 0.1): share 0.5 -> K_c = round(2.5) = 2
    # (banker's rounding); every rho is 0.5, a tie: the first two dimensions by index are common
    intra = torch.full((2, 5), 0.04, dtype=torch.float64)
    k_c, order = losses.split_dimensions(torch.full((1, 5), 0.02, dtype=torch.float64), intra, [(0, 1)])
    assert (k_c, order.tolist()) == (2, [0, 1, 2, 3, 4])
    k_c, order = losses.split_dimensions(torch.full((1, 5), 0.03, dtype=torch.float64), intra, [(0, 1)])
    assert k_c == 4 and order.tolist() == [0, 1, 2, 3, 4]  # 0.15 / 0.2 = 0.75 -> round(3.75) = 4
    # anti-correlated modalities share nothing: K_c = 0, not a negative count
    k_c, order = losses.split_dimensions(torch.full((1, 5), -0.3), torch.ones(2, 5), [(0, 1)])
    assert (k_c, order.tolist()) == (0, [0, 1, 2, 3, 4])


def test_split_refuses_a_vector_of_correlations():
    with pytest.raises(ValueError, match="P x K"):
        losses.split_dimensions(torch.zeros(4), torch.ones(2, 4), [(0, 1)])
    with pytest.raises(ValueError, match="P x K"):  # one pair, one value: a vector still, not a 1 x 1 matrix
        losses.split_dimensions(torch.zeros(1), torch.ones(2, 1), [(0, 1)])
