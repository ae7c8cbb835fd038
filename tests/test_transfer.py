"""Transfer: label subsets, linear probe leaves encoders and BN statistics unchanged, metrics, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from decur.augment import ViewPipeline
from decur.cli import main
from decur.config import load_config
from decur.data.synthetic import SyntheticMultimodal
from decur.evaluate.transfer import LateFusionClassifier, TransferConfig, evaluate, label_subset, train_classifier
from decur.models import create_encoder
from decur.train.run import pretrain

from .conftest import REPO


def test_label_subsets_are_without_replacement_and_reproducible():
    a = label_subset(1000, 0.01, seed=3)
    assert len(a) == 10 and len(set(a)) == 10 and a == label_subset(1000, 0.01, seed=3)
    assert a != label_subset(1000, 0.01, seed=4)
    assert label_subset(7, 1.0, 0) == list(range(7))
    with pytest.raises(ValueError, match="label_fraction"):
        label_subset(10, 0.0, 0)


def _setup():
    torch.manual_seed(0)
    train, test = SyntheticMultimodal(24, 32, seed=1), SyntheticMultimodal(16, 32, seed=2)
    encoders = {"optical": create_encoder("resnet18", 13), "sar": create_encoder("resnet18", 2)}
    views = {m: ViewPipeline("none", c, 8, (1.0, 1.0), [0.0] * c, [1.0] * c) for m, c in (("optical", 13), ("sar", 2))}
    return train, test, encoders, views


def test_linear_probe_leaves_encoders_and_batchnorm_statistics_unchanged():
    train, test, encoders, views = _setup()
    model = LateFusionClassifier(encoders, 512, 8)
    before = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    head = model.head.weight.clone()
    out = train_classifier(model, views, train, test, TransferConfig(epochs=2, batch_size=8), progress=False)
    after = model.encoders.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running_mean/var, num_batches_tracked
    assert not torch.equal(head, model.head.weight)
    assert set(out["test"]) == {"map_micro", "map_macro", "f1_micro"} and out["lr"] == 0.5


def test_finetune_moves_encoders_and_missing_modality_works():
    train, test, encoders, views = _setup()
    model = LateFusionClassifier({"sar": encoders["sar"]}, 512, 8)
    before = model.encoders["sar"].conv1.weight.clone()
    cfg = TransferConfig(protocol="finetune", epochs=1, batch_size=8, label_fraction=0.5)
    out = train_classifier(model, {"sar": views["sar"]}, train, test, cfg, progress=False)
    assert not torch.equal(before, model.encoders["sar"].conv1.weight)
    assert len(out["train_indices"]) == 12 and out["lr"] == 0.05


def test_metrics_over_the_whole_set_match_a_hand_computed_case():
    class Fixed(nn.Module):
        def forward(self, x):
            return x

    class Data(torch.utils.data.Dataset):
        scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6], [0.1, 0.3]])
        labels = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"m": self.scores[i], "label": self.labels[i]}

    model = LateFusionClassifier({"m": Fixed()}, 2, 2)
    model.head.weight.data = torch.eye(2)
    model.head.bias.data.zero_()
    view = ViewPipeline("none", 2, 8, (1.0, 1.0), [0.0, 0.0], [1.0, 1.0])
    view.normalize = lambda x: x  # the fixed scores are the logits
    metrics = evaluate(model, {"m": view}, Data(), batch_size=1)  # batch size 1: no per-batch averaging
    # micro: all 8 pairs by score .9+ .8+ .7+ .6- .3+ .2- .1- .1-: precision at the positives 1, 1, 1, 4/5
    assert metrics["map_micro"] == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)
    # macro: class 0 ranks both positives first (AP 1); class 1 .7+ .6- .3+ .1-: precisions 1 and 2/3
    assert metrics["map_macro"] == pytest.approx((1.0 + (1 + 2 / 3) / 2) / 2)


def test_transfer_cli_on_a_pretrained_run(tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(load_config(REPO / "configs" / "smoke.yaml", ["trainer.max_epochs=1", "eval.enabled=false"]), run)
    out = tmp_path / "transfer"
    args = [f"pretrained={run}", "epochs=2", "train_samples=32", "test_samples=16", "batch_size=16",
            "modalities=[sar]", "seeds=[0, 1]"]  # fmt: skip
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 and 0 <= results["map_micro"]["mean"] <= 1
    assert "map_micro" in capsys.readouterr().out


def test_fcn_shapes_ignore_index_and_miou(tmp_path):
    from decur.evaluate.segmentation import FCN, SegmentationConfig, feature_encoder, train_segmentation

    train, test, encoders, views = _setup()
    fcn = FCN(
        {m: feature_encoder("resnet18", c, encoders[m].state_dict()) for m, c in (("optical", 13), ("sar", 2))}, 8
    )
    x = {"optical": torch.randn(2, 13, 32, 32), "sar": torch.randn(2, 2, 32, 32)}
    assert fcn(x).shape == (2, 8, 32, 32)
    # the pretrained encoder's weights arrive in the feature extractor
    torch.testing.assert_close(fcn.encoders["sar"].conv1.weight, encoders["sar"].conv1.weight)
    cfg = SegmentationConfig(epochs=1, batch_size=8, ignore_index=0)
    out = train_segmentation(fcn, views, train, test, 8, cfg, progress=False)
    assert 0 <= out["test"]["miou"] <= 1 and len(out["test"]["iou_per_class"]) == 8
    # ignore index: a loss over only-ignored pixels contributes nothing
    loss = torch.nn.CrossEntropyLoss(ignore_index=0)(torch.randn(1, 8, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert torch.isnan(loss) or float(loss) == 0.0


def test_transfer_cli_segmentation_random_init(tmp_path, capsys):
    out = tmp_path / "seg"
    args = ["task=segmentation", "epochs=1", "train_samples=16", "test_samples=8", "batch_size=8", "image_size=32"]
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "finetune" and 0 <= results["miou"]["mean"] <= 1


def test_segmentation_sgd_poly_schedule_runs_the_given_iterations(tmp_path, capsys):
    out = tmp_path / "seg"
    args = ["task=segmentation", "train_samples=16", "test_samples=8", "batch_size=8", "image_size=32",
            "optimizer=sgd", "schedule=poly", "iterations=5"]  # fmt: skip
    assert main(["transfer", "--output", str(out), *args]) == 0
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["steps"] == 5  # 2 batches per pass: the data is cycled
    assert run["final_lr"] == pytest.approx(0.0)  # poly decays to zero at the last step
    with pytest.raises(ValueError, match="`optimizer`"):
        main(["transfer", "--output", str(out), *args[:5], "optimizer=adam"])


TINY_PROBES = ["linear_epochs=2", "train_samples=32", "test_samples=16", "image_size=32", "batch_size=16"]


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
