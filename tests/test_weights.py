"""Weights in and out: every published DeCUR layout (generated here, never downloaded), input transforms, import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from decur.cli import main
from decur.data.ssl4eo_s12 import S2C_DN_STATS
from decur.data.transforms import RELEASE_S1, InputTransform, sentinel_transform
from decur.models import create_mit, projector
from decur.weights import WeightsError, infer_arch, load_backbone, read_export, read_pretrained

from .data.bigearthnet.data import make_v1

RNG = np.random.default_rng(0)
DN = RNG.integers(0, 12000, size=(13, 24, 24)).astype(np.float32)
DB = RNG.normal(-15, 5, size=(2, 24, 24)).astype(np.float32)


# Each rule written out again with numpy, from the release's / torchgeo's / decur's descriptions.
def _release_uint8(x, mean, std):
    lo, hi = np.array(mean)[:, None, None] - 2 * np.array(std)[:, None, None], None
    hi = np.array(mean)[:, None, None] + 2 * np.array(std)[:, None, None]
    return np.clip((x - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def _quantile_clip(x, q):
    lo = np.quantile(x.reshape(len(x), -1), q, axis=1)[:, None, None]
    hi = np.quantile(x.reshape(len(x), -1), 1 - q, axis=1)[:, None, None]
    return np.clip(x, lo, hi)


def _zscore(x, mean, std):
    return (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]


def _check(rule, x, expected, atol):
    t = sentinel_transform(rule, "m", len(x))
    again = InputTransform.from_card(json.loads(json.dumps(t.to_card())))  # the card reproduces it exactly
    got, got_again = t(torch.from_numpy(x)), again(torch.from_numpy(x))
    assert torch.equal(got, got_again)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=atol)


def test_release_rule_is_the_uint8_lmdb_of_the_release():
    _check("ssl4eo_release", DN, _release_uint8(DN, *S2C_DN_STATS) / 255, 1e-7)
    _check("ssl4eo_release", DB, _release_uint8(_quantile_clip(DB, 0.01), *RELEASE_S1) / 255, 1e-7)
    t = sentinel_transform("ssl4eo_release", "s2", 13)
    codes = t(torch.from_numpy(DN)).numpy() * 255  # exactly the stored uint8 codes, truncated not rounded
    np.testing.assert_array_equal(np.round(codes), _release_uint8(DN, *S2C_DN_STATS))


def test_torchgeo_rule_is_dn_over_10000_and_a_db_zscore():
    _check("torchgeo", DN, DN / 10000, 1e-6)
    _check("torchgeo", DB, _zscore(DB, *RELEASE_S1), 1e-5)


def test_decur_rule_is_8bit_then_standardized_and_cut_db_then_standardized():
    from decur.data.ssl4eo_s12 import STATS

    s2 = np.clip(np.round(DN / 10000 * 255), 0, 255) / 255
    _check("decur", DN, _zscore(s2, *STATS["s2c"]), 1e-4)
    _check("decur", DB, _zscore(_quantile_clip(DB, 0.02), *STATS["s1"]), 1e-4)


def test_the_rules_differ_by_standard_deviations_on_the_same_pixels():
    """Why the transform must travel: the same DN give inputs up to several units apart."""
    x = torch.from_numpy(DN)
    decur, release = (sentinel_transform(r, "s2", 13)(x) for r in ("decur", "ssl4eo_release"))
    assert (decur - release).abs().max() > 2  # z vs clip(z/4 + 1/2, 0, 1)


def _resnet_pair(c1=2, c2=13, arch="resnet18"):
    return (timm.create_model(arch, in_chans=c, num_classes=0).eval() for c in (c1, c2))


def _release_state(n1, n2, width=512, widths=(64, 64)):
    p1, p2 = projector(width, list(widths)).eval(), projector(width, list(widths)).eval()
    state = {}
    for prefix, module in (("backbone_1", n1), ("backbone_2", n2), ("projector1", p1), ("projector2", p2)):
        state.update({f"module.{prefix}.{k}": v for k, v in module.state_dict().items()})
    state["module.bn.running_mean"] = torch.zeros(widths[-1])  # the release's affine-free BN of the loss
    return state, (p1, p2)


@pytest.mark.parametrize("layout", ["training_checkpoint", "bare_module_dict"])
def test_release_joint_checkpoint_gives_both_encoders_and_projectors(layout, tmp_path):
    n1, n2 = _resnet_pair()
    state, (p1, p2) = _release_state(n1, n2)
    path = tmp_path / "B2B13_decur.pth"
    torch.save(
        {"epoch": 99, "model": state, "optimizer": {"state": {}}} if layout != "bare_module_dict" else state, path
    )
    pre = read_pretrained(path, None, {"s1": 2, "s2": 13})
    assert pre.kind == "release-joint" and pre.arch == "resnet18" and pre.bands == {"s1": 2, "s2": 13}
    assert pre.common_dim == 7168  # the release scripts' --dim_common for S1-S2
    x1, x2 = torch.randn(2, 2, 32, 32), torch.randn(2, 13, 32, 32)
    for name, net, proj, x in (("s1", n1, p1, x1), ("s2", n2, p2, x2)):
        enc = timm.create_model("resnet18", in_chans=net.conv1.in_channels, num_classes=0).eval()
        enc.load_state_dict(pre.encoders[name], strict=True)
        torch.testing.assert_close(enc(x), net(x))
        mine = projector(512, [64, 64]).eval()
        mine.load_state_dict(pre.projectors[name], strict=True)
        torch.testing.assert_close(mine(enc(x)), proj(net(x)))
    with pytest.raises(WeightsError, match="backbone_1 has 2 input bands but modality 's2' has 13"):
        read_pretrained(path, ["s2", "s1"], {"s1": 2, "s2": 13})
    with pytest.raises(WeightsError, match="name its two modalities with pretrained_modalities"):
        read_pretrained(path, None, None)


def test_release_mit_joint_file_moves_its_head_before_the_projector(tmp_path):
    m1, m2 = create_mit("mit_b0", 3).eval(), create_mit("mit_b0", 3).eval()
    head = torch.nn.Linear(256, 32)
    state = {f"module.backbone_{i}.{k}": v for i, m in ((1, m1), (2, m2)) for k, v in m.state_dict().items()}
    state.update({f"module.backbone_{i}.head.{k}": v for i in (1, 2) for k, v in head.state_dict().items()})
    proj = projector(32, [16, 16])
    state.update({f"module.projector{i}.{k}": v for i in (1, 2) for k, v in proj.state_dict().items()})
    torch.save({"model": state}, tmp_path / "mitb0.pth")
    pre = read_pretrained(tmp_path / "mitb0.pth", ["rgb", "hha"], None)
    assert pre.arch == "mit_b0" and pre.head_dim == 32 and pre.common_dim == 6144
    mine = torch.nn.Sequential(torch.nn.Linear(256, 32), *projector(32, [16, 16])).eval()
    mine.load_state_dict(pre.projectors["hha"], strict=True)
    x = torch.randn(2, 256)
    torch.testing.assert_close(mine(x), proj.eval()(head(x)))


@pytest.mark.parametrize(
    ("arch", "bands"), [("resnet18", 2), ("resnet34", 3), ("resnet50", 13), ("vit_tiny_patch16_224", 13)]
)
def test_arch_and_bands_are_read_from_the_keys(arch, bands):
    state = timm.create_model(arch, in_chans=bands, num_classes=10).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "head."))}
    assert infer_arch(state, "x") == (arch, bands)


@pytest.mark.parametrize("arch", ["mit_b0", "mit_b1", "mit_b2"])
def test_mit_size_is_read_from_the_keys(arch):
    state = create_mit(arch, 3).state_dict()
    assert infer_arch(state, "x") == (arch, 3)


def test_backbone_only_and_torchgeo_files_are_named_by_band_count(tmp_path):
    _, n2 = _resnet_pair()
    state = timm.create_model("resnet18", in_chans=13, num_classes=1000).state_dict()
    state.update(n2.state_dict())  # torchgeo's files keep a classifier; the release's backbone-only files do not
    torch.save(state, tmp_path / "torchgeo.pth")
    torch.save({f"module.{k}": v for k, v in n2.state_dict().items()}, tmp_path / "ddp.pth")
    for file in ("torchgeo.pth", "ddp.pth"):
        pre = read_pretrained(tmp_path / file, None, {"s1": 2, "s2": 13})
        assert (
            pre.kind == "plain"
            and pre.modalities == ["s2"]
            and not any(k.startswith("fc.") for k in pre.encoders["s2"])
        )
    with pytest.raises(WeightsError, match=r"no modality of .* has 13; name it with pretrained_modalities"):
        read_pretrained(tmp_path / "torchgeo.pth", None, {"rgb": 3, "hha": 3})


def test_files_decur_cannot_use_give_one_line_without_unpickling(tmp_path):
    import argparse

    torch.save({"args": argparse.Namespace(lr=1), "model": {}}, tmp_path / "pickled.pth")
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04garbage")
    torch.save({"module.backbone_1.conv1.weight": torch.zeros(1), "module.da1_l3.x": torch.zeros(1)},
               tmp_path / "rda.pth")  # fmt: skip
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    cases = (("pickled.pth", "holds Python objects other than tensors"), ("truncated.pth", "cannot be read"),
             ("rda.pth", "RDA checkpoint"), ("other.pth", "are those of no ResNet, MiT or ViT"),
             ("missing.pth", "does not exist"))  # fmt: skip
    for name, message in cases:
        with pytest.raises(WeightsError, match=message) as err:
            read_pretrained(tmp_path / name, None, {"s1": 2, "s2": 13})
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_import_writes_an_export_that_timm_and_decur_load(tmp_path, capsys):
    n1, n2 = _resnet_pair()
    state, _ = _release_state(n1, n2)
    torch.save({"epoch": 99, "model": state, "optimizer": {}}, tmp_path / "joint.pth")
    out = tmp_path / "imported"
    assert main(["import", str(tmp_path / "joint.pth"), "--out", str(out)]) == 0
    assert "s2: resnet18, 13 bands (DN), input transform ssl4eo_release: release_8bit" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["format"] == "decur-export/1" and len(card["source"]["sha256"]) == 64
    assert card["modalities"]["s1"]["bands"] == ["VV", "VH"] and card["modalities"]["s2"]["units"] == "DN"
    x = torch.randn(2, 13, 32, 32)
    for file in ("s2.safetensors", "s2.pth"):
        plain = timm.create_model("resnet18", in_chans=13, num_classes=0).eval()
        weights = (
            load_file(str(out / file)) if file.endswith("safetensors") else torch.load(out / file, weights_only=True)
        )
        plain.load_state_dict(weights, strict=True)
        torch.testing.assert_close(plain(x), n2(x))
    torch.testing.assert_close(load_backbone(out, "s2").eval()(x), n2(x))
    pre = read_export(out)
    assert pre.transforms["s2"].to_card() == sentinel_transform("ssl4eo_release", "s2", 13).to_card()
    # an override replaces even a recorded transform (the export's ssl4eo_release)
    assert main(["import", str(out), "--out", str(tmp_path / "again"), "--input-transform", "torchgeo"]) == 0
    assert read_export(tmp_path / "again").transforms["s2"].steps == [{"op": "scale", "factor": 1e-4}]


def test_raw_reader_plus_decur_transform_equals_decur_s_preprocessed_reader(tmp_path):
    from decur.data import BigEarthNetMM
    from decur.data.bigearthnet import sentinel_stats

    root = make_v1(tmp_path / "ben")
    stats = sentinel_stats(True)
    raw, done = BigEarthNetMM(root, "test", raw=True)[0], BigEarthNetMM(root, "test")[0]
    for m, bands in (("s1", 2), ("s2", 13)):
        t = sentinel_transform("decur", m, bands, stats[m])
        expected = (done[m] - torch.tensor(stats[m][0]).view(-1, 1, 1)) / torch.tensor(stats[m][1]).view(-1, 1, 1)
        torch.testing.assert_close(t(raw[m]), expected)


@pytest.fixture(scope="module")
def ben(module_tmp):
    return make_v1(module_tmp("ben") / "v1")


@pytest.fixture(scope="module")
def release_file(module_tmp):
    n1, n2 = _resnet_pair()
    state, _ = _release_state(n1, n2)
    path = module_tmp("release") / "checkpoint_0099.pth"
    torch.save({"epoch": 99, "model": state, "optimizer": {}}, path)
    return path


@pytest.mark.parametrize("rule", [None, "torchgeo"])
def test_transfer_starts_from_the_release_checkpoint_with_its_transform(ben, release_file, tmp_path, rule, capsys):
    args = [f"root={ben}", "dataset=bigearthnet", f"pretrained={release_file}", "epochs=1", "batch_size=4",
            "num_workers=0", "arch=mit_b2"] + ([f"input_transform={rule}"] if rule else [])  # fmt: skip
    assert main(["transfer", "--output", str(tmp_path / "out"), *args]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["arch"] == results["config"]["arch"] == "resnet18"  # the release file's encoders ran
    expected = rule or "ssl4eo_release"
    assert results["pretrained_kind"] == "release-joint"
    assert {m: t["rule"] for m, t in results["input_transforms"].items()} == {"s1": expected, "s2": expected}
    assert f"input transform of s2: {expected}" in capsys.readouterr().out
    assert 0 <= results["map_micro"]["mean"] <= 1


def test_a_release_transform_on_a_packed_store_is_refused_before_training(ben, release_file, tmp_path):
    from decur.config import ConfigError
    from decur.evaluate.transfer import TransferConfig, run_transfer

    assert main(["data", "pack", str(ben), str(tmp_path / "store"), "--dataset", "bigearthnet", "--workers", "1"]) == 0
    run = TransferConfig(dataset="bigearthnet", root=str(tmp_path / "store"), pretrained=str(release_file), epochs=1,
                      batch_size=4, num_workers=0)  # fmt: skip
    with pytest.raises(ConfigError, match="use the raw release tree, or input_transform: decur"):
        run_transfer(run, tmp_path / "out")
    run.input_transform = "decur"
    assert run_transfer(run, tmp_path / "out2", progress=False)["input_transforms"]["s2"]["steps"][0]["op"] == (
        "standardize")  # fmt: skip


def test_joint_encoder_from_a_stacked_input_with_a_band_map(release_file):
    from decur.weights.joint import MultimodalEncoder

    pre = read_pretrained(release_file, ["s1", "s2"], None)
    encs = {}
    for m, c in pre.bands.items():
        encs[m] = timm.create_model("resnet18", in_chans=c, num_classes=0).eval()
        encs[m].load_state_dict(pre.encoders[m])
    # TerraTorch / GEO-Bench-2 style stack: S2 L2A (12 bands, zero-padded names, no B10) then S1
    stack = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "VV", "VH"]
    joint = MultimodalEncoder.from_export(release_file, "pooled", ["s1", "s2"], stack_bands=stack)
    x = torch.randn(2, 14, 32, 32)
    s2 = torch.cat([x[:, :10], torch.zeros(2, 1, 32, 32), x[:, 10:12]], dim=1)  # B10 inserted as zeros
    expected = torch.cat([encs["s1"](x[:, 12:]), encs["s2"](s2)], dim=1)
    torch.testing.assert_close(joint(x), expected)
    alone = joint({"s1": x[:, 12:]})  # missing modality: left out, nothing filled in
    torch.testing.assert_close(alone, encs["s1"](x[:, 12:]))
    maps = MultimodalEncoder.from_export(release_file, "maps", ["s1", "s2"])({"s1": x[:, 12:], "s2": s2})
    assert [tuple(t.shape) for t in maps] == [(2, 256, 4, 4), (2, 512, 2, 2), (2, 1024, 1, 1)]
    common = MultimodalEncoder.from_export(release_file, "common", ["s1", "s2"])
    z = [common.projectors[m](encs[m](v))[:, : common.common_dim] for m, v in (("s1", x[:, 12:]), ("s2", s2))]
    torch.testing.assert_close(common({"s1": x[:, 12:], "s2": s2}), (z[0] + z[1]) / 2)
    with pytest.raises(ValueError, match="lack"):
        MultimodalEncoder.from_export(release_file, "pooled", ["s1", "s2"], stack_bands=["VV", "B02", "B03"])


@pytest.mark.slow
def test_an_export_is_a_torchgeo_weights_enum_that_torchgeo_loads(release_file, tmp_path):
    tg = pytest.importorskip("torchgeo.models", reason="torchgeo is an optional extra: pip install decur[torchgeo]")
    from torchgeo.trainers import ClassificationTask

    from decur.weights import import_weights
    from decur.weights.torchgeo import torchgeo_weights

    import_weights(release_file, tmp_path / "exp")
    weights = torchgeo_weights(tmp_path / "exp", "s2")
    assert weights.meta["in_chans"] == 13 and weights.meta["bands"][10] == "B10"
    model = tg.resnet18(weights=weights).eval()
    ours = load_backbone(tmp_path / "exp", "s2").eval()
    dn = torch.from_numpy(DN)[None]
    x = weights.transforms(dn)
    torch.testing.assert_close(x, sentinel_transform("ssl4eo_release", "s2", 13)(dn))
    torch.testing.assert_close(model.forward_features(x).mean(dim=(2, 3)), ours(x))
    task = ClassificationTask(model="resnet18", weights=weights, in_channels=13, num_classes=19)
    torch.testing.assert_close(task.model.eval().forward_features(x).mean(dim=(2, 3)), ours(x))


def test_release_vit_s16_joint_file_loads_into_decur_vits(tmp_path):
    """The DeCUR code base's ViT-S/16 layout: timm vit_small_patch16_224, patch_embed.proj of 2 / 13 bands."""
    from decur.models import create_encoder

    nets = [timm.create_model("vit_small_patch16_224", in_chans=c, num_classes=0).eval() for c in (2, 13)]
    state = {f"module.backbone_{i}.{k}": v for i, n in ((1, nets[0]), (2, nets[1])) for k, v in n.state_dict().items()}
    torch.save({"epoch": 99, "model": state, "optimizer": {}}, tmp_path / "vits16.pth")
    pre = read_pretrained(tmp_path / "vits16.pth", None, {"s1": 2, "s2": 13})
    assert pre.arch == "vit_small_patch16_224" and pre.bands == {"s1": 2, "s2": 13}
    mine = create_encoder(pre.arch, 13).eval()
    mine.load_state_dict(pre.encoders["s2"], strict=True)
    x = torch.randn(1, 13, 64, 64)  # another size than 224: the position grid is resampled
    torch.testing.assert_close(mine(x), nets[1].set_input_size((64, 64)) or nets[1](x))


