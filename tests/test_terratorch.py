"""decur's backbones for TerraTorch: band names, stacked and dict inputs, levels; TerraTorch itself in slow tests."""

from __future__ import annotations

import enum
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml

from decur.models import projector
from decur.models.heads import pyramid
from decur.weights import WeightsError, import_weights, load_backbone
from decur.weights.terratorch import build, resolve_bands

from .data import release_joint_state

REPO = Path(__file__).resolve().parents[1]
S2_L2A = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
STACK = ["VV", "VH", *S2_L2A]  # the shipped TerraTorch config's 14-band stack


@pytest.fixture(scope="module")
def export(module_tmp):
    """The release's joint checkpoint layout (resnet18 to stay fast), imported as a decur export."""
    root = module_tmp("tt")
    state = {}
    for prefix, c in (("backbone_1", 2), ("backbone_2", 13)):
        net = timm.create_model("resnet18", in_chans=c, num_classes=0)
        state.update({f"module.{prefix}.{k}": v for k, v in net.state_dict().items()})
    for prefix in ("projector1", "projector2"):
        state.update({f"module.{prefix}.{k}": v for k, v in projector(512, [64, 64]).state_dict().items()})
    torch.save({"epoch": 99, "model": state, "optimizer": {}}, root / "joint.pth")
    import_weights(root / "joint.pth", root / "export")
    return root / "export"


def _reference(export, x_s1, x_s2):
    """decur's own encoders and the card's transforms, level by level (written without the plug-in)."""
    from decur.weights import read_export

    pre = read_export(export)
    out = []
    for m, x in (("s1", x_s1), ("s2", x_s2)):
        enc = load_backbone(export, m).eval()
        out.append(pyramid(enc, pre.transforms[m](x)))
    return [torch.cat(level, dim=1) for level in zip(*out, strict=True)]


def _raw(n=2, side=32):
    g = torch.Generator().manual_seed(0)
    s1 = torch.randn(n, 2, side, side, generator=g) * 5 - 15  # dB
    s2 = torch.rand(n, 12, side, side, generator=g) * 5000  # L2A DN, no B10
    return s1, s2


def _with_b10(s2):
    return torch.cat([s2[:, :10], torch.zeros_like(s2[:, :1]), s2[:, 10:]], dim=1)


def test_stacked_input_gives_decur_s_features_per_level(export):
    backbone = build(export, model_bands=STACK).eval()
    s1, s2 = _raw()
    got = backbone(torch.cat([s1, s2], dim=1))
    expected = _reference(export, s1, _with_b10(s2))
    assert backbone.out_channels == [128, 128, 256, 512, 1024] == [int(t.shape[1]) for t in got]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_dict_input_with_terratorch_keys_any_band_order_and_a_missing_modality(export):
    order = list(reversed(S2_L2A))
    backbone = build(export, model_bands={"s2": order}, out_indices=[-1]).eval()
    s1, s2 = _raw()
    both = backbone({"S1GRD": s1, "S2L2A": s2.flip(1)})
    torch.testing.assert_close(both[0], _reference(export, s1, _with_b10(s2))[-1])
    alone = backbone({"S1GRD": s1})  # decur's missing-modality rule: left out, nothing filled in
    assert alone[0].shape[1] == 512
    with pytest.raises(WeightsError, match="modality_keys"):
        backbone({"optical": s2})


def test_band_spellings_terratorch_names_and_enums_are_matched_unknown_names_refused(export):
    known = {"s1": ["VV", "VH"], "s2": [f"B{i}" for i in range(1, 9)] + ["B8A", "B9", "B10", "B11", "B12"]}

    class Bands(enum.Enum):
        RED = "RED"
        NIR_NARROW = "NIR_NARROW"

    assert resolve_bands(["B04", "b8a", "RED_EDGE_1", Bands.RED, Bands.NIR_NARROW, "vh"], known) == [
        "B4", "B8A", "B5", "B4", "B8A", "VH"]  # fmt: skip
    with pytest.raises(WeightsError, match=r"'B13'.*do not know"):
        resolve_bands(["B02", "B13"], known)
    with pytest.raises(WeightsError, match="not a name"):
        resolve_bands([3], known)
    with pytest.raises(WeightsError, match="lacks"):
        build(export, model_bands={"s2": ["B02", "B03"]})
    with pytest.raises(WeightsError, match="unknown argument"):
        from decur.weights.terratorch import joint

        joint(ckpt_data=export, img_size=224)


