"""SegFormer MiT encoders and CMX: SegFormer's key layout, SegFormer weights in, DeCUR runs out, CMX's modules."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from decur.cli import main
from decur.config import ConfigError, load_config
from decur.data.crops import ScaleCrop
from decur.evaluate.transfer import TransferConfig
from decur.models import CMX, create_encoder, create_mit, encoder_width
from decur.models.cmx import CrossAttention, Rectification
from decur.models.mit import load_segformer_weights, read_segformer_weights
from decur.train.run import pretrain

from .conftest import REPO
from .test_rgbd import needs_real, real_frames_with_hha

# SegFormer's MiT-B0 as its paper and original code define it, written out independently of any library:
# widths, depths, spatial-reduction ratios, patch-embedding kernels, MLP ratio 4, qkv with bias.
B0 = {"widths": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "sr": [8, 4, 2, 1], "kernels": [7, 3, 3, 3]}


def segformer_b0_layout(in_chans: int = 3) -> dict[str, tuple[int, ...]]:
    """Every key and shape of SegFormer's original ``mit_b0`` backbone (no classifier)."""
    keys: dict[str, tuple[int, ...]] = {}
    previous = in_chans
    for i, (c, depth, sr, k) in enumerate(zip(B0["widths"], B0["depths"], B0["sr"], B0["kernels"], strict=True), 1):
        keys[f"patch_embed{i}.proj.weight"] = (c, previous, k, k)
        keys[f"patch_embed{i}.proj.bias"] = (c,)
        keys[f"patch_embed{i}.norm.weight"] = keys[f"patch_embed{i}.norm.bias"] = (c,)
        for j in range(depth):
            b = f"block{i}.{j}"
            for norm in ("norm1", "norm2"):
                keys[f"{b}.{norm}.weight"] = keys[f"{b}.{norm}.bias"] = (c,)
            keys[f"{b}.attn.q.weight"], keys[f"{b}.attn.q.bias"] = (c, c), (c,)
            keys[f"{b}.attn.kv.weight"], keys[f"{b}.attn.kv.bias"] = (2 * c, c), (2 * c,)
            keys[f"{b}.attn.proj.weight"], keys[f"{b}.attn.proj.bias"] = (c, c), (c,)
            if sr > 1:
                keys[f"{b}.attn.sr.weight"], keys[f"{b}.attn.sr.bias"] = (c, c, sr, sr), (c,)
                keys[f"{b}.attn.norm.weight"] = keys[f"{b}.attn.norm.bias"] = (c,)
            keys[f"{b}.mlp.fc1.weight"], keys[f"{b}.mlp.fc1.bias"] = (4 * c, c), (4 * c,)
            keys[f"{b}.mlp.dwconv.dwconv.weight"], keys[f"{b}.mlp.dwconv.dwconv.bias"] = (4 * c, 1, 3, 3), (4 * c,)
            keys[f"{b}.mlp.fc2.weight"], keys[f"{b}.mlp.fc2.bias"] = (c, 4 * c), (c,)
        keys[f"norm{i}.weight"] = keys[f"norm{i}.bias"] = (c,)
        previous = c
    return keys


