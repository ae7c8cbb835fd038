"""The method table and :class:`Objective`: every config field reaches its term of the paper's objective.

Expected values come from the numpy reference of ``tests/test_losses.py`` (Eq. 1-6 with explicit sums) and from the
paper's ablations (Table 12: without intra-modal terms one view per modality; without decoupling every dimension
common), never from decur's own loss functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from decur.config import MethodConfig
from decur.methods import METHODS, Objective
from tests.test_losses import LAM, ref_bn_corr, ref_bt, ref_multimodal


def _views(m: int, n: int = 16, k: int = 8, seed: int = 0) -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, k, generator=g, dtype=torch.float64)
    out = {}
    for i in range(m):
        first = base + 0.6 * torch.randn(n, k, generator=g, dtype=torch.float64)
        out[f"m{i + 1}"] = [first, first + 0.4 * torch.randn(n, k, generator=g, dtype=torch.float64)]
    return out


def _np(z: dict[str, list[torch.Tensor]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [v[0].numpy() for v in z.values()], [v[1].numpy() for v in z.values()]


# Views per modality and modality counts, as the paper's ablations define them
TABLE = {
    "decur": (2, [2, 3, 4]),
    "decur_no_intra": (1, [2, 3]),
    "decur_no_decoupling": (2, [2, 3]),
    "barlow_twins_cross": (1, [2, 3]),
    "barlow_twins_single": (2, [1]),
    "simclr_cross": (1, [2]),
    "clip": (1, [2]),
    "vicreg_cross": (1, [2]),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_each_method_needs_its_views_and_accepts_its_modality_counts(name: str) -> None:
    views, counts = TABLE[name]
    assert METHODS[name].views == views
    assert [c for c in range(1, 6) if METHODS[name].accepts(c)] == (counts if max(counts) < 3 else [2, 3, 4, 5])


FIELDS = {"lambda_common": 0.3, "lambda_unique": 0.7, "lambda_intra_1": 0.11, "lambda_intra_2": 0.9}


@pytest.mark.parametrize("varied", [None, *FIELDS])
def test_each_lambda_field_weighs_its_own_term_of_two_modalities(varied: str | None) -> None:
    z = _views(2)
    lam = {name: LAM for name in FIELDS} | ({varied: FIELDS[varied]} if varied else {})
    out = Objective(MethodConfig(**lam), ["m1", "m2"], 5)(z)
    v1, v2 = _np(z)
    common, unique, intra = ref_multimodal(
        v1, v2, 5, lam["lambda_common"], lam["lambda_unique"], [lam["lambda_intra_1"], lam["lambda_intra_2"]]
    )
    for key, value in {"common": common, "unique": unique, "intra_1": intra[0], "intra_2": intra[1]}.items():
        assert float(out[key]) == pytest.approx(value, rel=1e-6), key
    assert float(out["total"]) == pytest.approx(common + unique + sum(intra), rel=1e-6)


@pytest.mark.parametrize("varied", [None, *FIELDS])
@pytest.mark.parametrize("pairs", ["sum", "mean"])
def test_each_lambda_field_reaches_three_modalities(varied: str | None, pairs: str) -> None:
    z = _views(3, seed=1)
    lam = {name: LAM for name in FIELDS} | ({varied: FIELDS[varied]} if varied else {})
    out = Objective(MethodConfig(pairs=pairs, **lam), ["m1", "m2", "m3"], 3)(z)
    v1, v2 = _np(z)
    intra_w = [lam["lambda_intra_1"], lam["lambda_intra_2"], lam["lambda_intra_2"]]  # modalities after the first
    common, unique, intra = ref_multimodal(v1, v2, 3, lam["lambda_common"], lam["lambda_unique"], intra_w, pairs)
    assert float(out["common"]) == pytest.approx(common, rel=1e-6)
    assert float(out["unique"]) == pytest.approx(unique, rel=1e-6)
    for i in range(3):
        assert float(out[f"intra_{i + 1}"]) == pytest.approx(intra[i], rel=1e-6)
    assert float(out["total"]) == pytest.approx(common + unique + sum(intra), rel=1e-6)


def test_the_reference_code_switches_reach_the_loss() -> None:
    """reference_weighting: (intra_1 + intra_2 + (common + unique) / 2) / 3; cross_both_views: both views' pairs."""
    z = _views(2, seed=2)
    v1, v2 = _np(z)
    common, unique, intra = ref_multimodal(v1, v2, 5, LAM, LAM, [LAM, LAM])
    out = Objective(MethodConfig(reference_weighting=True), ["m1", "m2"], 5)(z)
    assert float(out["total"]) == pytest.approx((sum(intra) + (common + unique) / 2) / 3, rel=1e-6)
    both = Objective(MethodConfig(cross_both_views=True), ["m1", "m2"], 5)(z)
    second = ref_multimodal(v2, v1, 5, LAM, LAM, [LAM, LAM])  # the second views' pair
    assert float(both["common"]) == pytest.approx((common + second[0]) / 2, rel=1e-6)
    assert float(both["unique"]) == pytest.approx((unique + second[1]) / 2, rel=1e-6)
    assert "separation" not in out
    separated = Objective(MethodConfig(separation=0.5), ["m1", "m2"], 5)(z)
    assert float(separated["total"]) > float(out["total"]) - 1e-9
    assert float(separated["separation"]) != 0.0


