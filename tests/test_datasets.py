"""The dataset registry (``decur.datasets``): the built-in declarations against their sources, and a dataset defined
only in this file that validates, pretrains, transfers and is checked without a line of ``src/`` naming it.

The dataset ``tiles`` below is what a user writes to add one: a reader of ``<id>_a.npy`` (3 bands), ``<id>_b.npy``
(1 band) and ``<id>_mask.npy`` (classes 1-3, 0 unlabelled), its factories, its rules and one ``register_dataset``
call. ``DECUR_PLUGINS=tests.test_datasets`` makes the command line import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.utils.data import Dataset

from decur import datasets as registry
from decur.data.errors import DatasetError
from decur.datasets import DatasetSpec, register_dataset, unregister_dataset

from .conftest import REPO

# ---- a dataset of one's own: everything about it in this block ----------------------------------------------------

SIDE = 32
CLASSES = 3


class Tiles(Dataset[dict[str, Tensor]]):
    """Co-registered tiles ``<id>_a.npy`` (3 x 32 x 32), ``<id>_b.npy`` (1 x 32 x 32), ``<id>_mask.npy`` (32 x 32)."""

    def __init__(self, root: str | Path, split: str = "train", modalities: list[str] | None = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {split!r}")
        self.root = Path(root) / split
        self.ids = sorted(p.name.removesuffix("_a.npy") for p in self.root.glob("*_a.npy"))
        self.modalities = modalities or ["a", "b"]

    def __len__(self) -> int:
        return len(self.ids)

    def locate(self, index: int) -> tuple[str, Path | None]:
        """Sample ``index``'s id, and no georeferenced file (``decur embed`` names rows with it)."""
        return self.ids[index], None

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        out = {}
        for m in [*self.modalities, "mask"]:
            path = self.root / f"{self.ids[index]}_{m}.npy"
            try:
                array = np.load(path)
            except (OSError, ValueError) as err:
                raise DatasetError(path, f"cannot be read ({err})", "write it again") from None
            out[m] = torch.from_numpy(array).long() if m == "mask" else torch.from_numpy(array).float()
        return out


def _pretrain(cfg: Any, **_: Any) -> Tiles:
    return Tiles(cfg.data.root, "train", [m.name for m in cfg.data.modalities])


def _transfer(run: Any, role: str, modalities: list[str]) -> Tiles:
    return Tiles(run.root, role, modalities)


def _check(root: Path, split: str, options: dict[str, Any]) -> Tiles:
    return Tiles(root, split)


def _rules(data: Any) -> list[tuple[str, str]]:
    bands = {"a": 3, "b": 1}
    return [
        ("data.modalities", f"tiles has a (3 bands) and b (1 band), got {m.name} with {m.bands}")
        for m in data.modalities
        if bands.get(m.name) != m.bands
    ]


TILES = DatasetSpec(
    {"a": 3, "b": 1},
    pretrain=_pretrain,
    transfer=_transfer,
    check=_check,
    rules=_rules,
    splits=("train", "test"),
    classes=CLASSES,
    segmentation=True,
    crop=SIDE,
)


def register() -> None:
    register_dataset("tiles", TILES, replace=True)


if os.environ.get("DECUR_PLUGINS") == __name__:  # the command line names this file as a plugin
    register()

# ---- its files and the tests -----------------------------------------------------------------------------------------


