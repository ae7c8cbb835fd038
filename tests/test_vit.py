"""ViT encoders: any crop the patch divides, DeCUR pretraining, transfer (late fusion, FCN), export to timm."""

from __future__ import annotations

import csv
import json

import pytest
import timm
import torch

from decur.cli import main
from decur.config import ConfigError, load_config
from decur.models import FCN, create_encoder, feature_encoder
from decur.optim import parameter_groups
from decur.train.run import pretrain

from .conftest import REPO

ARCH = "vit_tiny_patch16_224"


@pytest.mark.parametrize(("size", "bands"), [(32, 2), (48, 13), (224, 3)])
def test_a_vit_runs_at_any_crop_its_patch_divides(size, bands):
    encoder = create_encoder(ARCH, bands).eval()
    assert encoder(torch.randn(2, bands, size, size)).shape == (2, 192)


def test_a_crop_the_patch_does_not_divide_is_refused_and_odd_vits_are_named():
    with pytest.raises(ConfigError, match="give a multiple of 16, got 24"):
        load_config(REPO / "configs" / "smoke.yaml", [f"model.arch={ARCH}"]).validate()
    with pytest.raises(ConfigError, match="plain ViT"):
        load_config(
            REPO / "configs" / "smoke.yaml", ["model.arch=vit_base_r50_s16_224", "data.crop_size=32"]
        ).validate()


def test_position_embedding_and_class_token_get_no_weight_decay():
    from decur.config import OptimConfig

    vit = create_encoder(ARCH, 2)
    groups = parameter_groups([vit], OptimConfig(name="adamw"), 256)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(vit.pos_embed) in no_decay and id(vit.cls_token) in no_decay
    assert id(vit.blocks[0].attn.qkv.weight) not in no_decay and id(vit.blocks[0].attn.qkv.bias) in no_decay


@pytest.mark.parametrize("modalities", [["rgb"], ["rgb", "dem"]])
def test_fcn_on_vit_maps_forward_and_backward(modalities):
    fcn = FCN({m: feature_encoder(ARCH, 3) for m in modalities}, 5)
    out = fcn({m: torch.randn(2, 3, 64, 48) for m in modalities})
    assert out.shape == (2, 5, 64, 48)
    out.sum().backward()
    assert all(p.grad is not None for p in fcn.encoders[modalities[0]].vit.blocks[-1].parameters())


def test_vit_pyramid_levels_are_four_blocks_at_strides_4_to_32():
    from decur.models.heads import pyramid, vit_blocks

    vit = create_encoder(ARCH, 3).eval()
    x = torch.randn(1, 3, 64, 96)
    levels = pyramid(vit, x)
    assert vit_blocks(vit) == [2, 5, 8, 11]
    assert [tuple(t.shape[-2:]) for t in levels] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    tokens = vit.forward_intermediates(x, indices=[8], intermediates_only=True)[0]  # block 9: stride 16, unchanged
    torch.testing.assert_close(levels[2], tokens)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vit") / "run"
    overrides = [f"model.arch={ARCH}", "data.crop_size=32", "optim.name=adamw", "optim.adamw_lr=0.002",
                 "optim.scale_lr=false", "trainer.max_epochs=4", "eval.enabled=false"]  # fmt: skip
    cfg = load_config(REPO / "configs" / "smoke.yaml", overrides)
    pretrain(cfg, out)
    return out


def test_decur_pretraining_of_a_vit_lowers_the_loss(vit_run):
    with (vit_run / "metrics.csv").open() as f:
        losses = [float(r["train/total"]) for r in csv.DictReader(f) if r.get("train/total")]
    assert len(losses) >= 8 and sum(losses[-4:]) / 4 < sum(losses[:4]) / 4


def test_vit_export_loads_strictly_into_plain_timm_and_transfers(vit_run, tmp_path):
    from safetensors.torch import load_file

    from decur.weights import load_backbone

    assert main(["export", str(vit_run), "--out", str(tmp_path / "exp")]) == 0
    plain = timm.create_model(ARCH, in_chans=13, num_classes=0).eval()
    plain.load_state_dict(load_file(str(tmp_path / "exp" / "optical.safetensors")), strict=True)
    x = torch.randn(2, 13, 224, 224)
    torch.testing.assert_close(plain(x), load_backbone(tmp_path / "exp", "optical").eval()(x))
    out = tmp_path / "probe"
    args = [f"pretrained={tmp_path / 'exp'}", "epochs=1", "batch_size=16", "train_samples=32", "test_samples=16",
            "image_size=32", "num_workers=0", "seeds=[0]"]  # fmt: skip
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["pretrained_kind"] == "decur-export" and 0 <= results["map_micro"]["mean"] <= 1
