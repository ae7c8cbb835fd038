"""More than two modalities: the M-modal DeCUR objective, the synthetic elevation modality, retrieval."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from decur import losses
from decur.config import ConfigError, MethodConfig, load_config
from decur.data.synthetic import SyntheticMultimodal
from decur.evaluate.retrieval import pairwise_retrieval, ranks, retrieval_scores
from decur.methods import Objective

THREE = ["data.modalities=[{name: optical, bands: 13, augment: optical}, {name: sar, bands: 2, augment: sar}, "
         "{name: elevation, bands: 1, augment: dem}]"]  # fmt: skip


def _views(m: int, n: int = 24, k: int = 10, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, k, generator=g, dtype=torch.float64)
    first = [shared + torch.randn(n, k, generator=g, dtype=torch.float64) for _ in range(m)]
    second = [z + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64) for z in first]
    return first, second


@pytest.mark.parametrize(
    "flags",
    [{}, {"intra": False}, {"decouple": False}, {"reference_weighting": True}, {"cross_both_views": True}],
)
@pytest.mark.parametrize("kc", [0, 4, 10])
def test_two_modalities_reduce_exactly_to_the_papers_loss(flags, kc):
    (z1, z2), (z1p, z2p) = _views(2)
    ref = _reference_with_flags(*(z.numpy() for z in (z1, z1p, z2, z2p)), kc, **flags)
    for pairs in ("sum", "mean"):  # against an independent transcription of Eq. 1-6 (tests/test_losses.py)
        many = losses.decur_multimodal([z1, z2], [z1p, z2p], kc, lambda_intra=[0.0051, 0.0051], pairs=pairs, **flags)
        for key, value in ref.items():
            assert float(many[key]) == pytest.approx(value, rel=1e-4, abs=1e-6), key
    two = losses.decur_loss(z1, z1p, z2, z2p, kc, lambda_intra_2=0.01, **flags)
    for pairs in ("sum", "mean"):
        many = losses.decur_multimodal([z1, z2], [z1p, z2p], kc, lambda_intra=[0.0051, 0.01], pairs=pairs, **flags)
        assert set(many) == set(two)
        for key, value in two.items():
            torch.testing.assert_close(many[key], value, rtol=1e-12, atol=1e-12)


def _reference_with_flags(z1, z1p, z2, z2p, kc, reference_weighting=False, cross_both_views=False, intra=True,
                          decouple=True):  # fmt: skip
    """Eq. 6 from the independent reference, with the reference code's switches written out from their definition."""
    from .test_losses import ref_decur

    kc = kc if decouple else z1.shape[1]
    first = ref_decur(z1, z1p, z2, z2p, kc)
    if cross_both_views:  # the cross-modal terms averaged over (z1, z2) and (z1', z2')
        second = ref_decur(z1p, z1, z2p, z2, kc)
        first["common"] = (first["common"] + second["common"]) / 2
        first["unique"] = (first["unique"] + second["unique"]) / 2
    if not intra:
        first["intra_1"] = first["intra_2"] = 0.0
    cross = first["common"] + first["unique"]
    intra_sum = first["intra_1"] + first["intra_2"]
    first["total"] = (intra_sum + cross / 2) / 3 if reference_weighting else cross + intra_sum
    return first