def write_tiles(root: Path, train: int = 48, test: int = 16) -> Path:
    """Tiles whose class (1-3) sets the mean of ``a`` and ``b`` in each quarter of the tile."""
    g = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            mask = np.kron(g.integers(1, CLASSES + 1, (2, 2)), np.ones((SIDE // 2, SIDE // 2), dtype=np.int64))
            mask[:2] = 0  # an unlabelled strip
            a = mask[None].astype(np.float32) * np.array([1.0, 0.5, -1.0], np.float32)[:, None, None]
            b = (mask[None] % 2).astype(np.float32)
            np.save(root / split / f"t{i:03d}_a.npy", a + g.normal(0, 0.3, a.shape).astype(np.float32))
            np.save(root / split / f"t{i:03d}_b.npy", b + g.normal(0, 0.3, b.shape).astype(np.float32))
            np.save(root / split / f"t{i:03d}_mask.npy", mask)
    return root


@pytest.fixture
def tiles(tmp_path):
    register()
    yield write_tiles(tmp_path / "tiles")
    unregister_dataset("tiles")


def _pretrain_config(root: Path, *more: str) -> Any:
    from decur.config import load_config

    return load_config(
        None,
        [
            "data.dataset=tiles", f"data.root={root}", "data.modalities=[{name: a, bands: 3, augment: none},"
            " {name: b, bands: 1, augment: none}]", "data.crop_size=24", "data.batch_size=16", "data.num_workers=0",
            "model.projector=[32,32,32]", "trainer.max_epochs=1", "eval.enabled=false", *more,
        ],
    )  # fmt: skip


def test_a_dataset_defined_in_a_test_file_validates_pretrains_and_transfers(tiles, tmp_path):
    from decur.config import ConfigError
    from decur.evaluate.transfer import TransferConfig, run_transfer
    from decur.train.run import pretrain

    with pytest.raises(ConfigError, match=r"`data.modalities`: tiles has a \(3 bands\) and b \(1 band\), got b with 2"):
        _pretrain_config(tiles, "data.modalities=[{name: a, bands: 3}, {name: b, bands: 2}]").validate()
    with pytest.raises(ConfigError, match=r"`data.cities`: only geonrw reads it \(dataset is 'tiles'\)"):
        _pretrain_config(tiles, "data.cities=[a]").validate()

    summary = pretrain(_pretrain_config(tiles).validate(), tmp_path / "run")
    assert summary["global_step"] == 3  # 48 training tiles in batches of 16
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    stats = ckpt["hyper_parameters"]["stats"]  # the band statistics of the files, not of any built-in dataset
    a = np.stack([np.load(p) for p in sorted((tiles / "train").glob("*_a.npy"))]).astype(np.float64)
    assert stats["a"][0] == pytest.approx(a.mean(axis=(0, 2, 3)).tolist(), abs=1e-4)
    assert stats["a"][1] == pytest.approx(a.std(axis=(0, 2, 3), ddof=1).tolist(), rel=1e-3)
    first = ckpt["state_dict"]["model.encoders.b.conv1.weight"]
    assert first.shape[1] == 1  # the encoder of b reads the one band the dataset declares

    run = TransferConfig(task="segmentation", dataset="tiles", root=str(tiles), pretrained=str(tmp_path / "run"),
                         iterations=4, batch_size=8, num_workers=0, seeds=[0])  # fmt: skip
    results = run_transfer(run, tmp_path / "transfer", progress=False)
    assert results["runs"][0]["steps"] == 4 and 0 <= results["miou"]["mean"] <= 1
    per_class = results["runs"][0]["test"]["iou_per_class"]
    assert len(per_class) == CLASSES + 1 and per_class[0] is None  # the spec's classes plus the ignored 0

    with pytest.raises(ConfigError, match="has no multi-labels; use one of"):
        TransferConfig(task="classification", dataset="tiles", root=str(tiles)).validate()

    from decur.cli import main

    out = tmp_path / "tiles.parquet"
    assert main(["embed", str(tmp_path / "run"), "--out", str(out), "dataset=tiles", f"root={tiles}", "split=test",
                 "batch_size=8", "num_workers=0"]) == 0  # fmt: skip
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table["id"].to_pylist() == [f"t{i:03d}" for i in range(16)]  # every test tile, in order, by its name
    assert len(table["feature_b"][0]) == 512  # resnet18 features of the 1-band modality


def test_data_check_walks_the_new_dataset_and_names_a_broken_file(tiles):
    from decur.data.check import check

    assert not check("tiles", tiles, "test").problems
    (tiles / "test" / "t003_b.npy").write_bytes(b"not an array")
    report = check("tiles", tiles, "test")
    assert report.items == 16 and len(report.problems) == 1 and "t003_b.npy" in report.problems[0]
    with pytest.raises(DatasetError, match=r"choose --split among \['train', 'test'\]"):
        check("tiles", tiles, "val")


def test_the_command_line_imports_the_modules_named_in_decur_plugins(tmp_path):
    root = write_tiles(tmp_path / "tiles", train=4, test=4)
    (root / "test" / "t001_a.npy").write_bytes(b"broken")
    env = {**os.environ, "DECUR_PLUGINS": "tests.test_datasets", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "decur", "data", "check", "--dataset", "tiles", "--split", "test",
                           str(root)], capture_output=True, text=True, cwd=REPO, env=env)  # fmt: skip
    assert done.returncode == 1 and "t001_a.npy" in done.stdout, done.stderr
    config = tmp_path / "tiles.yaml"
    config.write_text(f"data:\n  dataset: tiles\n  root: {root}\n  modalities: [{{name: a, bands: 3}}, "
                      "{name: b, bands: 4}]\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "decur", "validate", str(config)], capture_output=True, text=True,
                          cwd=REPO, env=env)  # fmt: skip
    assert done.returncode == 2 and "got b with 4" in done.stdout + done.stderr
    env["DECUR_PLUGINS"] = "no_such_module"
    done = subprocess.run([sys.executable, "-m", "decur", "validate", str(config)], capture_output=True, text=True,
                          cwd=REPO, env=env)  # fmt: skip
    assert done.returncode != 0 and "DECUR_PLUGINS names 'no_such_module'" in done.stderr


def test_names_are_identifiers_and_taken_ones_are_refused():
    with pytest.raises(ValueError, match="registered already"):
        register_dataset("geonrw", TILES)
    with pytest.raises(ValueError, match="letters, digits"):
        register_dataset("my-data", TILES)
    with pytest.raises(KeyError) as caught:
        registry.dataset_spec("no_such_dataset")
    assert str(caught.value).startswith("dataset 'no_such_dataset' is not one of ['synthetic', 'ssl4eo_s12', ")
    assert str(caught.value).endswith("registered by a module named in DECUR_PLUGINS (docs/development.md)")


# ---- the built-in declarations against their sources ------------------------------------------------------------


def test_built_in_class_counts_and_splits_are_the_releases():
    specs = registry.DATASETS
    # SUN RGB-D 37 and NYUv2 40 classes (the RGB-D segmentation benchmarks); BigEarthNet's 19-class nomenclature
    # (Sumbul et al. 2021); GeoNRW's 10 land-cover classes (Baier et al. 2021); the releases' split names
    assert (specs["sunrgbd"].classes, specs["nyuv2"].classes) == (37, 40)
    assert specs["bigearthnet"].classes == specs["bigearthnet_v2"].classes == 19
    assert specs["geonrw"].classes == 10
    # transfer crops: BigEarthNet's S2 patches are 120 x 120 px at 10 m (its release); GeoNRW's 1000 px tiles are
    # cut into 250 px patches, 16 per tile (the DeCUR paper's setting); RGB-D trains on 480 px crops (NYUv2's
    # 640 x 480 frames, SUN-RGBD's smallest side)
    assert (specs["bigearthnet"].crop, specs["geonrw"].crop, specs["sunrgbd"].crop, specs["nyuv2"].crop) == (
        120, 250, 480, 480)  # fmt: skip
    assert specs["bigearthnet"].splits == ("train", "val", "test")
    assert specs["bigearthnet_v2"].splits == ("train", "val", "validation", "test")
    assert {name: dict(s.modalities) for name, s in specs.items() if name.startswith("bigearthnet")} == {
        "bigearthnet": {"s1": 2, "s2": 13},
        "bigearthnet_v2": {"s1": 2, "s2": 13},
    }  # VV, VH; B01-B12 with B8A
    assert registry.SSL4EO_V11_PRODUCTS == {  # the v1.1 release's folders and their bands
        "s1grd": ("S1GRD", 2),
        "s2l1c": ("S2L1C", 13),
        "s2l2a": ("S2L2A", 12),
        "s2rgb": ("S2RGB", 3),
    }


def test_every_factory_a_spec_names_exists():
    for name, spec in registry.DATASETS.items():
        for factory in (spec.pretrain, spec.transfer, spec.check, spec.fetch, spec.pack):
            if factory is not None:
                assert callable(registry.resolve(factory)), (name, factory)


def test_every_command_s_choices_come_from_the_registry():
    from decur.cli import build_parser

    assert registry.datasets("pretrain") == (
        "synthetic", "ssl4eo_s12", "ssl4eo_s12_v11", "paired_folders", "geonrw", "sunrgbd")  # fmt: skip
    assert registry.datasets("transfer") == ("synthetic", "bigearthnet", "geonrw", "sunrgbd", "nyuv2")
    assert registry.datasets("pack") == ("ssl4eo_s12", "bigearthnet", "bigearthnet_v2")
    assert set(registry.datasets("embed")) == set(registry.DATASETS) - {"bigearthnet_v2"}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    data = next(a for a in sub["data"]._actions if a.dest == "data_command").choices
    chosen = {
        command: next(a for a in data[command]._actions if a.dest == "dataset").choices
        for command in ("check", "download", "pack")
    }
    assert {command: tuple(c) for command, c in chosen.items()} == {c: registry.datasets(c) for c in chosen}


def _mods(*pairs: tuple[str, int]) -> str:
    return "data.modalities=[" + ", ".join(f"{{name: {n}, bands: {b}}}" for n, b in pairs) + "]"


V11_ALL = "s1grd, s2l1c, s2l2a and s2rgb"
BUILT_IN_RULES = [  # (dataset, overrides, the whole message): the releases' modalities and band counts
    ("synthetic", [_mods(("optical", 13), ("lidar", 1))],
     "`data.modalities`: unknown modality 'lidar': the synthetic dataset has ['optical', 'sar', 'elevation']"),
    ("synthetic", [_mods(("optical", 13), ("elevation", 2))], "`data.modalities`: synthetic elevation has 1 band"),
    ("synthetic", ["data.unique_factors=-1"], "`data.unique_factors`: must be >= 0, got -1"),
    ("synthetic", ["data.unique_strength=-0.5"], "`data.unique_strength`: must be >= 0, got -0.5"),
    ("ssl4eo_s12", [_mods(("s1", 2), ("s3", 13))], "`data.modalities`: SSL4EO-S12 has s1 and s2, got ['s1', 's3']"),
    ("ssl4eo_s12", [_mods(("s1", 3), ("s2", 13))], "`data.modalities`: s1 has 2 bands, got 3"),
    ("ssl4eo_s12", [_mods(("s1", 2), ("s2", 4))], "`data.modalities`: s2 has 12 or 13 bands, got 4"),
    ("ssl4eo_s12", [_mods(("s1", 2), ("s2", 13)), "data.s2_product=s2a"],
     "`data.modalities`: s2 has 13 bands but data.s2_product=s2a has 12: set bands: 12, or data.s2_product=s2c for "
     "the L1C (13-band) product"),
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2", 13))],
     f"`data.modalities`: SSL4EO-S12 v1.1 (its folders in lower case) has {V11_ALL}, got ['s1grd', 's2']"),
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l2a", 13))], "`data.modalities`: s2l2a has 12 bands, got 13"),
    ("ssl4eo_s12_v11", [_mods(("s2rgb", 4), ("s2l1c", 13))], "`data.modalities`: s2rgb has 3 bands, got 4"),
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l1c", 13)), "data.max_cloud_fraction=1.5"],
     "`data.max_cloud_fraction`: must lie in [0, 1], got 1.5"),
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2rgb", 3)), "data.max_cloud_fraction=0.2"],
     "`data.max_cloud_fraction`: needs a product with a cloud_mask (s2l1c or s2l2a) among the modalities, got "
     "['s1grd', 's2rgb']: add one or set it to null"),
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l1c", 13)), "data.timestamp_draw=month"],
     "`data.timestamp_draw`: must be sample or file, got 'month'"),
    ("geonrw", [_mods(("rgb", 3), ("nir", 1))], "`data.modalities`: GeoNRW has rgb and dem, got ['rgb', 'nir']"),
    ("geonrw", [_mods(("rgb", 3), ("dem", 2))], "`data.modalities`: dem has 1 or 3 bands, got 2"),
    ("geonrw", [_mods(("rgb", 4), ("dem", 1))], "`data.modalities`: rgb has 3 bands, got 4"),
    ("geonrw", [_mods(("rgb", 3), ("dem", 1)), "data.cities=[]"],
     "`data.cities`: a non-empty list of GeoNRW city folders, or null for the train cities"),
    ("sunrgbd", [_mods(("rgb", 3), ("depth", 1))],
     "`data.modalities`: SUN-RGBD pretraining has rgb and hha, got ['rgb', 'depth']"),
    ("sunrgbd", [_mods(("rgb", 3), ("hha", 1))], "`data.modalities`: hha has 3 bands, got 1"),
    ("sunrgbd", [_mods(("rgb", 3), ("hha", 3)), "data.split=val"], "`data.split`: train, test or all, got 'val'"),
    ("geonrw", [_mods(("rgb", 3), ("dem", 1)), "data.void_ids=ids.txt"],
     "`data.void_ids`: only ssl4eo_s12 reads it (dataset is 'geonrw'): remove it or set it to null"),
    ("sunrgbd", [_mods(("rgb", 3), ("hha", 3)), "data.max_cloud_fraction=0.1"],
     "`data.max_cloud_fraction`: only ssl4eo_s12_v11 reads it (dataset is 'sunrgbd'): remove it or set it to null"),
]  # fmt: skip


