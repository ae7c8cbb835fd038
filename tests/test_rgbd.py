"""RGB-D: HHA against the golden MATLAB output, geometric properties, raw depth readers, the dataset, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decur.cli import main
from decur.config import load_config
from decur.data.errors import DatasetError
from decur.data.hha import NYU_CAMERA, depth_to_hha
from decur.data.rgbd import RGBDSegmentation, read_depth
from decur.train.run import pretrain

from .conftest import REAL_DATA, REPO

RGBD = REAL_DATA / "rgbd"
GOLDEN = RGBD / "depth2hha-golden" / "demo"
FRAMES = RGBD / "open3d-nyu-sun" / "examples" / "TestData" / "RGBD" / "other_formats"
needs_real = pytest.mark.skipif(not RGBD.is_dir(), reason=f"real RGB-D samples not found at {RGBD}")


@needs_real
def test_hha_agrees_with_the_golden_matlab_output():
    depth = read_depth(GOLDEN / "0.png", "0.1mm")
    ours = depth_to_hha(depth, NYU_CAMERA).astype(int)
    gold = np.asarray(Image.open(GOLDEN / "matlab_hha.png")).astype(int)
    diff = np.abs(ours - gold)
    assert (diff[..., 0] == 0).mean() > 0.999  # disparity: identical
    assert (diff[..., 1] <= 1).mean() > 0.99  # height (cm): gravity estimate matches
    assert diff[..., 2].mean() < 2.5 and (diff[..., 2] <= 5).mean() > 0.9  # angle (deg): normals agree closely


def test_hha_geometry_of_a_synthetic_room():
    """A camera 1.2 m above a floor, a wall 4 m ahead: floor at 0 deg, wall at 90 deg, heights from the floor."""
    h, w, f = 120, 160, 100.0
    camera = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    yy, _ = np.meshgrid(np.arange(1, h + 1) - h / 2, np.arange(1, w + 1), indexing="ij")
    wall = np.full((h, w), 4.0)
    floor = np.where(yy > 0, 1.2 * f / np.maximum(yy, 1e-6), np.inf)  # y = 1.2 m plane
    depth = np.minimum(wall, floor)
    hha = depth_to_hha(depth, camera).astype(int)
    assert abs(np.median(hha[10:30, 60:100, 2]) - 128) <= 2  # wall: 90 deg + 38
    assert abs(np.median(hha[110:118, 60:100, 2]) - 38) <= 2  # floor: 0 deg + 38
    assert hha[115, 80, 1] < hha[60, 80, 1] < hha[10, 80, 1]  # higher up the wall, larger height
    assert np.all(hha[..., 0] == np.clip(np.rint(31000 / np.maximum(depth * 100, 100)), 0, 255))


@needs_real
def test_raw_depth_readers_on_real_frames():
    nyu = read_depth(FRAMES / "NYU_depth.pgm", "nyu_raw")
    sun = read_depth(FRAMES / "SUN_depth.png", "sun")
    for depth, lo, hi in ((nyu, 1.0, 7.0), (sun, 0.5, 10.0)):
        valid = depth[depth > 0]
        assert depth.shape == (480, 640) and valid.size > 0.8 * depth.size
        assert lo < valid.min() and valid.max() < hi and 2.0 < np.median(valid) < 4.0
    with pytest.raises(DatasetError, match="not a binary PGM"):
        bad = Path(__file__).parent / "conftest.py"
        read_depth(bad, "nyu_raw")


def _layout(root: Path, frames: list[tuple[str, Path, Path, str]]) -> Path:
    for sub in ("RGB", "Depth", "Label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for name, rgb, depth, _ in frames:
        shutil.copy(rgb, root / "RGB" / f"{name}{rgb.suffix}")
        shutil.copy(depth, root / "Depth" / f"{name}{depth.suffix}")
        with Image.open(rgb) as img:
            w, h = img.size
        Image.fromarray((np.arange(h * w).reshape(h, w) % 38).astype(np.uint8)).save(root / "Label" / f"{name}.png")
        names.append(name)
    (root / "train.txt").write_text("".join(f"RGB/{n}.jpg Label/{n}.png\n" for n in names))
    return root


def real_frames_with_hha(tmp_path: Path) -> Path:
    """The real NYU and SUN frames in the RGB-D layout, each depth encoding converted to HHA with the CLI."""
    root = tmp_path / "sunrgbd"
    frames = [("nyu", FRAMES / "NYU_color.ppm", FRAMES / "NYU_depth.pgm", "nyu_raw"),
              ("sun", FRAMES / "SUN_color.jpg", FRAMES / "SUN_depth.png", "sun")]  # fmt: skip
    _layout(root, frames)
    for name, _, depth, encoding in frames:
        single = tmp_path / f"depth-{name}"
        single.mkdir()
        shutil.copy(depth, single / f"{name}{depth.suffix}")
        assert main(["data", "hha", str(single), str(root / "HHA"), "--encoding", encoding]) == 0
    return root


@needs_real
def test_dataset_reads_real_frames_and_their_hha_conversion(tmp_path):
    root = real_frames_with_hha(tmp_path)
    ds = RGBDSegmentation(root, "train", num_classes=37)
    s = ds[0]
    assert s["rgb"].shape == (3, 480, 640) and s["hha"].shape == (3, 480, 640) and s["mask"].max() == 37
    expected = depth_to_hha(read_depth(FRAMES / "NYU_depth.pgm", "nyu_raw")) / 255
    np.testing.assert_allclose(s["hha"].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    with_depth = RGBDSegmentation(root, "train", depth_folder="Depth", depth_encoding="sun")
    assert with_depth[1]["depth"].shape == (1, 480, 640)


@needs_real
@pytest.mark.slow  # the shipped RGB-D configs run on generated frames of mixed sizes in the fast suite
def test_pretraining_and_segmentation_transfer_on_real_frames(tmp_path):
    root = real_frames_with_hha(tmp_path)
    # the RGB-depth config runs on these frames (repeated to fill a batch)
    (root / "train.txt").write_text("nyu\nsun\nnyu\nsun\n")
    overrides = [f"data.root={root}", "data.split=train", "data.crop_size=32", "data.batch_size=2",
                 "data.num_workers=0", "trainer.max_epochs=1", "trainer.devices=1", "trainer.strategy=auto",
                 "trainer.precision=32-true",
                 "model.arch=resnet18", "model.projector=[64, 64]"]  # fmt: skip
    summary = pretrain(load_config(REPO / "configs" / "sunrgbd_decur.yaml", overrides), tmp_path / "run")
    assert np.isfinite(summary["final_loss"]["train/total"])
    # ... and the RGB FCN transfer with the paper's SGD + poly schedule, from that run, on the same frames
    (root / "test.txt").write_text("nyu\nsun\n")
    out = tmp_path / "seg"
    args = [f"root={root}", f"pretrained={tmp_path / 'run'}", "iterations=2", "batch_size=2", "label_fraction=1.0"]
    assert (
        main(["transfer", "--config", str(REPO / "configs" / "transfer_sunrgbd.yaml"), "--output", str(out), *args])
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["runs"][0]["steps"] == 2 and 0 <= results["miou"]["mean"] <= 1 and "pixel_accuracy" in results


@needs_real
def test_dataset_errors(tmp_path):
    root = _layout(tmp_path / "d", [("nyu", FRAMES / "NYU_color.ppm", FRAMES / "NYU_depth.pgm", "nyu_raw")])
    with pytest.raises(DatasetError, match="HHA: folder for hha is missing"):
        RGBDSegmentation(root)
    with pytest.raises(DatasetError, match="split list is missing"):
        RGBDSegmentation(root, "test", depth_folder="Depth")
    ds = RGBDSegmentation(root, depth_folder="Depth", depth_encoding="nyu_raw", num_classes=20)
    with pytest.raises(DatasetError, match="holds class 37 > 20"):
        ds[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "Label" / "nyu.png")
    with pytest.raises(DatasetError, match=r"mask size \(10, 10\) differs"):
        RGBDSegmentation(root, depth_folder="Depth", depth_encoding="nyu_raw")[0]
    (root / "Label" / "nyu.png").unlink()
    with pytest.raises(DatasetError, match="no image with this name"):
        RGBDSegmentation(root, depth_folder="Depth", depth_encoding="nyu_raw")[0]


@needs_real
def test_kinect_v2_frames_of_esanet_and_emsanet():
    depth = read_depth(RGBD / "emsanet" / "samples" / "sample_depth.png", "mm")
    valid = depth[depth > 0]
    assert 0.03 < valid.min() and valid.max() < 15 and 1 < np.median(valid) < 6  # an indoor scene in metres
    rgb = np.asarray(Image.open(RGBD / "emsanet" / "samples" / "sample_rgb.png"))
    assert rgb.shape[:2] == depth.shape and rgb.shape[2] == 3
    # HHA of the frame at half resolution (the intrinsics halved with it): the full 1080 x 1440 takes ~10 s
    hha = depth_to_hha(depth[::2, ::2], np.array([[525.0, 0, 360], [0, 525.0, 270], [0, 0, 1]]))
    assert hha.shape == (540, 720, 3) and 30 < np.median(hha[..., 2]) < 230
    # ESANet's depth PNG is scaled, not metric: read it raw and check it is a 16-bit Kinect v2 frame
    raw = read_depth(RGBD / "esanet" / "samples" / "sample_depth.png", "m")
    assert raw.shape == (424, 512) and raw.max() > 255 and (raw == 0).mean() < 0.2