@pytest.mark.parametrize("m", [3, 4])
def test_m_modalities_are_every_pair_of_the_two_modality_loss(m):
    first, second = _views(m, seed=m)
    many = losses.decur_multimodal(first, second, 6)
    pair_totals = 0.0
    for a, b in itertools.combinations(range(m), 2):
        pair = losses.decur_loss(first[a], second[a], first[b], second[b], 6)
        torch.testing.assert_close(many[f"common_{a + 1}_{b + 1}"], pair["common"], rtol=1e-12, atol=0)
        torch.testing.assert_close(many[f"unique_{a + 1}_{b + 1}"], pair["unique"], rtol=1e-12, atol=0)
        pair_totals += float(pair["total"])
    intra = sum(float(many[f"intra_{i + 1}"]) for i in range(m))
    # each modality's intra term appears in M - 1 pairs of the two-modality loss, once in the M-modal one
    assert float(many["total"]) == pytest.approx(pair_totals - (m - 2) * intra, rel=1e-12)
    mean = losses.decur_multimodal(first, second, 6, pairs="mean")
    n_pairs = m * (m - 1) // 2
    assert float(mean["common"]) == pytest.approx(float(many["common"]) / n_pairs, rel=1e-12)
    with pytest.raises(ValueError, match="pairs must be one of"):
        losses.decur_multimodal(first, second, 6, pairs="max")
    with pytest.raises(ValueError, match=">= 2 modalities"):
        losses.decur_multimodal(first[:1], second[:1], 6)


def test_objective_trains_three_modalities_for_the_pairwise_methods_only():
    first, second = _views(3)
    z = {m: [first[i].float(), second[i].float()] for i, m in enumerate(["optical", "sar", "elevation"])}
    bt = Objective(MethodConfig(name="barlow_twins_cross"), list(z), 6)(z)
    expected = sum(float(losses.barlow_twins_cross(z[a][0], None, z[b][0], None)["total"])
                   for a, b in itertools.combinations(z, 2))  # fmt: skip
    assert float(bt["total"]) == pytest.approx(expected, rel=1e-5)
    assert float(Objective(MethodConfig(name="decur"), list(z), 6)(z)["intra_3"]) > 0
    load_config(None, THREE).validate()
    with pytest.raises(ConfigError, match=r"data\.modalities.*'clip' trains 2 modalities"):
        load_config(None, [*THREE, "method.name=clip"]).validate()
    with pytest.raises(ConfigError, match=r"method\.pairs"):
        load_config(None, [*THREE, "method.pairs=max"]).validate()


def test_synthetic_elevation_carries_its_own_factors_and_leaves_the_pair_unchanged():
    pair, three = SyntheticMultimodal(48, 32), SyntheticMultimodal(48, 32, elevation=True)
    assert three.modalities == ["optical", "sar", "elevation"] and three.bands["elevation"] == 1
    reliefs, tilts, amplitude, gradient = [], [], [], []
    for i in range(48):
        a, b = pair[i], three[i]
        assert torch.equal(a["optical"], b["optical"]) and torch.equal(a["sar"], b["sar"])
        assert torch.equal(b["factors"][: len(a["factors"])], a["factors"])
        relief, tilt = b["factors"][three.factor_groups["elevation"]].tolist()
        e = b["elevation"][0]
        reliefs.append(relief)
        tilts.append(tilt)
        amplitude.append(float(e.std()))
        gradient.append(float(torch.hypot((e[:, 1:] - e[:, :-1]).mean(), (e[1:] - e[:-1]).mean())))
    corr = lambda x, y: float(torch.corrcoef(torch.tensor([x, y]))[0, 1])  # noqa: E731
    assert corr(reliefs, amplitude) > 0.5 and corr(tilts, gradient) > 0.5


def test_retrieval_ranks_on_hand_built_sets():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=g)
    assert ranks(x, x).tolist() == [1] * 20
    perfect = retrieval_scores(x, 3 * x + 1)  # standardisation removes scale and offset
    assert perfect["recall@1"] == 1.0 and perfect["median_rank"] == 1.0 and perfect["random_recall@5"] == 0.25
    constant = retrieval_scores(x, torch.ones(20, 6))
    assert constant["recall@10"] == 0.0 and constant["median_rank"] == 20.0  # ties count against the query
    shuffled = ranks(x, x[torch.roll(torch.arange(20), 1)])  # the true answer is never the best one
    assert (shuffled > 1).all()
    with pytest.raises(ValueError, match="same shape"):
        ranks(x, x[:, :3])
    feats = {"a": x, "b": torch.randn(20, 6, generator=g)}
    out = pairwise_retrieval(feats, {"a": x, "b": x + 0.01 * torch.randn(20, 6, generator=g)}, common_dim=2)
    assert set(out) == {"a->b", "b->a"} and set(out["a->b"]) == {"common", "embedding", "features"}
    assert out["a->b"]["embedding"]["recall@1"] == 1.0


