"""Transfer on the engine: label subsets, metrics, linear probe and fine-tuning, resume, validation, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from decur.augment import ViewPipeline
from decur.cli import main
from decur.config import ConfigError, load_config
from decur.data.synthetic import SyntheticMultimodal
from decur.evaluate import label_subset, segmentation_scores
from decur.evaluate.metrics import SegmentationScores, predict_classes
from decur.evaluate.module import TransferModule
from decur.evaluate.transfer import TransferConfig, run_transfer
from decur.models import create_encoder
from decur.train.run import pretrain

from .conftest import REPO

TINY = ["train_samples=32", "test_samples=16", "batch_size=16", "num_workers=0", "trainer.accelerator=cpu"]


def test_label_subsets_take_exactly_round_fraction_n_without_replacement():
    a = label_subset(1000, 0.01, seed=3)
    assert len(a) == 10 and len(set(a)) == 10 and a == label_subset(1000, 0.01, seed=3)
    assert a != label_subset(1000, 0.01, seed=4)
    assert len(label_subset(100, 0.07, 0)) == 7  # ceil gave 8
    assert len(label_subset(100, 0.001, 0)) == 1  # at least one
    assert label_subset(7, 1.0, 0) == list(range(7))
    with pytest.raises(ValueError, match="label_fraction"):
        label_subset(10, 0.0, 0)


def test_segmentation_scores_hand_computed_absent_class_and_ignored_pixels():
    # classes 0 (ignore), 1, 2, 3; class 3 occurs neither in the ground truth nor in the predictions
    target = torch.tensor([[1, 1, 2, 0], [2, 2, 1, 0]])
    pred = torch.tensor([[1, 2, 2, 3], [2, 1, 1, 1]])
    s = segmentation_scores(pred, target, num_classes=5, ignore_index=0)
    # ignored pixels (target 0) are left out, whatever was predicted there (3 and 1)
    # class 1: tp 2 (pos 0, 6), pred 1 at 0, 5, 6 -> fp 1, gt 1 at 0, 1, 6 -> fn 1: IoU 2/4
    # class 2: tp 2 (pos 2, 4), pred 2 at 1, 2, 4 -> fp 1, gt 2 at 2, 4, 5 -> fn 1: IoU 2/4
    assert s["iou_per_class"][1] == pytest.approx(0.5) and s["iou_per_class"][2] == pytest.approx(0.5)
    assert s["iou_per_class"][3] is None and s["iou_per_class"][4] is None and s["iou_per_class"][0] is None
    assert s["miou"] == pytest.approx(0.5)  # absent classes are not zeros in the mean
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    # a class only predicted counts (IoU 0)
    s2 = segmentation_scores(torch.tensor([1, 4]), torch.tensor([1, 1]), num_classes=5, ignore_index=0)
    assert s2["iou_per_class"][4] == 0.0 and s2["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_segmentation_scores_do_not_depend_on_batching():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 6, (4, 9, 9), generator=g), torch.randint(0, 6, (4, 9, 9), generator=g)
    whole = segmentation_scores(pred, target, 6, 0)
    for batch in (1, 2):
        metric = SegmentationScores(6, 0)
        for i in range(0, 4, batch):
            metric.update(pred[i : i + batch], target[i : i + batch])
        assert metric.compute() == whole


def test_the_ignore_class_is_never_predicted():
    scores = torch.zeros(1, 3, 2, 2)
    scores[:, 0] = 5.0  # the ignore class scores highest everywhere
    scores[:, 2, 0, 0] = 1.0
    assert predict_classes(scores, 0).tolist() == [[[2, 1], [1, 1]]]


def test_classification_metrics_are_dataset_level_and_hand_computed(tmp_path):
    from torch import nn

    from decur.evaluate.transfer.config import TransferOptimConfig
    from decur.models import LateFusionClassifier

    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6], [0.1, 0.3]])
    labels = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])
    model = LateFusionClassifier({"m": nn.Identity()}, 2, 2)
    model.head.weight.data = torch.eye(2)
    model.head.bias.data.zero_()
    view = ViewPipeline("none", 2, 8, (1.0, 1.0), [0.0, 0.0], [1.0, 1.0])
    view.normalize = lambda x: x  # the fixed scores are the logits
    module = TransferModule(model, {"m": view}, True, TransferOptimConfig("sgd", 0.1, 0.0, "step"), 2)
    for i in range(4):  # batch size 1: no per-batch averaging
        module.test_step({"m": scores[i : i + 1], "label": labels[i : i + 1]}, i)
    module.on_test_epoch_end()
    # micro: all 8 pairs by score .9+ .8+ .7+ .6- .3+ .2- .1- .1-: precision at the positives 1, 1, 1, 4/5
    assert module.results["map_micro"] == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)
    # macro: class 0 ranks both positives first (AP 1); class 1 .7+ .6- .3+ .1-: precisions 1 and 2/3
    assert module.results["map_macro"] == pytest.approx((1.0 + (1 + 2 / 3) / 2) / 2)


def test_macro_map_leaves_out_classes_without_positives():
    from torch import nn

    from decur.evaluate.transfer.config import TransferOptimConfig
    from decur.models import LateFusionClassifier

    # class 2 has no positive in this test set: its AP is undefined and must not count as 0 in the macro mean
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.7, 0.2], [0.2, 0.6, 0.9], [0.1, 0.3, 0.4]])
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    model = LateFusionClassifier({"m": nn.Identity()}, 3, 3)
    model.head.weight.data = torch.eye(3)
    model.head.bias.data.zero_()
    view = ViewPipeline("none", 3, 8, (1.0, 1.0), [0.0] * 3, [1.0] * 3)
    view.normalize = lambda x: x
    module = TransferModule(model, {"m": view}, True, TransferOptimConfig("sgd", 0.1, 0.0, "step"), 3)
    module.test_step({"m": scores, "label": labels}, 0)
    module.on_test_epoch_end()
    r = module.results
    assert r["map_macro"] == pytest.approx((1.0 + (1 + 2 / 3) / 2) / 2)  # classes 0 and 1 only, as hand-computed
    assert r["map_macro_classes"] == 2 and r["ap_per_class"][2] is None
    assert r["ap_per_class"][:2] == pytest.approx([1.0, (1 + 2 / 3) / 2])


@pytest.fixture(scope="module")
def pretrained(module_tmp):
    run = module_tmp("pretrained") / "run"
    pretrain(load_config(REPO / "configs" / "smoke.yaml", ["trainer.max_epochs=1", "eval.enabled=false"]), run)
    return run


def _encoder_state(ckpt_or_run, prefix="model.encoders."):
    from decur.runfiles import checkpoint_path

    state = torch.load(checkpoint_path(ckpt_or_run), map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.parametrize("cache", [True, False])
def test_linear_probe_leaves_encoders_and_batchnorm_statistics_unchanged(pretrained, tmp_path, cache):
    run = TransferConfig(pretrained=str(pretrained), epochs=2, cache_features=cache, seeds=[0], **_tiny())
    summary = run_transfer(run, tmp_path, progress=False)
    before, after = _encoder_state(pretrained), _encoder_state(tmp_path / "seed0", "model.encoders.")
    assert before.keys() == after.keys() and any("running_mean" in k for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running_mean/var, num_batches_tracked
    r = summary["runs"][0]
    assert r["cached_features"] is cache and r["lr"] == 0.5 and r["steps"] == 4 and summary["setting"] == "pretrained"
    assert set(r["test"]) == {"map_micro", "map_macro", "map_macro_classes", "ap_per_class", "f1_micro"}


def test_finetune_moves_encoders_and_missing_modality_works(pretrained, tmp_path):
    run = TransferConfig(pretrained=str(pretrained), protocol="finetune", epochs=1, label_fraction=0.5,
                      modalities=["sar"], **_tiny())  # fmt: skip
    summary = run_transfer(run, tmp_path, progress=False)
    before, after = _encoder_state(pretrained), _encoder_state(tmp_path / "seed0")
    assert set(after) == {k for k in before if k.startswith("sar.")}
    assert not torch.equal(before["sar.conv1.weight"], after["sar.conv1.weight"])
    assert len(summary["runs"][0]["train_indices"]) == 16 and summary["runs"][0]["lr"] == 0.05


def _tiny():
    return {"train_samples": 32, "test_samples": 16, "batch_size": 16, "num_workers": 0}


def test_random_init_finetuned_on_all_labels_is_the_supervised_row():
    assert TransferConfig(protocol="finetune").setting() == "supervised"
    assert TransferConfig(protocol="finetune", label_fraction=0.1).setting() == "random_init"
    assert TransferConfig(protocol="linear").setting() == "random_init"


def _metric_rows(path):
    import csv

    timing = {"samples_per_s", "data_wait", "eta_min"}
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(f)]


def test_killed_fine_tuning_resumes_at_its_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path, monkeypatch):
    from decur.config import EngineConfig

    engine = EngineConfig(log_every_n_steps=1)  # a metrics row every step: rows past the checkpoint must go
    args = {"task": "segmentation", "epochs": 3, "image_size": 32, "seeds": [0], "trainer": engine, **_tiny()}
    whole = run_transfer(TransferConfig(**args), tmp_path / "whole", progress=False)["runs"][0]

    original = TransferModule.on_train_batch_start

    def killed(self, batch, batch_idx):
        if self.global_step == 5:
            raise KeyboardInterrupt  # a killed job: step 5 logged, the last checkpoint is the one of step 4
        return original(self, batch, batch_idx)

    monkeypatch.setattr(TransferModule, "on_train_batch_start", killed)
    with pytest.raises(BaseException):  # noqa: B017 - Lightning turns the interrupt into its own exit
        run_transfer(TransferConfig(**args), tmp_path / "killed", progress=False)
    assert (tmp_path / "killed" / "seed0" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "killed" / "seed0" / "results.json").exists()
    monkeypatch.setattr(TransferModule, "on_train_batch_start", original)
    resumed = run_transfer(TransferConfig(**args), tmp_path / "killed", progress=False)["runs"][0]
    assert resumed["resumed_from"] == {"epoch": 2, "step": 4} and whole["resumed_from"] is None
    assert resumed["steps"] == whole["steps"] == 6
    assert resumed["steps_run"] == 2 and whole["steps_run"] == 6  # the second process ran only epoch 3
    assert resumed["test"] == whole["test"]
    # one history with the uninterrupted run's values: the resumed steps' loss and lr, no duplicated or missing rows
    rows = {name: _metric_rows(tmp_path / name / "seed0" / "metrics.csv") for name in ("whole", "killed")}
    steps = [r["step"] for r in rows["whole"]]
    assert [r["step"] for r in rows["killed"]] == steps == sorted(set(steps), key=int)
    assert rows["killed"] == rows["whole"]
    # a finished seed is skipped: its results are read back, nothing trains
    again = run_transfer(TransferConfig(**args), tmp_path / "killed", progress=False)["runs"][0]
    assert again["test"] == whole["test"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("optimizer=adam", "optimizer"),
        ("protocol=finetun", "protocol"),
        ("task=detection", "task"),
        ("schedule=cosine", "schedule"),
        ("label_fraction=0", "label_fraction"),
        ("label_fraction=1.5", "label_fraction"),
        ("modalities=[rgb]", "modalities"),
        ("dataset=bigearthnet", "root"),
        ("dataset=imagenet", "dataset"),
        *[
            (f"{name}=0", name)
            for name in ("epochs", "batch_size", "iterations", "eval_batch_size", "checkpoint_every", "decoder_dim")
        ],
        ("trainer.precision=bf32", "trainer.precision"),
        ("pretrained=/no/such/run", "pretrained"),
        ("model=unet", "model"),
        ("task=segmentation model=late_fusion", "model"),
        ("dataset=geonrw root=. task=classification", "dataset"),
        ("task=segmentation crop_size=[1,2,3]", "crop_size"),
        ("task=segmentation crop_size=0", "crop_size"),
        ("train_scales=[0.5,0]", "train_scales"),
        ("warmup_epochs=-1", "warmup_epochs"),
        ("seeds=[]", "seeds"),
        ("train_cities=[aachen]", "train_cities"),
        ("modalities=[]", "modalities"),
        ("task=retrieval", "pretrained"),
        ("task=segmentation model=cmx modalities=[optical]", "modalities"),
        ("task=segmentation model=cmx modalities=[optical,sar] arch=resnet18", "arch"),
        (
            "task=segmentation model=cmx modalities=[optical,sar] arch=mit_b0 segformer_weights=/no/file.pth",
            "segformer_weights",
        ),
    ],
)
def test_every_transfer_field_is_validated_before_anything_is_built(tmp_path, capsys, override, field):
    assert main(["transfer", "--output", str(tmp_path), *override.split()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"`{field}`" in err[0], err
    assert not (tmp_path / "seed0").exists()


def test_a_seed_folder_with_another_config_is_refused(tmp_path):
    args = {"task": "segmentation", "epochs": 1, "image_size": 32, **_tiny()}
    run_transfer(TransferConfig(**args), tmp_path, progress=False)
    (tmp_path / "seed0" / "results.json").unlink()
    with pytest.raises(ConfigError, match=r"lr: None -> 0\.5"):
        run_transfer(TransferConfig(**args, lr=0.5), tmp_path, progress=False)


def test_transfer_cli_on_a_pretrained_run(pretrained, tmp_path, capsys):
    out = tmp_path / "transfer"
    args = [f"pretrained={pretrained}", "epochs=2", *TINY, "modalities=[sar]", "seeds=[0, 1]"]
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 and {r["seed"] for r in results["runs"]} == {0, 1}
    assert (out / "seed1" / "config.yaml").is_file() and (out / "seed1" / "metrics.csv").is_file()
    assert results["map_micro"]["std"] > 0  # two seeds, two label draws and heads
    assert "map_micro" in capsys.readouterr().out


def test_fcn_takes_the_pretrained_weights(pretrained):
    from decur.models import FCN, feature_encoder

    encoders = _encoder_state(pretrained)
    sar = {k.removeprefix("sar."): v for k, v in encoders.items() if k.startswith("sar.")}
    fcn = FCN({"sar": feature_encoder("resnet18", 2, sar)}, 8)
    assert fcn({"sar": torch.randn(2, 2, 32, 32)}).shape == (2, 8, 32, 32)
    torch.testing.assert_close(fcn.encoders["sar"].conv1.weight, sar["conv1.weight"])


def test_segmentation_sgd_poly_schedule_runs_the_given_iterations(tmp_path, capsys):
    out = tmp_path / "seg"
    args = ["task=segmentation", *TINY, "image_size=32", "optimizer=sgd", "schedule=poly", "iterations=5"]
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    run = results["runs"][0]
    assert results["protocol"] == "finetune" and 0 <= results["miou"]["mean"] <= 1
    assert run["steps"] == 5  # 2 batches per pass: the data is cycled
    assert run["final_lr"] == pytest.approx(0.0)  # poly decays to zero at the last step
    config = json.loads((out / "results.json").read_text())["config"]
    assert (
        config["optimizer"] == "sgd"
        and TransferConfig(task="segmentation", optimizer="sgd").optim().weight_decay == 1e-5
    )


TINY_PROBES = ["linear_epochs=2", "train_samples=32", "test_samples=16", "image_size=32", "batch_size=16"]


@pytest.mark.slow  # 50 s; the sweep below runs the same pretrain -> transfer path in the fast suite
def test_tiny_experiment_grid_writes_csv_markdown_and_png(tmp_path, capsys):
    args = [
        "methods=[decur, 'barlow_twins_single:sar', random, random_bn]",
        "pretrain_overrides=[data.length=32, data.crop_size=24, data.batch_size=16, 'model.projector=[64, 64]', "
        "trainer.max_epochs=1, eval.train_samples=32, eval.test_samples=16]",
        "protocols=[linear]",
        "label_fractions=[1.0]",
        "modalities=[[optical, sar], [sar]]",
        "seeds=[0, 1]",
        *TINY_PROBES,
    ]
    out = tmp_path / "grid"
    assert main(["experiment", "--output", str(out), *args]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 + 1 + 2 + 2  # decur x 2 combos, BT single (sar only) x 1, random (both kinds) x 2
    md = (out / "results.md").read_text()
    assert "| decur |" in md and "| barlow_twins_single:sar |" in md and "Factor R²" in md and "±" in md
    assert (out / "results.png").stat().st_size > 1000


@pytest.mark.slow
def test_tiny_sweep_of_the_projector(tmp_path):
    args = [
        "parameter=model.projector",
        "values=[[], [32, 32]]",
        "pretrain_overrides=[data.length=32, data.crop_size=24, data.batch_size=16, trainer.max_epochs=1]",
        "modalities=[[optical, sar]]",
        "seeds=[0]",
        *TINY_PROBES,
    ]
    out = tmp_path / "sweep"
    assert main(["sweep", "--output", str(out), *args]) == 0
    md = (out / "sweep.md").read_text()
    assert "| [] |" in md and "| [32, 32] |" in md
    assert (out / "sweep.png").stat().st_size > 1000 and len((out / "sweep.csv").read_text().splitlines()) == 3


def test_adapt_batchnorm_sets_statistics_from_data_and_keeps_weights():
    from decur.evaluate.probe import adapt_batchnorm

    torch.manual_seed(0)
    data = SyntheticMultimodal(32, 32, seed=5)
    encoders = {"sar": create_encoder("resnet18", 2)}
    state = encoders["sar"].state_dict()
    weights = {k: v.clone() for k, v in state.items() if "running" not in k and "num_batches" not in k}
    views = {"sar": ViewPipeline("none", 2, 8, (1.0, 1.0), [0.0, 0.0], [1.0, 1.0])}
    adapt_batchnorm(encoders, views, data, batches=1)
    bn1 = encoders["sar"].bn1
    with torch.no_grad():  # the first BatchNorm sees conv1 of the (identity-standardised) SAR images
        x = torch.stack([data[i]["sar"] for i in range(32)])
        expected = encoders["sar"].conv1(x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn1.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not encoders["sar"].training
    for k, v in encoders["sar"].state_dict().items():
        if k in weights:
            torch.testing.assert_close(v, weights[k])


@pytest.mark.slow
def test_two_gloo_processes_give_the_dataset_level_metric_of_one(pretrained, tmp_path):
    """Linear probe on cached features: the 2-process global batches equal the 1-process ones, and the test set is
    split between the processes without padding, so mAP over the whole set must agree (up to float rounding)."""
    import os
    import subprocess
    import sys

    def cli(out, *extra):
        args = [f"pretrained={pretrained}", "epochs=3", "train_samples=32", "test_samples=15", "batch_size=16",
                "num_workers=0", "trainer.accelerator=cpu", *extra]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "decur", "transfer", "--output", str(out), *args]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((out / "results.json").read_text())

    one = cli(tmp_path / "one", "trainer.devices=1")
    two = cli(tmp_path / "two", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp")
    assert two["runs"][0]["steps"] == one["runs"][0]["steps"] == 6
    for key in ("map_micro", "map_macro"):
        assert two[key]["mean"] == pytest.approx(one[key]["mean"], abs=1e-4), key


def test_retrieval_cli_on_a_pretrained_run(pretrained, tmp_path, capsys):
    """`decur transfer task=retrieval`: both directions of the run's pair, in the common slice, the whole embedding
    and the backbone features, with the chance level of the test set (median rank (N + 1) / 2)."""
    out = tmp_path / "r"
    args = [f"pretrained={pretrained}", "task=retrieval", "test_samples=24", "image_size=32", "batch_size=8"]
    assert main(["transfer", "--output", str(out), *args, "num_workers=0"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_samples"] == 24 and set(saved["retrieval"]) == {"optical->sar", "sar->optical"}
    assert set(saved["retrieval"]["optical->sar"]) == {"common", "embedding", "features"}
    assert saved["retrieval"]["sar->optical"]["common"]["random_median_rank"] == 12.5
    assert "recall@1" in capsys.readouterr().out
