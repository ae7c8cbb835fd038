"""Encoders, projectors and the multimodal model."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from decur.models import MultimodalModel, create_encoder, encoder_width, projector


@pytest.mark.parametrize(("arch", "width"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_encoder_width(arch, width):
    assert encoder_width(arch) == width


@pytest.mark.parametrize("bands", [1, 2, 13])
def test_encoder_state_dict_loads_into_plain_timm_strictly(bands):
    enc = create_encoder("resnet18", bands)
    plain = timm.create_model("resnet18", pretrained=False, in_chans=bands, num_classes=0)
    plain.load_state_dict(enc.state_dict(), strict=True)
    x = torch.randn(2, bands, 32, 32)
    enc.eval(), plain.eval()
    torch.testing.assert_close(enc(x), plain(x))


def test_unknown_arch():
    with pytest.raises(ValueError, match="not supported"):
        create_encoder("resnet1000", 3)
    with pytest.raises(ValueError, match=r"families resnet.*mit_b0"):  # a timm model decur cannot run yet
        create_encoder("vit_base_r50_s16_224", 3)


def test_projector_layout():
    p = projector(16, [32, 32, 8])
    kinds = [type(m) for m in p]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in p if isinstance(m, nn.Linear)] == [(16, 32), (32, 32), (32, 8)]
    assert all(m.bias is None for m in p if isinstance(m, nn.Linear))  # Barlow Twins: no biases (BN follows)
    x = torch.randn(4, 16)
    identity = projector(16, [])
    assert len(identity) == 0 and torch.equal(identity(x), x)  # no projector: the features are the embedding


def test_model_per_modality_and_shared_projector():
    model = MultimodalModel({"optical": 13, "sar": 2}, "resnet18", [32, 16])
    out = model({"optical": torch.randn(3, 13, 32, 32), "sar": torch.randn(3, 2, 32, 32)})
    assert out["optical"].shape == (3, 16) and out["sar"].shape == (3, 16)
    assert model.projectors["optical"] is not model.projectors["sar"]
    assert model.encoders["optical"].conv1.in_channels == 13 and model.encoders["sar"].conv1.in_channels == 2
    shared = MultimodalModel({"optical": 13, "sar": 2}, "resnet18", [32, 16], share_projector=True)
    assert shared.projectors["optical"] is shared.projectors["sar"]
    # one module: its parameters are counted once, and a step on one modality's path changes the other's projector
    n_shared = sum(p.numel() for p in shared.parameters())
    n_own = sum(p.numel() for p in model.parameters())
    assert n_own - n_shared == sum(p.numel() for p in model.projectors["sar"].parameters())