def test_common_slice_retrieval_scores_the_common_dims_only():
    g = torch.Generator().manual_seed(1)
    n, kc = 30, 3
    shared = torch.randn(n, kc, generator=g)
    # common dims: identical across modalities (perfect retrieval); unique dims: independent noise (chance)
    emb = {m: torch.cat([shared, torch.randn(n, 5, generator=g)], 1) for m in ("a", "b")}
    feats = {m: torch.randn(n, 4, generator=g) for m in ("a", "b")}
    out = pairwise_retrieval(feats, emb, common_dim=kc)
    for pair in ("a->b", "b->a"):
        assert out[pair]["common"]["recall@1"] == 1.0 and out[pair]["common"]["median_rank"] == 1.0
        assert out[pair]["embedding"]["recall@1"] < 0.5  # the unique dims' noise hides the match
        assert out[pair]["features"]["recall@1"] < 0.3
    swapped = {m: torch.cat([e[:, kc:], e[:, :kc]], 1) for m, e in emb.items()}  # common dims last: not scored
    assert pairwise_retrieval(feats, swapped, common_dim=kc)["a->b"]["common"]["recall@1"] < 0.3
    assert "common" not in pairwise_retrieval(feats, emb, common_dim=0)["a->b"]


@pytest.mark.slow  # make test: three sensors pretrain on v1.1 shards; the M-modality terms and retrieval pairs
def test_three_modality_decur_on_the_built_in_data(tmp_path):
    from decur.evaluate.probe import evaluate_run
    from decur.train.run import pretrain

    overrides = [*THREE, "data.length=32", "data.batch_size=16", "data.image_size=32", "data.crop_size=24",
                 "data.num_workers=0", "trainer.max_epochs=1", "model.projector=[32, 32]",
                 "eval.train_samples=48", "eval.test_samples=32", "eval.random_init=false"]  # fmt: skip
    summary = pretrain(load_config(None, overrides), tmp_path / "run")
    assert {"train/intra_3", "train/common_1_3", "train/unique_2_3"} <= set(summary["final_loss"])
    result = evaluate_run(tmp_path / "run")["pretrained"]
    assert "optical+sar+elevation" in result["map"] and "elevation" in result["map"]
    assert {"relief", "tilt"} <= set(result["r2"]["unique/elevation"])
    assert len(result["retrieval"]) == 6 and "recall@1" in result["retrieval"]["sar->elevation"]["common"]
    # the same through `decur transfer task=retrieval`, on the engine
    from decur.cli import main

    args = ["transfer", "task=retrieval", f"pretrained={tmp_path / 'run'}", "modalities=[optical, sar, elevation]",
            "test_samples=24", "image_size=32", "batch_size=8", "num_workers=0"]  # fmt: skip
    args += ["--output", str(tmp_path / "r")]
    assert main(args) == 0
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["test_samples"] == 24
    assert set(saved["retrieval"]["optical->elevation"]) == {"common", "embedding", "features"}
    assert saved["retrieval"]["sar->optical"]["common"]["random_median_rank"] == 12.5
    # decur explain: alignment per pair, saliency over the three modalities
    from decur.explain import ExplainConfig, explain

    numbers = explain(tmp_path / "run", tmp_path / "explain", options=ExplainConfig(samples=16, batch_size=8,
                      alignment_batches=1, ig_steps=2))  # fmt: skip
    assert set(numbers["alignment"]["pairs"]) == {"optical-sar", "optical-elevation", "sar-elevation"}
    assert numbers["saliency_pairs"] == 16 and numbers["spectral_bands"]["elevation"] == ["band 1"]
