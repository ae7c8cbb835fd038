"""``method.common_dim: auto`` end to end: refused configs, runs that record and resume the split (ResNet, ViT, three
modalities, the real samples), and the split study's aggregation."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from decur.config import ConfigError, load_config

from .conftest import REPO

SMOKE = REPO / "configs" / "smoke.yaml"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["method.common_dim=some"], "method.common_dim"),
        (["method.common_dim=auto", "method.name=barlow_twins_cross"], "method.common_dim"),
        (["method.common_dim=auto", "model.projector=[]"], "method.common_dim"),
        (["method.common_dim=auto", "method.auto_warmup=1.0"], "method.auto_warmup"),
        (["method.common_dim=auto", "data.batch_size=8"], "data.batch_size"),
    ],
)
def test_auto_is_refused_where_there_is_nothing_to_split(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(SMOKE, overrides).validate(check_paths=False)


def test_a_run_with_auto_records_the_split_and_trains_on_with_it(tmp_path):
    from decur.train.module import PretrainModule
    from decur.train.run import pretrain
    from decur.weights.export import read_run

    out = tmp_path / "run"
    cfg = load_config(SMOKE, ["method.common_dim=auto", "method.auto_warmup=0.5", "eval.enabled=false"])
    summary = pretrain(cfg, out)
    split = summary["common_dim_auto"]
    k = cfg.embed_dim
    assert split["found_at_step"] == 4 and split["window_steps"] == 2 and split["warmup_steps"] == 4  # 8 steps
    assert 0 <= split["common_dim"] <= k and split["common_share"] == pytest.approx(split["common_dim"] / k, abs=1e-4)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["method"]["common_dim"] == split["common_dim"]
    assert ckpt["common_dim_auto"]["found"] == split["common_dim"]
    module = PretrainModule.from_run(out)  # what explain and transfer load: the found split, not "auto"
    assert module.objective.common_dim == split["common_dim"]
    exported = read_run(out)
    assert exported.common_dim == split["common_dim"]
    assert exported.card["common_dim_found_by"] == {"rule": "auto", "found_at_step": 4, "warmup_steps": 4}
    with open(out / "metrics.csv", newline="") as f:
        shares = [float(r["split_common_share"]) for r in csv.DictReader(f) if r.get("split_common_share")]
    assert shares and shares[-1] == pytest.approx(split["common_share"], abs=1e-4)
    assert json.loads((out / "summary.json").read_text())["common_dim_auto"] == split
    assert "auto" in (out / "config.yaml").read_text()  # the run's config keeps what the user asked


def test_a_run_stopped_inside_the_warm_up_resumes_to_the_uninterrupted_split_and_weights(tmp_path):
    """Stopped after a step checkpoint in the middle of the statistics window, re-run: the same split, the same
    reordered weights and the same history as the run that was never stopped (the window's sums are checkpointed)."""
    import lightning as L

    from decur.train.run import pretrain

    overrides = ["method.common_dim=auto", "method.auto_warmup=0.5", "eval.enabled=false", "trainer.checkpoint_every=1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    pretrain(load_config(SMOKE, overrides), full)

    class StopInsideTheWindow(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 3:  # steps 0-2 done and checkpointed; the window is steps 2 and 3
                raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        pretrain(load_config(SMOKE, overrides), cut, callbacks=[StopInsideTheWindow()])
    state = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)
    assert (
        state["global_step"] == 3
        and state["common_dim_auto"]["count"] == 1
        and state["common_dim_auto"]["found"] is None
    )
    from decur.weights.export import read_run

    mid = read_run(cut)  # a checkpoint of the warm-up: every dimension is common so far, no split recorded
    assert mid.common_dim == 64 and "common_dim_found_by" not in mid.card
    resumed = pretrain(load_config(SMOKE, overrides), cut)
    first = json.loads((full / "summary.json").read_text())
    assert resumed["resumed_from"]["step"] == 3 and resumed["common_dim_auto"] == first["common_dim_auto"]
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["common_dim_auto"]["order"] == b["common_dim_auto"]["order"]
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def test_vit_encoders_and_three_modalities_find_a_split(tmp_path):
    from decur.train.run import pretrain

    overrides = [
        "method.common_dim=auto",
        "method.auto_warmup=0.5",
        "eval.enabled=false",
        "trainer.max_epochs=1",
        "data.length=64",
        "model.arch=vit_tiny_patch16_224",
        "data.crop_size=32",
        "optim.name=adamw",
        "data.modalities=[{name: optical, bands: 13, augment: optical}, {name: sar, bands: 2, augment: sar}, "
        "{name: elevation, bands: 1, augment: dem}]",
    ]
    summary = pretrain(load_config(SMOKE, overrides), tmp_path / "vit")
    split = summary["common_dim_auto"]
    assert split["found_at_step"] == 2 and split["window_steps"] == 1 and 0 <= split["common_dim"] <= 64


@pytest.mark.slow  # two small real-data runs (~1 min); their splits are reported in docs/results/split/README.md
def test_auto_finds_a_split_on_the_real_ssl4eo_s12_and_rgbd_samples(tmp_path, capsys):
    from decur.train.run import pretrain

    from .test_rgbd import RGBD, real_frames_with_hha
    from .test_ssl4eo_s12 import REAL, _ssl4eo_overrides

    if not (REAL.is_dir() and RGBD.is_dir()):
        pytest.skip(f"real samples not found at {REAL} / {RGBD}")
    auto = ["method.common_dim=auto", "trainer.max_epochs=8", "model.projector=[256, 256, 256]"]
    root = tmp_path / "s12"
    for product in ("s1", "s2c"):
        (root / product).mkdir(parents=True)
        for i in range(32):  # the one real location, linked under 32 ids: two batches of 16 per epoch
            (root / product / f"{i:07d}").symlink_to(REAL / product / "0000200")
    s12_overrides = [*_ssl4eo_overrides(root, 264), "data.batch_size=16", *auto]
    s12 = pretrain(load_config(SMOKE, s12_overrides), tmp_path / "run-s12")
    frames = real_frames_with_hha(tmp_path)
    (frames / "train.txt").write_text("nyu\nsun\n" * 16)  # the two real frames, 16 times each
    rgbd_overrides = [f"data.root={frames}", "data.split=train", "data.crop_size=32", "data.batch_size=16",
                      "data.num_workers=0", "trainer.devices=1", "trainer.strategy=auto", "model.arch=resnet18",
                      "trainer.precision=32-true", *auto]  # fmt: skip
    rgbd = pretrain(load_config(REPO / "configs" / "sunrgbd_decur.yaml", rgbd_overrides), tmp_path / "run-rgbd")
    with capsys.disabled():
        for name, summary in (("SSL4EO-S12 S1/S2", s12), ("SUN-RGBD/NYU RGB/HHA", rgbd)):
            print(f"\n{name}: {json.dumps(summary['common_dim_auto'])}")
    for summary in (s12, rgbd):
        split = summary["common_dim_auto"]
        assert split["found_at_step"] == summary["global_step"] // 2 and 0 <= split["common_dim"] <= 256


def test_the_study_takes_the_grid_share_with_the_best_seed_mean_map_and_compares_auto_with_it():
    from decur.evaluate.split_study import aggregate

    def row(run, share, seed, m, u, seconds=10.0):
        return {"setting": "s", "seed": seed, "run": run, "common_share": share, "map_micro": m, "unique_r2": u,
                "fit_seconds": seconds}  # fmt: skip

    rows = [
        row("grid", 0.5, 0, 0.80, 0.6), row("grid", 0.5, 1, 0.84, 0.6),  # mean 0.82
        row("grid", 1.0, 0, 0.83, 0.4), row("grid", 1.0, 1, 0.83, 0.5),  # mean 0.83: the best (one seed 0.84 is not)
        row("auto", 0.7, 0, 0.825, 0.55, 12.0), row("auto", 0.6, 1, 0.829, 0.65, 12.0),
    ]  # fmt: skip
    (s,) = aggregate(rows, ["s"])
    assert s["best_share"] == 1.0
    assert s["best_map"] == pytest.approx((0.83, 0.0)) and s["best_unique_r2"] == pytest.approx((0.45, 0.05))
    assert s["auto_share"] == pytest.approx((0.65, 0.05)) and s["auto_map"][0] == pytest.approx(0.827)
    assert s["map_gap_points"] == pytest.approx(-0.3)  # 100 x (0.827 - 0.83)
    assert s["compute_ratio"] == pytest.approx(24 / 40)  # auto's two runs against the grid's four
