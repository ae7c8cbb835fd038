"""BigEarthNet readers and classification transfer on generated fixtures in the release layouts (no ../shared)."""

from __future__ import annotations

import json

import pytest
import torch

from decur.cli import main
from decur.data import BigEarthNetMM, BigEarthNetV2
from decur.data.bigearthnet import LABELS_19

from .data.bigearthnet.data import SPLITS, make_v1, make_v2


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    return make_v1(tmp_path_factory.mktemp("ben") / "v1")


def test_v1_fixture_reads_with_pairing_bands_and_the_official_labels(v1):
    ds = BigEarthNetMM(v1, "train")
    assert len(ds) == SPLITS["train"]
    s = ds[2]  # "Sea and ocean" + "Intertidal flats": marine waters only, intertidal flats have no 19-class label
    assert s["s1"].shape == (2, 120, 120) and s["s2"].shape == (13, 120, 120)
    assert torch.nonzero(s["label"]).flatten().tolist() == [list(LABELS_19).index("Marine waters")]
    s = ds[3]  # salt marshes -> coastal wetlands, water bodies -> inland waters
    expected = sorted(list(LABELS_19).index(n) for n in ("Coastal wetlands", "Inland waters"))
    assert torch.nonzero(s["label"]).flatten().tolist() == expected


def test_v2_fixture_reads_with_exclusions(tmp_path):
    root = make_v2(tmp_path / "v2")
    ds = BigEarthNetV2(root, "train")
    assert len(ds) == 5  # one of six carries seasonal snow
    s = ds[0]
    assert s["s2"].shape == (13, 120, 120) and s["label"].sum() >= 1
    assert len(BigEarthNetV2(root, "train", exclude_snow=False)) == 6


def test_bigearthnet_finetuning_with_training_augmentation(v1, tmp_path):
    out = tmp_path / "ft"
    args = [f"root={v1}", "dataset=bigearthnet", "protocol=finetune", "epochs=1", "batch_size=4",
            "num_workers=0", "arch=resnet18", "modalities=[s1]"]  # fmt: skip
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    run = results["runs"][0]
    assert run["steps"] == 2 and results["setting"] == "supervised" and set(run["test"]) == {
        "map_micro", "map_macro", "f1_micro"}  # fmt: skip