def test_encoder_alone_random_start_and_no_transform(export):
    from decur.weights.terratorch import encoder

    _, s2 = _raw()
    single = encoder(modality="s2", ckpt_data=export, model_bands=S2_L2A, input_transform="none").eval()
    assert single.out_channels == [64, 64, 128, 256, 512]
    prepared = _with_b10(s2) / 10000
    torch.testing.assert_close(single(s2 / 10000)[-1], pyramid(load_backbone(export, "s2").eval(), prepared)[-1])
    fresh = encoder(modality="s2", ckpt_data=export, model_bands=S2_L2A, pretrained=False)
    trained = load_backbone(export, "s2").state_dict()
    assert not torch.equal(fresh.joint.encoders["s2"].state_dict()["conv1.weight"], trained["conv1.weight"])
    with pytest.raises(WeightsError, match="backbone_modality"):
        encoder(ckpt_data=export)


def _geotiff(path, array):
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype="float32") as f:  # fmt: skip
        f.write(array.astype(np.float32))


@pytest.mark.slow
def test_terratorch_builds_and_fine_tunes_the_joint_backbone_from_the_shipped_config(export, tmp_path):
    pytest.importorskip("terratorch", reason="TerraTorch is an optional extra: pip install decur[terratorch]")
    from terratorch.registry import BACKBONE_REGISTRY
    from terratorch.tasks import ClassificationTask

    from decur.weights.terratorch import register

    register()
    register()  # idempotent
    task = ClassificationTask(model_args={"backbone": "decur_joint", "backbone_ckpt_data": str(export),
                                          "backbone_model_bands": STACK, "backbone_out_indices": [-1],
                                          "decoder": "IdentityDecoder", "num_classes": 3},
                              model_factory="EncoderDecoderFactory")  # fmt: skip
    encoder = task.model.encoder
    for m in ("s1", "s2"):  # encoder weights identical to the export's
        ours = load_backbone(export, m).state_dict()
        theirs = encoder.joint.encoders[m].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    s1, s2 = _raw()
    with torch.no_grad():
        feats = task.model.eval().encoder(torch.cat([s1, s2], dim=1))
    torch.testing.assert_close(feats[-1], _reference(export, s1, _with_b10(s2))[-1])
    assert "decur_joint" in BACKBONE_REGISTRY and "decur_encoder" in BACKBONE_REGISTRY
    with pytest.raises(WeightsError, match="do not know"):
        BACKBONE_REGISTRY.build("decur_joint", ckpt_data=str(export), model_bands=["B01", "B13"])

    # the shipped config, end to end through TerraTorch's CLI on a generated 3-class folder dataset
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c in range(3):
            for i in range(4):
                x = np.concatenate([rng.normal(-15 + 3 * c, 4, (2, 32, 32)), rng.uniform(0, 4000, (12, 32, 32))])
                _geotiff(tmp_path / "data" / split / f"class{c}" / f"s{i}.tif", x)
    data = tmp_path / "data"
    shutil.copytree(REPO / "configs" / "terratorch", tmp_path / "configs" / "terratorch")
    config = tmp_path / "configs" / "terratorch" / "decur_joint_classification.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["data"]["init_args"]["num_classes"] = cfg["model"]["init_args"]["model_args"]["num_classes"] = 3
    config.write_text(yaml.safe_dump(cfg))  # the class count edited in the file, as its header says
    cli = Path(sys.executable).with_name("terratorch")
    args = [str(cli), "fit", "--config", str(config.relative_to(tmp_path)),
            f"--data.init_args.train_data_root={data}/train", f"--data.init_args.val_data_root={data}/val",
            f"--data.init_args.test_data_root={data}/test", "--data.init_args.batch_size=4",
            "--data.init_args.num_workers=0", f"--model.init_args.model_args.backbone_ckpt_data={export}",
            "--trainer.max_epochs=1", "--trainer.precision=32", "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path / 'runs'}"]  # fmt: skip
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("*.ckpt")), "TerraTorch wrote no checkpoint"