def test_without_intra_uses_one_view_and_without_decoupling_makes_every_dimension_common() -> None:
    z = _views(2, seed=3)
    v1, v2 = _np(z)
    no_intra = Objective(MethodConfig(name="decur_no_intra", lambda_common=0.3, lambda_unique=0.7), ["m1", "m2"], 5)
    out = no_intra({m: v[:1] for m, v in z.items()})
    common, unique, _ = ref_multimodal(v1, v2, 5, 0.3, 0.7, [LAM, LAM])
    assert float(out["total"]) == pytest.approx(common + unique, rel=1e-6)
    cfg = MethodConfig(name="decur_no_decoupling", lambda_common=0.3, lambda_intra_1=0.2, lambda_intra_2=0.05)
    out = Objective(cfg, ["m1", "m2"], 5)(z)
    c = ref_bn_corr(v1[0], v1[1])
    expected = ref_bt(c, 0.3, 1.0) + ref_bt(ref_bn_corr(v1[0], v2[0]), 0.2, 1.0)
    expected += ref_bt(ref_bn_corr(v1[1], v2[1]), 0.05, 1.0)
    assert float(out["total"]) == pytest.approx(expected, rel=1e-6)


def test_barlow_twins_takes_lambda_common_as_its_off_diagonal_weight() -> None:
    z = _views(2, seed=4)
    v1, _ = _np(z)
    out = Objective(MethodConfig(name="barlow_twins_cross", lambda_common=0.25), ["m1", "m2"], 5)(
        {m: v[:1] for m, v in z.items()}
    )
    assert float(out["total"]) == pytest.approx(ref_bt(ref_bn_corr(v1[0], v1[1]), 0.25, 1.0), rel=1e-6)
    single = Objective(MethodConfig(name="barlow_twins_single", lambda_common=0.25), ["m1", "m2"], 5)
    assert single.modalities == ["m1"]
    out = single(z)
    assert float(out["total"]) == pytest.approx(ref_bt(ref_bn_corr(z["m1"][0].numpy(), z["m1"][1].numpy()), 0.25, 1.0))


def test_barlow_twins_cross_over_three_modalities_is_the_sum_over_pairs_without_intra_terms() -> None:
    z = _views(3, seed=5)
    v1, _ = _np(z)
    out = Objective(MethodConfig(name="barlow_twins_cross", lambda_common=0.25), ["m1", "m2", "m3"], 3)(
        {m: v[:1] for m, v in z.items()}
    )
    expected = sum(ref_bt(ref_bn_corr(v1[a], v1[b]), 0.25, 1.0) for a, b in ((0, 1), (0, 2), (1, 2)))
    assert float(out["total"]) == pytest.approx(expected, rel=1e-6)


