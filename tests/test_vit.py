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
from .data import release_joint_state

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
def vit_run(module_tmp):
    out = module_tmp("vit") / "run"
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


def test_vit_pool_avg_is_the_mean_of_the_normed_patch_tokens_with_the_keys_of_token_pooling():
    token, avg = create_encoder(ARCH, 4).eval(), create_encoder(ARCH, 4, "avg").eval()
    assert token.state_dict().keys() == avg.state_dict().keys()
    avg.load_state_dict(token.state_dict(), strict=True)
    x = torch.randn(2, 4, 48, 32)
    tokens = token.forward_features(x)  # after the final norm, class token first
    torch.testing.assert_close(token(x), tokens[:, 0])
    torch.testing.assert_close(avg(x), tokens[:, 1:].mean(dim=1))
    with pytest.raises(ConfigError, match=r"model\.vit_pool"):
        load_config(REPO / "configs" / "smoke.yaml", ["model.vit_pool=avg"]).validate()  # smoke is a ResNet
    with pytest.raises(ConfigError, match=r"model\.vit_pool"):
        load_config(REPO / "configs" / "smoke.yaml", [f"model.arch={ARCH}", "data.crop_size=32",
                                                        "model.vit_pool=max"]).validate()  # fmt: skip


def test_layer_decay_scales_each_vit_block_and_leaves_the_head_at_the_base_rate():
    from decur.evaluate.module import TransferModule
    from decur.evaluate.transfer.config import TransferOptimConfig
    from decur.models import LateFusionClassifier
    from decur.optim import layer_decay_scales

    vit = create_encoder(ARCH, 3)
    scales = layer_decay_scales(vit, 0.5)
    assert scales["pos_embed"] == scales["cls_token"] == scales["patch_embed.proj.weight"] == 0.5**13
    assert scales["blocks.0.attn.qkv.weight"] == 0.5**12 and scales["blocks.11.mlp.fc2.bias"] == 0.5
    assert scales["norm.weight"] == 1.0 and len(scales) == len(list(vit.parameters()))
    model = LateFusionClassifier({"a": vit, "b": create_encoder(ARCH, 2)}, 192, 5)
    module = TransferModule(model, {}, False, TransferOptimConfig("adamw", 0.01, 0.05, "constant", 0, 0.5), 5)
    lr = {id(p): (g["lr"], g["weight_decay"]) for g in module.param_groups() for p in g["params"]}
    assert len(lr) == len([p for p in model.parameters()])
    assert lr[id(model.encoders["b"].blocks[3].attn.proj.weight)] == (pytest.approx(0.01 * 0.5**9), 0.05)
    assert lr[id(model.encoders["a"].pos_embed)] == (pytest.approx(0.01 * 0.5**13), 0.0)
    head = [p for n, p in model.named_parameters() if not n.startswith("encoders.")]
    assert head and all(lr[id(p)][0] == 0.01 for p in head)


def test_layer_decay_is_refused_for_linear_probes_and_convolutional_encoders():
    from decur.evaluate.transfer import TransferConfig

    with pytest.raises(ConfigError, match="layer_decay"):
        TransferConfig(layer_decay=0.75).validate()  # synthetic classification: linear by default
    with pytest.raises(ConfigError, match="layer_decay"):
        TransferConfig(layer_decay=1.5, protocol="finetune").validate()
    args = ["protocol=finetune", "layer_decay=0.75", "epochs=1", "train_samples=16", "test_samples=8",
            "image_size=32", "num_workers=0", "seeds=[0]"]  # fmt: skip
    assert main(["transfer", "--output", "/nonexistent/never-written", *args]) == 2  # resnet18 from random


def test_vit_gradcam_is_gradcam_on_the_last_blocks_input_tokens():
    from decur.explain import _Slice, cam_layer, token_gradcam

    torch.manual_seed(0)
    vit = create_encoder(ARCH, 3).eval()
    proj = torch.nn.Linear(192, 8)
    net = _Slice(vit, proj, slice(0, 4))
    x = torch.randn(3, 3, 48, 64)
    name, layer = cam_layer(vit, x)
    assert name == "blocks.11.norm1" and layer is vit.blocks[11].norm1
    cam = token_gradcam(net, vit, layer, x, relu=False)
    # independent: swap the layer's output for a leaf tensor and differentiate by autograd on it
    leaf: list[torch.Tensor] = []

    def swap(_m, _i, out):
        leaf.append(out.detach().requires_grad_(True))
        return leaf[0]

    hook = layer.register_forward_hook(swap)
    net(x)[:, 0].sum().backward()
    hook.remove()
    a, g = leaf[0][:, 1:].detach(), leaf[0].grad[:, 1:]
    expected = torch.einsum("ntd,nd->nt", a, g.mean(dim=1)).reshape(3, 1, 3, 4)
    scale = expected.abs().amax()  # a random ViT's gradients are small: compare on the map's own scale
    assert cam.shape == (3, 1, 3, 4) and scale > 0
    torch.testing.assert_close(cam / scale, expected / scale, atol=1e-4, rtol=1e-4)