def test_mit_has_segformer_keys_and_pools_any_input_size():
    encoder = create_mit("mit_b0", 3).eval()
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == segformer_b0_layout()
    assert encoder_width("mit_b0") == 256 and encoder_width("mit_b2") == 512
    with torch.no_grad():
        for h, w in ((32, 32), (64, 96), (100, 75), (224, 224)):
            x = torch.randn(2, 3, h, w)
            stages = encoder.forward_stages(x)
            assert [s.shape[1] for s in stages] == B0["widths"]
            assert stages[0].shape[-2:] == ((h + 3) // 4, (w + 3) // 4)  # 7x7 conv, stride 4, padding 3
            torch.testing.assert_close(encoder(x), stages[-1].mean(dim=(2, 3)))
    assert create_encoder("mit_b0", 13).state_dict()["patch_embed1.proj.weight"].shape == (32, 13, 7, 7)


def test_segformer_weights_load_strictly_and_bad_files_are_named(tmp_path):
    source = create_mit("mit_b0", 3)
    state = {**source.state_dict(), "head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "mit_b0.pth")  # SegFormer's ImageNet checkpoint: top-level keys + classifier
    assert "head.weight" not in read_segformer_weights(tmp_path / "mit_b0.pth")
    target = create_mit("mit_b0", 3)
    load_segformer_weights(target, tmp_path / "mit_b0.pth")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0)
    multispectral = create_mit("mit_b0", 13)  # another band count: the RGB kernel averaged and repeated
    load_segformer_weights(multispectral, tmp_path / "mit_b0.pth")
    w = source.state_dict()["patch_embed1.proj.weight"]
    torch.testing.assert_close(multispectral.patch_embed1.proj.weight[:, 5], w.mean(dim=1))
    torch.save(create_mit("mit_b1", 3).state_dict(), tmp_path / "mit_b1.pth")
    with pytest.raises(ValueError, match=r"mit_b1\.pth: shapes differ from mit_b0"):
        load_segformer_weights(create_mit("mit_b0", 3), tmp_path / "mit_b1.pth")
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_segformer_weights(target, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match=r"model\.init_weights"):
        load_config(None, [f"model.init_weights={tmp_path / 'mit_b0.pth'}"]).validate()  # resnet18: refused


def test_rectification_against_the_papers_formula():
    torch.manual_seed(0)
    frm = Rectification(8).eval()
    a, b = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 5, 6)
    out_a, out_b = frm(a, b)
    pair = torch.cat([a, b], 1)
    pooled = torch.cat([pair.mean((2, 3)), pair.amax((2, 3))], 1)
    w_channel = frm.channel(pooled)
    w_spatial = frm.spatial(pair)
    expect_a = a + 0.5 * w_channel[:, 8:, None, None] * b + 0.5 * w_spatial[:, 1:2] * b
    expect_b = b + 0.5 * w_channel[:, :8, None, None] * a + 0.5 * w_spatial[:, 0:1] * a
    torch.testing.assert_close(out_a, expect_a)
    torch.testing.assert_close(out_b, expect_b)
    same_a, _ = frm(a, torch.zeros_like(b))  # nothing from an all-zero partner: no division, no change
    torch.testing.assert_close(same_a, a)


def test_cross_attention_against_an_explicit_per_head_loop():
    torch.manual_seed(0)
    heads, c, tokens = 2, 8, 7
    att = CrossAttention(c, heads)
    a, b = torch.randn(3, tokens, c, dtype=torch.float64), torch.randn(3, tokens, c, dtype=torch.float64)
    att = att.double()
    out_a, out_b = att(a, b)
    d = c // heads
    for n in range(3):
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            kv_b = att.key_value[1](b[n])
            k, v = kv_b[:, :c][:, s], kv_b[:, c:][:, s]
            context = torch.softmax(k.T @ v / d**0.5, dim=0)  # d x d, normalised over the key channels
            torch.testing.assert_close(out_a[n][:, s], a[n][:, s] @ context)
            kv_a = att.key_value[0](a[n])
            k, v = kv_a[:, :c][:, s], kv_a[:, c:][:, s]
            torch.testing.assert_close(out_b[n][:, s], b[n][:, s] @ torch.softmax(k.T @ v / d**0.5, dim=0))