@pytest.mark.parametrize(("dataset", "overrides", "message"), BUILT_IN_RULES)
def test_each_built_in_dataset_refuses_what_its_release_does_not_hold_in_one_line(dataset, overrides, message):
    from decur.config import ConfigError, load_config

    root = [] if dataset == "synthetic" else ["data.root=/data"]
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"data.dataset={dataset}", *root, *overrides]).validate(check_paths=False)
    assert str(caught.value) == f"config field {message}"


def test_a_new_name_registers_without_replace_and_unregistering_removes_it():
    register_dataset("tiles_once", TILES)
    try:
        assert registry.dataset_spec("tiles_once") is TILES and "tiles_once" in registry.datasets("transfer")
    finally:
        unregister_dataset("tiles_once")
    assert "tiles_once" not in registry.DATASETS
    unregister_dataset("tiles_once")  # a name that is not there: nothing to do


ACCEPTED = [  # the edges each rule must let through
    ("synthetic", ["data.unique_factors=0", "data.unique_strength=0"]),  # the sensors share everything they show
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l1c", 13)), "data.max_cloud_fraction=0"]),
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l1c", 13)), "data.max_cloud_fraction=1"]),  # L1C's mask alone
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l2a", 12)), "data.max_cloud_fraction=0.3"]),  # L2A's alone
    ("ssl4eo_s12_v11", [_mods(("s1grd", 2), ("s2l2a", 12)), "data.timestamp_draw=file"]),
    ("sunrgbd", [_mods(("rgb", 3), ("hha", 3)), "data.split=test"]),
    ("sunrgbd", [_mods(("rgb", 3), ("hha", 3)), "data.split=all"]),
    ("ssl4eo_s12", [_mods(("s1", 2)), "method.name=barlow_twins_single"]),  # no s2: no product to match
    ("ssl4eo_s12", [_mods(("s1", 2), ("s2", 12)), "data.s2_product=s2a"]),
    ("geonrw", [_mods(("rgb", 3), ("dem", 1)), "data.cities=[aachen]"]),
]


