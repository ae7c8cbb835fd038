"""The transfer heads against answers computed by hand: late fusion, the FCN's levels and sums, ViT blocks."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decur.models import FCN, LateFusionClassifier, create_encoder, feature_encoder
from decur.models.heads import ViTFeatures, pyramid, vit_blocks


class _Constant(nn.Module):
    """Pooled features ``value`` of width ``width`` for every sample."""

    def __init__(self, value: float, width: int) -> None:
        super().__init__()
        self.value, self.width = value, width

    def forward(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0], self.width), self.value)


def test_late_fusion_concatenates_the_modalities_in_their_given_order_then_one_linear_layer() -> None:
    model = LateFusionClassifier({"sar": _Constant(1.0, 2), "optical": _Constant(2.0, 2)}, 2, 3)
    assert (model.head.in_features, model.head.out_features) == (4, 3)  # 2 modalities x 2 features -> 3 labels
    x = {"optical": torch.zeros(5, 1), "sar": torch.zeros(5, 1)}  # the input's key order does not matter
    torch.testing.assert_close(model.features(x), torch.tensor([[1.0, 1.0, 2.0, 2.0]]).expand(5, 4))
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
        model.head.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
    torch.testing.assert_close(model(x), torch.tensor([[1.5, 2.0, 5.0]]).expand(5, 3))


@pytest.mark.parametrize(("depth", "blocks"), [(12, [2, 5, 8, 11]), (24, [5, 11, 17, 23]), (4, [0, 1, 2, 3])])
def test_vit_blocks_are_the_last_of_each_quarter(depth: int, blocks: list[int]) -> None:
    # ViT-B's (3, 6, 9, 12) and ViT-L's (6, 12, 18, 24), counted from 1, as DPT and ViTDet read them
    vit = nn.Module()
    vit.blocks = nn.ModuleList(nn.Identity() for _ in range(depth))
    assert vit_blocks(vit) == blocks


def test_pyramid_of_a_resnet_is_its_five_stages_at_strides_2_to_32() -> None:
    net = create_encoder("resnet18", 3)
    levels = pyramid(net, torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in levels] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_vit_features_are_the_pyramids_strides_8_16_32_with_the_width_of_the_tokens() -> None:
    vit = create_encoder("vit_tiny_patch16_224", 3).eval()
    x = torch.randn(1, 3, 64, 64)
    features = ViTFeatures(vit)
    assert features.feature_info.channels() == [192, 192, 192]
    maps = features(x)
    assert [tuple(f.shape[1:]) for f in maps] == [(192, 8, 8), (192, 4, 4), (192, 2, 2)]
    for got, want in zip(maps, pyramid(vit, x)[1:], strict=True):
        torch.testing.assert_close(got, want)


def test_a_resnet_feature_encoder_gives_strides_8_16_32_and_takes_a_pooled_encoders_weights() -> None:
    encoder = create_encoder("resnet18", 2)
    net = feature_encoder("resnet18", 2, encoder.state_dict())
    assert net.feature_info.channels() == [128, 256, 512]
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer4.1.bn2.weight"):
        torch.testing.assert_close(net.state_dict()[key], encoder.state_dict()[key])
    maps = net(torch.randn(1, 2, 64, 64))
    assert [tuple(f.shape[1:]) for f in maps] == [(128, 8, 8), (256, 4, 4), (512, 2, 2)]
    # timm's own classifier keys are left out, anything else that does not fit is refused
    with_fc = {**encoder.state_dict(), "fc.weight": torch.zeros(3, 512), "fc.bias": torch.zeros(3)}
    feature_encoder("resnet18", 2, with_fc)
    with pytest.raises(ValueError, match="do not fit a resnet34"):
        feature_encoder("resnet34", 2, encoder.state_dict())
    with pytest.raises(ValueError, match="do not fit"):
        feature_encoder("resnet18", 2, {**encoder.state_dict(), "extra.weight": torch.zeros(1)})


def test_a_vit_feature_encoder_loads_its_weights_strictly() -> None:
    vit = create_encoder("vit_tiny_patch16_224", 3)
    net = feature_encoder("vit_tiny_patch16_224", 3, vit.state_dict())
    assert isinstance(net, ViTFeatures)
    torch.testing.assert_close(net.vit.state_dict()["pos_embed"], vit.state_dict()["pos_embed"])
    with pytest.raises(RuntimeError):
        feature_encoder("vit_tiny_patch16_224", 3, {k: v for k, v in vit.state_dict().items() if k != "cls_token"})


class _Maps(nn.Module):
    """Three constant maps at strides 8, 16, 32 with ``widths`` channels (an FCN backbone)."""

    def __init__(self, widths: list[int], value: float) -> None:
        super().__init__()
        self.widths, self.value = widths, value

        class _Info:
            def channels(inner) -> list[int]:
                return widths

        self.feature_info = _Info()

    def forward(self, x: Tensor) -> list[Tensor]:
        n, _, h, w = x.shape
        return [torch.full((n, c, h // s, w // s), self.value) for c, s in zip(self.widths, (8, 16, 32), strict=True)]


def test_the_fcn_concatenates_modalities_per_level_scores_each_level_and_sums_at_the_input_size() -> None:
    fcn = FCN({"a": _Maps([1, 2, 3], 1.0), "b": _Maps([2, 1, 1], 2.0)}, num_classes=2)
    assert [(h.in_channels, h.out_channels) for h in fcn.heads] == [(3, 2), (3, 2), (4, 2)]
    with torch.no_grad():  # level l's 1x1 conv: class 0 sums its inputs times (l + 1), class 1 is the bias l
        for level, head in enumerate(fcn.heads):
            head.weight.zero_()
            head.weight[0] = level + 1
            head.bias.copy_(torch.tensor([0.0, float(level)]))
    x = {"b": torch.zeros(2, 1, 64, 96), "a": torch.zeros(2, 1, 64, 96)}
    out = fcn(x)
    assert out.shape == (2, 2, 64, 96)
    # level 0: 1*1 + 2*2 = 5 (x1); level 1: 2*1 + 1*2 = 4 (x2); level 2: 3*1 + 1*2 = 5 (x3) -> 5 + 8 + 15
    torch.testing.assert_close(out[:, 0], torch.full((2, 64, 96), 28.0))
    torch.testing.assert_close(out[:, 1], torch.full((2, 64, 96), 0.0 + 1.0 + 2.0))


def test_the_fcn_upsamples_each_levels_scores_bilinearly() -> None:
    net = feature_encoder("resnet18", 1)
    fcn = FCN({"m": net}, num_classes=3).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        maps = net(x)
        want = sum(F.interpolate(head(maps[i]), size=(64, 64), mode="bilinear") for i, head in enumerate(fcn.heads))
        torch.testing.assert_close(fcn({"m": x}), want)


def test_timm_feature_levels_are_the_strides_the_fcn_names() -> None:
    # the source of LEVELS: timm's feature_info reductions for out_indices (2, 3, 4)
    net = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 3, 4))
    assert net.feature_info.reduction() == [8, 16, 32]


def test_a_vit_pyramid_keeps_at_least_one_cell_per_side_of_a_small_crop() -> None:
    vit = create_encoder("vit_tiny_patch16_224", 2).eval()
    levels = pyramid(vit, torch.randn(1, 2, 32, 48))  # stride 32: 1 x 1 (48 // 32 = 1); strides 4-16: exact
    assert [tuple(f.shape[-2:]) for f in levels] == [(8, 12), (4, 6), (2, 3), (1, 1)]
    net = feature_encoder("vit_tiny_patch16_224", 2, vit.state_dict())  # the bands reach the ViT's patch embedding
    assert net.vit.patch_embed.proj.in_channels == 2
