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
def v1(module_tmp):
    return make_v1(module_tmp("ben") / "v1")


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
        "map_micro", "map_macro", "map_macro_classes", "ap_per_class", "f1_micro"}  # fmt: skip


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packed_store_equals_the_raw_readers_and_transfers(v1, tmp_path, version):
    from decur.augment import as_float
    from decur.data.pack_bigearthnet import PackedBigEarthNet

    root = v1 if version == "v1" else make_v2(tmp_path / "v2")
    flag = ["--dataset", "bigearthnet" if version == "v1" else "bigearthnet_v2"]
    assert main(["data", "pack", str(root), str(tmp_path / "store"), *flag, "--workers", "1"]) == 0
    raw_test = BigEarthNetMM(root, "test") if version == "v1" else BigEarthNetV2(root, "test")
    packed = PackedBigEarthNet(tmp_path / "store", "test")
    assert len(packed) == len(raw_test)
    for i in range(len(packed)):
        p, r = packed[i], raw_test[i]
        assert p["s2"].dtype == torch.uint8 and torch.equal(as_float(p["s2"]), r["s2"])
        torch.testing.assert_close(as_float(p["s1"]), r["s1"], rtol=1e-3, atol=1e-2)  # float16 dB
        assert torch.equal(p["label"], r["label"])
    if version == "v1":
        out = tmp_path / "probe"
        args = [f"root={tmp_path / 'store'}", "dataset=bigearthnet", "epochs=1", "batch_size=4", "num_workers=0"]
        assert main(["transfer", "--output", str(out), *args]) == 0


def test_the_s1_pairing_cache_notices_a_tree_replaced_by_one_of_the_same_size(tmp_path):
    """Copied with its times kept (rsync -a, cp -a), the new S1 tree has the old entry count and mtime."""
    import os
    import shutil

    root = make_v1(tmp_path / "v1")
    s1_root = root / "BigEarthNet-S1-v1.0"
    before = BigEarthNetMM(root, "train")
    first = before[0]["s1"]
    stamp = s1_root.stat()
    # the replacement: every S1 patch renamed (the cache's folder names no longer exist)
    new = tmp_path / "new-s1"
    for folder in sorted(s1_root.iterdir()):
        target = new / f"{folder.name}_v2"
        shutil.copytree(folder, target)
        next(target.glob("*_labels_metadata.json")).rename(target / f"{target.name}_labels_metadata.json")
        for tif in target.glob("*.tif"):
            tif.rename(target / tif.name.replace(folder.name, target.name))
    shutil.rmtree(s1_root)
    new.rename(s1_root)
    os.utime(s1_root, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert len(list(s1_root.iterdir())) == len(list(new.parent.glob("v1/BigEarthNet-S1-v1.0/*")))
    torch.testing.assert_close(BigEarthNetMM(root, "train")[0]["s1"], first)


def test_a_finished_transfer_seed_is_reused_on_its_data_moved_but_not_on_other_data(v1, tmp_path, capsys):
    import json
    import shutil

    out = tmp_path / "probe"
    args = ["dataset=bigearthnet", "epochs=1", "batch_size=4", "num_workers=0"]
    assert main(["transfer", "--output", str(out), f"root={v1}", *args]) == 0
    first = json.loads((out / "results.json").read_text())["map_micro"]
    moved = tmp_path / "scratch" / "v1"
    shutil.copytree(v1, moved)
    assert main(["transfer", "--output", str(out), f"root={moved}", *args]) == 0
    assert json.loads((out / "results.json").read_text())["map_micro"] == first  # the finished seed, reused
    other = tmp_path / "other"
    shutil.copytree(v1, other)
    lines = (other / "train.csv").read_text().splitlines()
    (other / "train.csv").write_text("\n".join(lines[:-1]) + "\n")  # one training patch fewer: other data
    capsys.readouterr()
    assert main(["transfer", "--output", str(out), f"root={other}", *args]) == 2  # a config error
    err = capsys.readouterr().err
    assert "holds other data than seed folder" in err and err.strip().count("\n") == 0