@pytest.mark.slow
def test_terratorch_segments_with_the_joint_backbone_and_upernet_from_the_shipped_config(export, tmp_path):
    pytest.importorskip("terratorch", reason="TerraTorch is an optional extra: pip install decur[terratorch]")
    from terratorch.tasks import SemanticSegmentationTask

    from decur.weights.terratorch import register

    register()
    config = REPO / "configs" / "terratorch" / "decur_joint_segmentation.yaml"
    model_args = yaml.safe_load(config.read_text())["model"]["init_args"]["model_args"]
    task = SemanticSegmentationTask(model_args={**model_args, "backbone_ckpt_data": str(export), "num_classes": 3},
                                    model_factory="EncoderDecoderFactory")  # fmt: skip
    s1, s2 = _raw(side=64)
    with torch.no_grad():
        out = task.model.eval()(torch.cat([s1, s2], dim=1)).output
    assert out.shape == (2, 3, 64, 64)
    levels = task.model.encoder(torch.cat([s1, s2], dim=1))
    reference = _reference(export, s1, _with_b10(s2))
    assert len(levels) == 4  # out_indices 1-4: strides 4-32 of both ResNets, concatenated per level
    for got, want in zip(levels, reference[1:], strict=True):
        torch.testing.assert_close(got, want)

    # the shipped config end to end through TerraTorch's CLI on generated image / mask pairs
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split in ("train", "val", "test"):
        for i in range(4):
            mask = rng.integers(0, 3, (1, 64, 64))
            x = np.concatenate([rng.normal(-15, 4, (2, 64, 64)) + 3 * mask, rng.uniform(0, 4000, (12, 64, 64))])
            _geotiff(data / split / "img" / f"p{i}_img.tif", x)
            _geotiff(data / split / "mask" / f"p{i}_mask.tif", mask)
    shutil.copytree(REPO / "configs" / "terratorch", tmp_path / "configs" / "terratorch")
    local = tmp_path / "configs" / "terratorch" / "decur_joint_segmentation.yaml"
    cfg = yaml.safe_load(local.read_text())
    cfg["data"]["init_args"]["num_classes"] = cfg["model"]["init_args"]["model_args"]["num_classes"] = 3
    local.write_text(yaml.safe_dump(cfg))  # the class count edited in the file, as its header says
    roots = [f"--data.init_args.{s}_{kind}root={data}/{s}/{sub}" for s in ("train", "val", "test")
             for kind, sub in (("data_", "img"), ("label_data_", "mask"))]  # fmt: skip
    args = [str(Path(sys.executable).with_name("terratorch")), "fit", "--config", str(local.relative_to(tmp_path)),
            *roots, "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
            f"--model.init_args.model_args.backbone_ckpt_data={export}", "--trainer.max_epochs=1",
            "--trainer.precision=32", "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path / 'runs'}"]  # fmt: skip
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("*.ckpt")), "TerraTorch wrote no checkpoint"


@pytest.mark.slow
def test_a_joint_vit_export_segments_through_terratorchs_upernet(tmp_path):
    """The DeCUR code base's ViT layout (ViT-Ti here) as decur_joint: four levels at strides 4-32 into UPerNet."""
    pytest.importorskip("terratorch", reason="TerraTorch is an optional extra: pip install decur[terratorch]")
    from terratorch.tasks import SemanticSegmentationTask

    from decur.weights.terratorch import register

    torch.save(release_joint_state("vit_tiny_patch16_224"), tmp_path / "vit.pth")
    import_weights(tmp_path / "vit.pth", tmp_path / "export")
    register()
    args = {"backbone": "decur_joint", "backbone_ckpt_data": str(tmp_path / "export"), "backbone_model_bands": STACK,
            "backbone_out_indices": [0, 1, 2, 3], "decoder": "UperNetDecoder", "num_classes": 3}  # fmt: skip
    task = SemanticSegmentationTask(model_args=args, model_factory="EncoderDecoderFactory", loss="ce", ignore_index=-1)
    s1, s2 = _raw(side=64)
    x = torch.cat([s1, s2], dim=1)
    with torch.no_grad():
        assert task.model.eval()(x).output.shape == (2, 3, 64, 64)
        levels = task.model.encoder(x)
    assert task.model.encoder.out_channels == [384] * 4  # 192 per ViT-Ti, two modalities
    for got, want in zip(levels, _reference(tmp_path / "export", s1, _with_b10(s2)), strict=True):
        torch.testing.assert_close(got, want)


def test_a_stack_without_a_modalitys_bands_is_refused_and_out_channels_are_what_comes_out(export):
    """A modality absent from model_bands used to be dropped silently while out_channels still counted it."""
    from decur.weights.terratorch import build

    with pytest.raises(WeightsError, match=r"hold no band of \['s1'\].*backbone_modalities: \['s2'\]"):
        build(export, model_bands=S2_L2A)
    backbone = build(export, modalities=["s2"], model_bands=S2_L2A)
    _, s2 = _raw()
    maps = backbone(s2)
    assert [int(m.shape[1]) for m in maps] == backbone.out_channels == [64, 64, 128, 256, 512]
    both = build(export, model_bands=STACK)
    s1, s2 = _raw()
    assert [int(m.shape[1]) for m in both(torch.cat([s1, s2], dim=1))] == both.out_channels