def test_explain_runs_on_a_vit_run(vit_run, tmp_path):
    out = tmp_path / "explain"
    assert main(["explain", str(vit_run), "--out", str(out), "--samples", "8", "--batch-size", "4",
                 "--alignment-batches", "1", "--ig-steps", "2"]) == 0  # fmt: skip
    numbers = json.loads((out / "explain.json").read_text())
    assert numbers["gradcam_layer"] == {"optical": "blocks.11.norm1", "sar": "blocks.11.norm1"}
    assert (out / "gradcam.png").is_file()


def test_vit_card_records_patch_grid_and_pooling(vit_run, tmp_path):
    from decur.weights import load_backbone

    assert main(["export", str(vit_run), "--out", str(tmp_path / "exp")]) == 0
    card = json.loads((tmp_path / "exp" / "card.json").read_text())
    assert (card["patch_size"], card["pos_embed_size"], card["vit_pool"], card["crop_size"]) == (16, 224, "token", 32)
    card["vit_pool"] = "avg"  # the same weights read as mean-pooled: the card decides the pooled feature
    (tmp_path / "exp" / "card.json").write_text(json.dumps(card))
    avg = load_backbone(tmp_path / "exp", "optical").eval()
    x = torch.randn(2, 13, 64, 64)
    torch.testing.assert_close(avg(x), avg.forward_features(x)[:, 1:].mean(dim=1))


@pytest.mark.slow
def test_a_vit_export_loads_into_torchgeos_vit_constructor(tmp_path):
    tg = pytest.importorskip("torchgeo.models", reason="torchgeo is an optional extra: pip install decur[torchgeo]")
    from safetensors.torch import load_file

    from decur.weights import import_weights, load_backbone

    torch.save(release_joint_state("vit_small_patch16_224"), tmp_path / "vits16.pth")
    import_weights(tmp_path / "vits16.pth", tmp_path / "exp")
    theirs = tg.vit_small_patch16_224(weights=None, in_chans=13, num_classes=0).eval()
    theirs.load_state_dict(load_file(str(tmp_path / "exp" / "s2.safetensors")), strict=True)
    x = torch.randn(2, 13, 224, 224)
    torch.testing.assert_close(theirs(x), load_backbone(tmp_path / "exp", "s2").eval()(x))


def test_vit_export_fine_tunes_a_segmentation_fcn_with_layer_decay(vit_run, tmp_path):
    assert main(["export", str(vit_run), "--out", str(tmp_path / "exp")]) == 0
    out = tmp_path / "seg"
    args = [f"pretrained={tmp_path / 'exp'}", "task=segmentation", "layer_decay=0.75", "epochs=1", "batch_size=8",
            "train_samples=16", "test_samples=8", "image_size=32", "num_workers=0", "seeds=[0]"]  # fmt: skip
    assert main(["transfer", "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "finetune" and 0 <= results["miou"]["mean"] <= 1


def test_vit_gradcam_maps_clip_at_zero_only_with_cam_relu():
    """captum's ``relu_attributions`` for CNNs; the token GradCAM of a ViT must follow the same switch."""
    from types import SimpleNamespace

    from decur.explain import _Slice, cam_layer, gradcam_maps, token_gradcam

    torch.manual_seed(0)
    vit = create_encoder(ARCH, 3).eval()
    module = SimpleNamespace(model=SimpleNamespace(encoders={"rgb": vit}, projectors={"rgb": torch.nn.Linear(192, 8)}))
    x = {"rgb": torch.randn(4, 3, 32, 32)}
    signed = gradcam_maps(module, x, slice(0, 4), relu=False)["rgb"]
    clipped = gradcam_maps(module, x, slice(0, 4), relu=True)["rgb"]
    scale = signed.abs().amax()  # a random ViT's maps are ~1e-9: compare on their own scale
    assert signed.min() < -0.1 * scale and clipped.min() >= 0
    # the token map (checked against autograd above) clipped at 0 on its grid, then upsampled bilinearly
    net = _Slice(vit, module.model.projectors["rgb"], slice(0, 4))
    tokens = token_gradcam(net, vit, cam_layer(vit, x["rgb"])[1], x["rgb"], relu=False).clamp(min=0)
    expected = torch.nn.functional.interpolate(tokens, size=(32, 32), mode="bilinear")[:, 0].detach()
    torch.testing.assert_close(clipped / scale, expected / scale)