def test_simclr_takes_its_temperature_and_clip_learns_one_from_a_07() -> None:
    z = {m: v[:1] for m, v in _views(2, seed=6).items()}
    a, b = (torch.nn.functional.normalize(v[0], dim=1) for v in z.values())
    for temperature in (0.1, 0.5):
        out = Objective(MethodConfig(name="simclr_cross", temperature=temperature), ["m1", "m2"], 5)(z)
        # NT-Xent over 2N samples, the other modality's view the positive (SimCLR Eq. 1), by hand
        both = torch.cat([a, b])
        sim = both @ both.T / temperature
        sim.fill_diagonal_(-math.inf)
        n = len(a)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        want = torch.nn.functional.cross_entropy(sim, target)
        assert float(out["total"]) == pytest.approx(float(want), rel=1e-6)
    clip = Objective(MethodConfig(name="clip"), ["m1", "m2"], 5)
    assert clip.logit_scale is not None and float(clip.logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))
    assert [name for name, _ in clip.named_parameters()] == ["logit_scale"]
    assert Objective(MethodConfig(name="decur"), ["m1", "m2"], 5).logit_scale is None


def test_the_first_listed_modality_is_the_papers_modality_1() -> None:
    z = _views(2, seed=7)
    cfg = MethodConfig(lambda_intra_1=0.5, lambda_intra_2=0.01)
    forward = Objective(cfg, ["m1", "m2"], 5)(z)
    backward = Objective(cfg, ["m2", "m1"], 5)(z)
    v = {m: (x[0].numpy(), x[1].numpy()) for m, x in z.items()}
    assert float(forward["intra_1"]) == pytest.approx(ref_bt(ref_bn_corr(*v["m1"]), 0.5, 1.0), rel=1e-6)
    assert float(backward["intra_1"]) == pytest.approx(ref_bt(ref_bn_corr(*v["m2"]), 0.5, 1.0), rel=1e-6)
    assert Objective(cfg, ["m1", "m2", "m3"], 5).modalities == ["m1", "m2", "m3"]
    assert Objective(MethodConfig(name="clip"), ["m1", "m2", "m3"], 5).modalities == ["m1", "m2"]


def test_the_reference_code_switches_and_separation_reach_three_modalities() -> None:
    z = _views(3, seed=8)
    v1, v2 = _np(z)
    names = ["m1", "m2", "m3"]
    common, unique, intra = ref_multimodal(v1, v2, 3, LAM, LAM, [LAM] * 3)
    out = Objective(MethodConfig(reference_weighting=True), names, 3)(z)
    assert float(out["total"]) == pytest.approx((sum(intra) + (common + unique) / 2) / 3, rel=1e-6)
    both = Objective(MethodConfig(cross_both_views=True), names, 3)(z)
    second = ref_multimodal(v2, v1, 3, LAM, LAM, [LAM] * 3)
    assert float(both["common"]) == pytest.approx((common + second[0]) / 2, rel=1e-6)
    assert float(both["unique"]) == pytest.approx((unique + second[1]) / 2, rel=1e-6)
    separated = Objective(MethodConfig(separation=0.5), names, 3)(z)
    assert float(separated["separation"]) > 0
    plain = common + unique + sum(intra)
    assert float(separated["total"]) == pytest.approx(plain + float(separated["separation"]), rel=1e-6)


def test_clip_scores_with_its_learned_temperature() -> None:
    z = {m: v[:1] for m, v in _views(2, seed=9).items()}
    clip = Objective(MethodConfig(name="clip"), ["m1", "m2"], 5)
    with torch.no_grad():
        clip.logit_scale.fill_(math.log(3.0))  # type: ignore[union-attr]
    a, b = (torch.nn.functional.normalize(v[0], dim=1) for v in z.values())
    logits = 3.0 * a @ b.T  # CLIP: symmetric cross-entropy over the scaled cosine similarities
    target = torch.arange(len(a))
    want = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    assert float(clip(z)["total"].detach()) == pytest.approx(float(want), rel=1e-6)
    vicreg = Objective(MethodConfig(name="vicreg_cross"), ["m1", "m2"], 5)(z)
    assert torch.isfinite(vicreg["total"]) and float(vicreg["total"]) > 0