def test_fusion_module_against_the_papers_formula():
    """FFM, written out: embed each branch's tokens into residual and interactive halves (linear + ReLU), cross
    attention between the interactive halves, project [residual, attended] back with a residual of the input
    tokens and LayerNorm (stage 1); concatenate RGB then X, mixed channel embedding (1x1, DW 3x3, ReLU, 1x1, BN)
    plus a 1x1 skip, then BatchNorm (stage 2)."""
    import torch.nn.functional as F

    from decur.models.cmx import Fusion

    torch.manual_seed(0)
    c, h, w = 8, 3, 5
    ffm = Fusion(c, 2).double().eval()
    for module in ffm.modules():  # non-trivial affine and running statistics, so every term shows
        if isinstance(module, torch.nn.LayerNorm | torch.nn.BatchNorm2d):
            torch.nn.init.normal_(module.weight, 1.0, 0.3)
            torch.nn.init.normal_(module.bias, 0.0, 0.3)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    a, b = torch.randn(2, c, h, w, dtype=torch.float64), torch.randn(2, c, h, w, dtype=torch.float64)

    def bn(x, m):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    tokens = [x.flatten(2).transpose(1, 2) for x in (a, b)]
    embedded = [F.relu(t @ e.weight.T + e.bias) for t, e in zip(tokens, ffm.embed, strict=True)]
    residual, interactive = [e[..., :c] for e in embedded], [e[..., c:] for e in embedded]
    attended = ffm.attention(*interactive)  # its own formula test is above
    stage1 = [
        F.layer_norm(t + torch.cat([r, x], -1) @ p.weight.T + p.bias, (c,), n.weight, n.bias, n.eps)
        for t, r, x, p, n in zip(tokens, residual, attended, ffm.project, ffm.norm, strict=True)
    ]
    pair = torch.cat(stage1, -1).transpose(1, 2).reshape(2, 2 * c, h, w)  # RGB's channels first
    conv1, dw, _, conv2, mix_bn = ffm.mix
    mixed = F.conv2d(F.relu(F.conv2d(F.conv2d(pair, conv1.weight, conv1.bias), dw.weight, dw.bias, padding=1,
                                     groups=c)), conv2.weight, conv2.bias)  # fmt: skip
    expected = bn(F.conv2d(pair, ffm.skip.weight) + bn(mixed, mix_bn), ffm.out_norm)
    torch.testing.assert_close(ffm(a, b), expected)


def test_cmx_trains_with_both_modalities_and_decodes_one_with_a_warning():
    torch.manual_seed(0)
    model = CMX({"rgb": create_mit("mit_b0", 3), "hha": create_mit("mit_b0", 3)}, num_classes=5, decoder_dim=32)
    x = {"rgb": torch.randn(2, 3, 64, 80), "hha": torch.randn(2, 3, 64, 80)}
    scores = model(x)
    assert scores.shape == (2, 5, 64, 80)
    scores.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad()
    with pytest.warns(UserWarning, match="'hha' missing; decoding the 'rgb' branch alone"):
        alone = model({"rgb": x["rgb"]})
    alone.square().mean().backward()
    assert torch.isfinite(alone).all() and alone.shape == scores.shape
    assert model.encoders["hha"].patch_embed1.proj.weight.grad is None  # the missing branch did not run
    assert all(p.grad is None for p in model.fuse.parameters())  # nothing fused with zeros
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model({"rgb": x["rgb"]})  # said once per model
    with pytest.raises(ValueError, match="two MiT encoders"):
        CMX({"rgb": create_encoder("resnet18", 3), "hha": create_encoder("resnet18", 3)}, 5)


def test_cmx_b2_has_the_papers_parameter_count():
    model = CMX({"rgb": create_mit("mit_b2", 3), "hha": create_mit("mit_b2", 3)}, num_classes=40, decoder_dim=512)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 66.6  # CMX paper, Table: MiT-B2 66.6M


def test_scale_crop_pads_images_with_the_mean_and_masks_with_the_ignore_index():
    class One(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"rgb": torch.rand(3, 20, 30), "mask": torch.randint(1, 5, (20, 30))}

    crop = ScaleCrop(One(), ["rgb"], [0.5], (24, 24), {"rgb": [0.1, 0.2, 0.3]}, ignore_index=0, hflip=0.0)
    s = crop[0]
    assert s["rgb"].shape == (3, 24, 24) and s["mask"].shape == (24, 24)
    assert (s["mask"][10:] == 0).all() and (s["mask"][:10, :15] > 0).all()  # 10 x 15 image, rest ignored
    torch.testing.assert_close(s["rgb"][:, 12, 20], torch.tensor([0.1, 0.2, 0.3]))
    full = ScaleCrop(One(), ["rgb"], [1.0], (20, 30), {"rgb": [0.0] * 3}, ignore_index=0, hflip=0.0)
    torch.testing.assert_close(full[0]["rgb"].shape, torch.Size([3, 20, 30]))


def test_cmx_transfer_fields_are_validated_before_anything_is_read():
    def bad(match, **fields):
        with pytest.raises(ConfigError, match=match):
            TransferConfig(task="segmentation", **fields).validate()

    bad("fuses two modalities", model="cmx", arch="mit_b0", modalities=["optical"])
    bad("CMX is built on MiT", model="cmx", arch="resnet18")
    with pytest.raises(ConfigError, match="`model`: 'cmx' is not one of"):
        TransferConfig(task="classification", model="cmx").validate()
    bad("segformer_weights", model="cmx", arch="mit_b0", segformer_weights="nowhere.pth")
    bad("crop_size", crop_size=[1, 2, 3])
    bad("train_scales", train_scales=[0.5, 0.0])