@pytest.mark.parametrize(("dataset", "overrides"), ACCEPTED)
def test_each_built_in_rule_accepts_its_edges(dataset, overrides):
    from decur.config import load_config

    load_config(None, [f"data.dataset={dataset}", "data.root=/data", *overrides]).validate(check_paths=False)


def test_a_one_band_modality_is_named_in_the_singular():
    from types import SimpleNamespace

    data = SimpleNamespace(modalities=[SimpleNamespace(name="dem", bands=2)])
    assert registry._modalities(data, {"dem": (1,)}, "X") == [("data.modalities", "dem has 1 band, got 2")]


def test_a_field_two_datasets_read_names_both_when_a_third_is_given_it():
    from dataclasses import replace

    from decur.config import ConfigError, load_config

    register_dataset("tiles_cities", replace(TILES, fields=("cities",)))
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(None, ["data.dataset=sunrgbd", "data.root=/d", _mods(("rgb", 3), ("hha", 3)),
                               "data.cities=[a]"]).validate(check_paths=False)  # fmt: skip
    finally:
        unregister_dataset("tiles_cities")
    assert str(caught.value) == (
        "config field `data.cities`: only geonrw and tiles_cities read it (dataset is 'sunrgbd'): remove it or set it "
        "to null"
    )


def test_decur_plugins_imports_each_named_module_once(monkeypatch):
    import importlib

    imported = []
    real = importlib.import_module
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(importlib, "import_module", lambda name: imported.append(name) or real(name))
    monkeypatch.setenv("DECUR_PLUGINS", " json , ,string")
    registry.datasets("pretrain")
    registry.dataset_spec("geonrw")
    assert imported == ["json", "string"]  # stripped, empty names skipped, and only on the first call


