"""SUN-RGBD and NYUv2 as they really are, on generated fixtures: mixed image sizes, raw PGM depth, HHA, transfer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from decur.cli import main
from decur.config import load_config
from decur.data.crops import CroppedViews, TrainCrop
from decur.data.rgbd import RGBDSegmentation, read_depth
from decur.train.run import pretrain

from .conftest import REPO
from .data.rgbd.data import NYU_SIZE, SUN_SIZES, make_nyuv2, make_sunrgbd


@pytest.fixture(scope="module")
def sun(module_tmp):
    return make_sunrgbd(module_tmp("rgbd") / "sunrgbd")


def test_fixture_has_mixed_sizes_and_the_sun_depth_encoding_round_trips(sun):
    ds = RGBDSegmentation(sun, "train", 37)
    sizes = {tuple(ds[i]["rgb"].shape[-2:]) for i in range(len(ds))}
    assert sizes == set(SUN_SIZES)
    depth = read_depth(sun / "Depth" / f"{ds.names[0]}.png", "sun")
    assert 1.0 <= depth.min() and depth.max() <= 5.0  # the fixture's metres, after undoing the bit rotation
    assert len(RGBDSegmentation(sun, "all", 37, with_mask=False)) == 2 * len(ds)


def test_views_are_cropped_per_sample_at_each_image_size(sun):
    ds = CroppedViews(RGBDSegmentation(sun, "train", 37, with_mask=False), {"rgb": "rgb", "hha": "hha"}, 24, (0.5, 1))
    torch.manual_seed(0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])  # mixed sizes stack after cropping
    assert batch["rgb"].shape == (6, 2, 3, 24, 24) and batch["hha"].shape == (6, 2, 3, 24, 24)
    # the first views of the two modalities share their geometry, the second ones do not
    twins = CroppedViews(_Twins(ds.dataset), {"rgb": "rgb", "hha": "rgb"}, 24, (0.2, 1))
    torch.manual_seed(1)
    s = twins[0]
    assert torch.equal(s["rgb"][0], s["hha"][0]) and not torch.equal(s["rgb"][1], s["hha"][1])


def test_train_crops_are_identical_for_every_modality_and_the_mask(sun):
    ds = RGBDSegmentation(sun, "train", 37)
    crop = TrainCrop(ds, ["rgb", "hha"], (0.2, 1.0), size=16)
    torch.manual_seed(3)
    s = crop[4]
    assert s["rgb"].shape == (3, 16, 16) and s["mask"].shape == (16, 16) and s["mask"].dtype == torch.long
    assert set(s["mask"].unique().tolist()) <= set(ds[4]["mask"].unique().tolist())  # nearest: no blended class
    # the same geometry everywhere: with the RGB image standing in for the HHA one, both crops are equal
    same = TrainCrop(_Twins(ds), ["rgb", "hha"], (0.2, 1.0), size=16)
    torch.manual_seed(5)
    t = same[1]
    assert torch.equal(t["rgb"], t["hha"])


class _Twins(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        s = self.ds[i]
        return {**s, "hha": s["rgb"].clone()}


def test_sunrgbd_pretraining_and_full_size_segmentation_on_mixed_sizes(sun, tmp_path):
    overrides = [f"data.root={sun}", "data.split=all", "data.crop_size=32", "data.batch_size=4", "data.num_workers=0",
                 "trainer.max_epochs=1", "trainer.devices=1", "trainer.strategy=auto", "trainer.precision=32-true",
                 "model.arch=resnet18", "model.projector=[64, 64]"]  # fmt: skip
    summary = pretrain(load_config(REPO / "configs" / "sunrgbd_decur.yaml", overrides), tmp_path / "run")
    assert np.isfinite(summary["final_loss"]["train/total"]) and summary["global_step"] == 3  # 12 pairs / 4
    out = tmp_path / "seg"
    args = [f"root={sun}", f"pretrained={tmp_path / 'run'}", "iterations=3", "batch_size=2", "crop_size=32",
            "num_workers=0", "modalities=[rgb, hha]"]  # fmt: skip
    config = str(REPO / "configs" / "transfer_sunrgbd.yaml")
    assert main(["transfer", "--config", config, "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    run = results["runs"][0]
    assert run["steps"] == 3 and run["test"]["classes_present"] >= 2 and 0 <= results["miou"]["mean"] <= 1
    assert len(run["test"]["iou_per_class"]) == 38 and run["test"]["iou_per_class"][0] is None  # 0 = ignored


def test_nyuv2_raw_pgm_depth_to_hha_and_segmentation(tmp_path):
    root = make_nyuv2(tmp_path / "nyuv2")
    depth = read_depth(root / "Depth" / "train_0000.pgm", "nyu_raw")
    assert depth.shape == NYU_SIZE and depth[0, 0] == 0 and 0.9 < depth[10:].min() and depth.max() < 5.2
    fx = 518.85790117450188 / 10
    args = ["data", "hha", str(root / "Depth"), str(root / "HHA"), "--encoding", "nyu_raw", "--camera",
            str(fx), str(fx), "32", "24"]  # fmt: skip
    assert main(args) == 0
    sample = RGBDSegmentation(root, "test", 40)[0]
    assert sample["hha"].shape == (3, *NYU_SIZE) and int(sample["mask"].max()) <= 40
    out = tmp_path / "seg"
    args = [f"root={root}", "iterations=2", "batch_size=2", "crop_size=32", "num_workers=0", "arch=resnet18"]
    assert (
        main(["transfer", "--config", str(REPO / "configs" / "transfer_nyuv2.yaml"), "--output", str(out), *args]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "supervised" and len(results["runs"][0]["test"]["iou_per_class"]) == 41


def test_hha_takes_per_image_intrinsics_and_clamps_far_depth(tmp_path):
    from PIL import Image

    from decur.data.hha import depth_to_hha

    # SUN-RGBD's original layout: <scene>/depth/<name>.png next to <scene>/intrinsics.txt
    scene = tmp_path / "scene"
    (scene / "depth").mkdir(parents=True)
    depth = np.full((30, 40), 2.5)
    depth[:, :10] = 12.0  # beyond the sensor: clamped to 8 m
    mm = np.round(depth * 1000).astype(np.uint16)
    Image.fromarray(((mm << 3) | (mm >> 13)).astype(np.uint16)).save(scene / "depth" / "f.png")
    camera = np.array([[40.0, 0, 20], [0, 40.0, 15], [0, 0, 1]])
    (scene / "intrinsics.txt").write_text(" ".join(f"{v:g}" for v in camera.flatten()))
    assert main(["data", "hha", str(scene / "depth"), str(tmp_path / "hha"), "--encoding", "sun"]) == 0
    got = np.asarray(Image.open(tmp_path / "hha" / "f.png"))
    expected = depth_to_hha(np.minimum(depth, 8.0), camera)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, depth_to_hha(np.minimum(depth, 8.0)))  # NYU's camera would differ
    # a folder of per-image files must hold one for every image, named in the error
    (tmp_path / "cams").mkdir()
    assert main(["data", "hha", str(scene / "depth"), str(tmp_path / "h2"), "--encoding", "sun",
                 "--intrinsics", str(tmp_path / "cams")]) == 1  # fmt: skip


@pytest.mark.parametrize("config", ["transfer_sunrgbd.yaml", "transfer_nyuv2.yaml"])
@pytest.mark.parametrize("modalities", ["[rgb]", "[rgb, hha]"])
def test_shipped_rgbd_configs_run_on_mixed_sizes_with_one_and_both_modalities(sun, tmp_path, config, modalities):
    # the shipped configs (modalities [rgb]) on SUN-RGBD's mixed sizes; tiny overrides: 2 steps, 32 px, random init
    out = tmp_path / "seg"
    args = [f"root={sun}", "pretrained=null", "arch=resnet18", "iterations=2", "batch_size=2", "crop_size=32",
            "num_workers=0", f"modalities={modalities}"]  # fmt: skip
    assert main(["transfer", "--config", str(REPO / "configs" / config), "--output", str(out), *args]) == 0
    assert json.loads((out / "results.json").read_text())["runs"][0]["steps"] == 2


def test_rgbd_reads_only_the_modalities_asked_for(sun, tmp_path):
    import shutil

    rgb_only = RGBDSegmentation(sun, "train", 37, modalities=["rgb"])
    assert set(rgb_only[0]) == {"rgb", "mask"}
    root = tmp_path / "no_hha"
    shutil.copytree(sun, root)
    shutil.rmtree(root / "HHA")
    assert set(RGBDSegmentation(root, "train", 37, modalities=["rgb"])[0]) == {"rgb", "mask"}  # HHA never opened
    assert set(RGBDSegmentation(sun, "train", 37, modalities=["hha"])[0]) == {"hha", "mask"}
    with pytest.raises(ValueError, match="modalities"):
        RGBDSegmentation(sun, "train", 37, modalities=["depth"])
