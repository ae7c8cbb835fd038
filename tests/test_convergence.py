"""The convergence study's machinery: trajectory rows at the promised steps, without disturbing the training."""

from __future__ import annotations

import json

import pytest
import torch

from decur.cli import main
from decur.evaluate.convergence import ConvergenceConfig, run_convergence

TINY = ["data.length=64", "data.batch_size=16", "data.image_size=32", "data.crop_size=24",
        "model.projector=[32, 32]", "trainer.max_epochs=2", "data.num_workers=0"]  # fmt: skip


@pytest.mark.slow
def test_trajectories_are_recorded_and_do_not_change_the_training(tmp_path):
    cfg = ConvergenceConfig(methods=["decur"], seeds=[0], pretrain_overrides=TINY, every_n_steps=3,
                            eval_train_samples=48, eval_test_samples=48)  # fmt: skip
    rows = run_convergence(cfg, tmp_path / "study")
    assert [r["step"] for r in rows] == [0, 3, 6, 8]  # start, every 3 steps, the last step (8 = 2 x 64 / 16)
    for key in ("align_common", "align_unique", "r2/common/optical/shared", "r2/unique/sar/sar",
                "r2/features/optical/optical", "r2m/common/optical/optical", "r2m/unique/sar/sar",
                "map/optical+sar", "map/sar"):  # fmt: skip
        assert all(key in r for r in rows), key
    assert (tmp_path / "study" / "trajectories.png").stat().st_size > 1000
    assert "| align_common |" in (tmp_path / "study" / "summary.md").read_text()
    saved = json.loads((tmp_path / "study" / "runs" / "decur-s0" / "trajectory.json").read_text())
    assert saved == [{k: v for k, v in r.items() if k not in ("method", "seed")} for r in rows]
    # the same run without the probe ends with the same weights: evaluating draws nothing from training's RNG
    assert main(["pretrain", "--output", str(tmp_path / "plain"), *TINY, "eval.enabled=false"]) == 0
    probed = torch.load(tmp_path / "study" / "runs" / "decur-s0" / "checkpoints" / "last.ckpt", weights_only=False)
    plain = torch.load(tmp_path / "plain" / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(torch.equal(probed["state_dict"][k], v) for k, v in plain["state_dict"].items())


def test_variants_are_named_runs_with_their_own_overrides(tmp_path):
    from decur.config import load_dataclass
    from decur.evaluate.convergence import run_names

    path = tmp_path / "study.yaml"
    path.write_text("methods: [decur, barlow_twins_cross]\nvariants:\n  decur_c25: [method.name=decur, "
                    "method.common_share=0.25]\n")  # fmt: skip
    cfg = load_dataclass(ConvergenceConfig, path)
    assert run_names(cfg) == {"decur": ["method.name=decur"], "barlow_twins_cross": ["method.name=barlow_twins_cross"],
                              "decur_c25": ["method.name=decur", "method.common_share=0.25"]}  # fmt: skip
    with pytest.raises(ValueError, match="rename"):
        run_names(ConvergenceConfig(methods=["decur"], variants={"decur": ["method.common_share=0.5"]}))
    from decur.config import ConfigError

    with pytest.raises(ConfigError, match="variants"):
        load_dataclass(ConvergenceConfig, None, ["variants=[a, b]"])


def test_matched_slice_r2_compares_slices_at_equal_width():
    from decur.data.synthetic import SyntheticMultimodal
    from decur.evaluate.convergence import matched_slice_r2

    ds = SyntheticMultimodal(length=8, image_size=16, num_classes=4)  # for the factor names and groups only
    g = torch.Generator().manual_seed(0)
    n, f = 600, len(ds.factor_names)
    factors = torch.rand(n, f, generator=g)
    groups = ds.factor_groups

    def embedding(own: list[int]) -> torch.Tensor:
        # 12 common dims: the shared factors mixed + one weak copy of the own factors spread over many dims (so that
        # a wide probe finds them); 4 unique dims: the modality's own factors, cleanly
        mix = torch.randn(len(groups["shared"]), 12, generator=g)
        common = factors[:, groups["shared"]] @ mix + 0.05 * torch.randn(n, 12, generator=g)
        common[:, :8] += 0.3 * factors[:, own].repeat(1, 4)
        unique = factors[:, own].repeat(1, 2) + 0.05 * torch.randn(n, 4, generator=g)
        return torch.cat([common, unique], 1)

    z = {"optical": embedding(groups["optical"]), "sar": embedding(groups["sar"])}
    split = {k: {f"emb/{m}": v[s] for m, v in z.items()} | {"factors": factors[s]}
             for k, s in (("tr", slice(0, 400)), ("te", slice(400, n)))}  # fmt: skip
    out = matched_slice_r2(split["tr"], split["te"], ["optical", "sar"], 12, ds)
    assert set(out) == {f"r2m/{p}/{m}/{grp}" for p in ("common", "unique") for m in ("optical", "sar")
                        for grp in ("shared", "optical", "sar")}  # fmt: skip
    for m in ("optical", "sar"):
        assert out[f"r2m/unique/{m}/{m}"] > 0.95  # the own factors sit cleanly in the unique dims
        assert out[f"r2m/unique/{m}/{m}"] > out[f"r2m/common/{m}/{m}"]  # and less so in 4 of the common dims
        assert out[f"r2m/common/{m}/shared"] > out[f"r2m/unique/{m}/shared"] + 0.3  # shared ones in common dims
    assert matched_slice_r2(split["tr"], split["te"], ["optical", "sar"], 16, ds) == {}  # no unique dims


def test_slice_r2_reads_the_common_and_the_unique_slice_where_they_are():
    from decur.data.synthetic import SyntheticMultimodal
    from decur.evaluate.convergence import slice_r2

    ds = SyntheticMultimodal(length=8, image_size=16, num_classes=4)
    g = torch.Generator().manual_seed(1)
    n, groups = 500, ds.factor_groups
    factors = torch.rand(n, len(ds.factor_names), generator=g)
    # 6 common dims carry the shared factors only, 2 unique dims the modality's own ones only
    z = {m: torch.cat([factors[:, groups["shared"]] @ torch.randn(len(groups["shared"]), 6, generator=g),
                       factors[:, groups[m]]], 1) for m in ("optical", "sar")}  # fmt: skip
    split = {k: {f"emb/{m}": v[s] for m, v in z.items()} | {f"feat/{m}": v[s] for m, v in z.items()}
             | {"factors": factors[s]} for k, s in (("tr", slice(0, 350)), ("te", slice(350, n)))}  # fmt: skip
    out = slice_r2(split["tr"], split["te"], ["optical", "sar"], 6, ds)
    for m in ("optical", "sar"):
        assert out[f"r2/common/{m}/shared"] > 0.9 and out[f"r2/unique/{m}/shared"] < 0.2
        assert out[f"r2/unique/{m}/{m}"] > 0.9 and out[f"r2/common/{m}/{m}"] < 0.2
        assert out[f"r2/features/{m}/shared"] > 0.9


def test_a_study_cut_short_summarises_the_seeds_that_finished(tmp_path):
    from decur.evaluate.convergence import _write

    cfg = ConvergenceConfig(methods=["decur", "barlow_twins_cross"], seeds=[0, 1])
    rows = [{"method": m, "seed": s, "step": t, "align_common": v + t / 100}
            for m, seeds, v in (("decur", [0, 1], 0.1), ("barlow_twins_cross", [1], 0.3))
            for s in seeds for t in (0, 10)]  # fmt: skip
    _write(rows, cfg, tmp_path, 60.0)
    summary = (tmp_path / "summary.md").read_text()
    assert "Fewer seeds finished for: barlow_twins_cross [1]" in summary
    assert "| align_common | 0.200 ± 0.000 | 0.400 ± 0.000 |" in summary
    assert (tmp_path / "trajectories.png").stat().st_size > 0