def test_the_transfer_start_transforms_raw_pixels_by_the_weights_rule(ben, release_file):
    import rasterio

    from decur.data import BigEarthNetMM
    from decur.evaluate.start import Transformed, starting_point
    from decur.evaluate.transfer import TransferConfig, load_data

    run = TransferConfig(dataset="bigearthnet", root=str(ben), pretrained=str(release_file)).validate()
    data = load_data(run)
    start = starting_point(run, data)
    sample = Transformed(data.test, start.transforms)[1]
    ds = BigEarthNetMM(ben, "test")
    name = ds.s1_of[ds.patches[1]]  # the stored S1 dB, read here without decur's reader
    stored = []
    for band in ("VV", "VH"):
        with rasterio.open(ds.s1_root / name / f"{name}_{band}.tif") as src:
            stored.append(torch.from_numpy(src.read(1).astype("float32")))
    expected = sentinel_transform("ssl4eo_release", "s1", 2)(torch.stack(stored))
    torch.testing.assert_close(sample["s1"], expected)
    raw = BigEarthNetMM(ben, "test", raw=True)[1]
    torch.testing.assert_close(sample["s2"], sentinel_transform("ssl4eo_release", "s2", 13)(raw["s2"]))


def test_a_rewritten_weights_file_is_read_again(tmp_path):
    import os

    path = tmp_path / "s2.pth"
    first, second = (timm.create_model("resnet18", in_chans=13, num_classes=0).state_dict() for _ in range(2))
    torch.save(first, path)
    assert torch.equal(read_pretrained(path, ["s2"]).encoders["s2"]["conv1.weight"], first["conv1.weight"])
    (tmp_path / "new").mkdir()  # replaced as tools do: a new file (same name, so same size) renamed over it
    torch.save(second, tmp_path / "new" / "s2.pth")
    os.replace(tmp_path / "new" / "s2.pth", path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert torch.equal(read_pretrained(path, ["s2"]).encoders["s2"]["conv1.weight"], second["conv1.weight"])


def test_a_12_band_l2a_encoder_transfers_to_bigearthnet_without_the_inserted_b10(ben, tmp_path, capsys):
    """The s2 encoder's band count (12, L2A) chooses BigEarthNet's reading: the stored bands, no empty B10."""
    from safetensors.torch import save_file

    from decur.config import ConfigError
    from decur.evaluate.transfer import TransferConfig, load_data

    encoder = timm.create_model("resnet18", in_chans=12, num_classes=0)
    path = tmp_path / "s2_l2a.safetensors"
    save_file(encoder.state_dict(), path)
    run = TransferConfig(dataset="bigearthnet", root=str(ben), pretrained=str(path), pretrained_modalities=["s2"],
                      modalities=["s2"], epochs=1, batch_size=4, num_workers=0)  # fmt: skip
    run.validate()
    assert run.s2_bands == 12 and run.dataset_bands()["s2"] == 12
    data = load_data(run)
    assert data.train[0]["s2"].shape[0] == 12  # B1..B9, B8A, B11, B12 as stored
    with pytest.raises(ConfigError, match=r"`s2_bands`: 12 or 13, got 11"):
        TransferConfig(dataset="bigearthnet", root=str(ben), s2_bands=11).validate(check_paths=False)
    with pytest.raises(ConfigError, match=r"`s2_bands`: only bigearthnet reads it \(dataset is 'geonrw'\)"):
        TransferConfig(task="segmentation", dataset="geonrw", root=str(ben), s2_bands=12).validate(check_paths=False)
    thirteen = TransferConfig(dataset="bigearthnet", root=str(ben), modalities=["s2"])
    assert load_data(thirteen.validate()).train[0]["s2"].shape[0] == 13  # the paper's: B10 inserted as zeros