def test_decur_mit_run_exports_segformer_weights_and_transfers_to_cmx(tmp_path):
    """DeCUR with MiT-B0 on the synthetic data -> export (SegFormer keys, strict) -> CMX fine-tuning from the run."""
    overrides = ["model.arch=mit_b0", "model.head_dim=32", "model.projector=[64, 64]", "data.length=16",
                 "data.batch_size=8", "data.crop_size=32", "data.image_size=40", "data.num_workers=0",
                 "trainer.max_epochs=1", "optim.name=adamw", "optim.scale_lr=false", "eval.enabled=false"]  # fmt: skip
    run = tmp_path / "run"
    summary = pretrain(load_config(None, overrides), run)
    assert np.isfinite(summary["final_loss"]["train/total"]) and summary["global_step"] == 2
    out = tmp_path / "sar.safetensors"
    assert main(["export", str(run), "--modality", "sar", "--out", str(out)]) == 0
    from safetensors.torch import load_file

    weights = load_file(str(out))
    assert {k: tuple(v.shape) for k, v in weights.items()} == segformer_b0_layout(in_chans=2)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "mit_b0" and "strict=True" in card["load_with"]
    fresh = create_mit("mit_b0", 2)
    fresh.load_state_dict(weights, strict=True)
    from decur.train.module import PretrainModule

    trained = PretrainModule.from_run(run).model.encoders["sar"].eval()
    x = torch.randn(2, 2, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), trained(x), rtol=0, atol=0)
    seg = tmp_path / "seg"
    args = ["task=segmentation", "dataset=synthetic", "model=cmx", f"pretrained={run}", "decoder_dim=32",
            "train_samples=8", "test_samples=4", "image_size=40", "epochs=1", "batch_size=4", "num_workers=0",
            "train_scales=[0.75, 1.0]", "crop_size=[32, 40]", "warmup_epochs=1"]  # fmt: skip
    assert main(["transfer", "--output", str(seg), *args]) == 0
    results = json.loads((seg / "results.json").read_text())
    assert results["setting"] == "pretrained" and results["runs"][0]["steps"] == 2 and 0 <= results["miou"]["mean"] <= 1


@pytest.mark.slow
@needs_real
def test_mit_pretraining_and_cmx_transfer_on_real_rgbd_frames(tmp_path):
    root = real_frames_with_hha(tmp_path)
    (root / "train.txt").write_text("nyu\nsun\nnyu\nsun\n")
    (root / "test.txt").write_text("nyu\nsun\n")
    overrides = [f"data.root={root}", "data.split=train", "data.crop_size=64", "data.batch_size=2",
                 "data.num_workers=0", "trainer.max_epochs=1", "trainer.devices=1", "trainer.strategy=auto",
                 "trainer.precision=32-true", "model.arch=mit_b0", "model.head_dim=64", "model.projector=[64, 64]",
                 "model.init_weights=null"]  # fmt: skip
    run = tmp_path / "run"
    summary = pretrain(load_config(REPO / "configs" / "sunrgbd_mit_b2_decur.yaml", overrides), run)
    assert np.isfinite(summary["final_loss"]["train/total"]) and summary["global_step"] == 2
    out = tmp_path / "seg"
    args = [f"root={root}", f"pretrained={run}", "epochs=1", "batch_size=2", "crop_size=[96, 128]",
            "decoder_dim=32", "num_workers=0", "warmup_epochs=0", "trainer.precision=32-true"]  # fmt: skip
    config = str(REPO / "configs" / "transfer_sunrgbd_cmx.yaml")
    assert main(["transfer", "--config", config, "--output", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    run0 = results["runs"][0]
    assert run0["steps"] == 2 and run0["test"]["classes_present"] >= 2 and 0 <= results["miou"]["mean"] <= 1
    assert len(run0["test"]["iou_per_class"]) == 38  # 37 classes + the ignored 0, full 480 x 640 test images