def test_a_plugin_that_cannot_be_imported_is_named_with_the_variable(monkeypatch):
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setenv("DECUR_PLUGINS", "no_such_module_here")
    with pytest.raises(ImportError) as caught:
        registry.datasets("pretrain")
    assert str(caught.value).startswith("DECUR_PLUGINS names 'no_such_module_here', which cannot be imported (")
    assert str(caught.value).endswith("); put its folder on PYTHONPATH or remove it from the variable")


@pytest.mark.parametrize(("name", "imagenet"), [("sunrgbd", True), ("nyuv2", True), ("geonrw", False)])
def test_the_release_rule_standardises_rgbd_rgb_with_imagenet_statistics(name, imagenet):
    """The DeCUR release's RGB-D loaders standardise BGR images with ImageNet's mean and std (torchvision's
    0.485/0.456/0.406, 0.229/0.224/0.225); its GeoNRW loader does not. ``evaluate.start`` passes the spec's flag."""
    from decur.data.transforms import image_transform

    steps = image_transform("ssl4eo_release", "rgb", 3, ([0.0] * 3, [1.0] * 3), registry.dataset_spec(name).imagenet)
    expected = [{"op": "reverse_bands"}]
    if imagenet:
        expected.append({"op": "standardize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    assert steps.steps == expected


@pytest.mark.parametrize(
    ("name", "modality", "bands", "units"),
    [
        ("geonrw", "rgb", 3, "8-bit/255"),  # GeoNRW's orthophotos are 8-bit; its reader divides by 255
        ("geonrw", "dem", 3, "m minus the patch mean"),  # the reader's DEM, relative to the patch mean
        ("sunrgbd", "hha", 3, "8-bit/255"),
        ("ssl4eo_s12", "s1", 2, "dB"),  # Sentinel-1 GRD backscatter
        ("synthetic", "optical", 13, "as decur's synthetic reader returns them"),
        ("paired_folders", "rgb", 3, "as decur's paired_folders reader returns them"),
    ],
)
def test_an_export_card_records_the_units_of_the_dataset_s_reader(name, modality, bands, units):
    from decur.weights.export import run_transform

    assert run_transform(name, modality, bands, ([0.0] * bands, [1.0] * bands)).units == units
