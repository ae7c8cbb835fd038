"""Transfer models: late-fusion classification (BigEarthNet-MM) and the late-fusion FCN (segmentation)."""

from __future__ import annotations

from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decur.models.encoder import VIT, create_encoder

LEVELS = (2, 3, 4)
"""Feature levels of the FCN: strides 8, 16 and 32."""


class LateFusionClassifier(nn.Module):
    """Encoders per modality → pooled features, concatenated → one linear layer.

    Args:
        encoders: Modality → encoder returning pooled features (``decur.models.create_encoder``).
        feature_dim: Pooled feature width of one encoder.
        num_classes: Output labels.

    """

    def __init__(self, encoders: dict[str, nn.Module], feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = nn.Linear(feature_dim * len(encoders), num_classes)

    def features(self, x: dict[str, Tensor]) -> Tensor:
        """Concatenated pooled features ``N x (M · feature_dim)``."""
        return torch.cat([enc(x[m]) for m, enc in self.encoders.items()], dim=1)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        """Logits ``N x num_classes``."""
        return self.head(self.features(x))


class _Channels:
    def __init__(self, widths: list[int]) -> None:
        self.widths = widths

    def channels(self) -> list[int]:
        return self.widths


def vit_blocks(vit: nn.Module) -> list[int]:
    """Four evenly spaced blocks of a ViT (for 12 blocks: 3, 6, 9, 12, counted from 1)."""
    depth = len(cast(Any, vit).blocks)
    return [round(depth * (i + 1) / 4) - 1 for i in range(4)]


PYRAMID_STRIDES = (4, 8, 16, 32)
"""Strides of the four ViT levels of ``pyramid`` (those of a MiT)."""


def pyramid(encoder: nn.Module, x: Tensor) -> list[Tensor]:
    """Every feature level of an encoder, finest first.

    - timm CNN (ResNet ...): the five stages, strides 2, 4, 8, 16, 32;
    - ``decur.models.MiT``: its four stages, strides 4, 8, 16, 32;
    - plain ViT: the tokens of the four ``vit_blocks`` reshaped to ``N x D x H/p x W/p`` and resampled
      bilinearly to strides 4, 8, 16, 32 (parameter-free, so a linear probe stays linear).
    """
    net = cast(Any, encoder)
    if hasattr(net, "forward_stages"):
        return list(net.forward_stages(x))
    if hasattr(net, "blocks") and hasattr(net, "patch_embed"):
        maps = net.forward_intermediates(x, indices=vit_blocks(encoder), intermediates_only=True)
        h, w = x.shape[-2:]
        return [
            F.interpolate(f, size=(max(1, h // s), max(1, w // s)), mode="bilinear")
            for f, s in zip(maps, PYRAMID_STRIDES, strict=True)
        ]
    return list(net.forward_intermediates(x, intermediates_only=True))


class ViTFeatures(nn.Module):
    """A plain ViT as a three-level feature extractor for the FCN: the last three levels of ``pyramid``.

    The tokens of blocks 6, 9, 12 (of 12) at strides 8, 16 and 32, the levels of the paper's FCN; a 16-px patch ViT
    gives its stride-16 map unchanged.
    """

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        width = int(cast(Any, vit).embed_dim)
        self.feature_info = _Channels([width] * len(LEVELS))

    def forward(self, x: Tensor) -> list[Tensor]:
        """Maps at strides 8, 16, 32 of the input."""
        return pyramid(self.vit, x)[1:]


def feature_encoder(arch: str, in_chans: int, state: dict[str, Tensor] | None = None) -> nn.Module:
    """Timm backbone returning the feature maps of ``LEVELS``; ``state`` is a plain encoder state dict."""
    if VIT.match(arch):
        vit = create_encoder(arch, in_chans)
        if state is not None:
            vit.load_state_dict(state, strict=True)
        return ViTFeatures(vit)
    net = timm.create_model(arch, pretrained=False, in_chans=in_chans, features_only=True, out_indices=LEVELS)
    if state is not None:
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or [k for k in unexpected if not k.startswith("fc.")]:
            raise ValueError(f"encoder weights do not fit a {arch} feature extractor (missing {missing[:3]})")
    return net


class FCN(nn.Module):
    """The paper's late-fusion FCN over any number of modalities.

    One backbone per modality; the feature maps of strides 8, 16 and 32 of all modalities are concatenated per
    level, mapped to class scores by a 1x1 convolution per level, bilinearly upsampled to the input and summed.
    With one modality it is the single-modal FCN used for RGB-D.

    Args:
        encoders: Modality → feature extractor (``feature_encoder``).
        num_classes: Output classes (including an ignored class if the dataset has one).

    """

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        channels = [cast(Any, e).feature_info.channels() for e in encoders.values()]
        widths = [sum(int(c[i]) for c in channels) for i in range(len(LEVELS))]
        self.heads = nn.ModuleList(nn.Conv2d(w, num_classes, kernel_size=1) for w in widths)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        """Class scores ``N x num_classes x H x W`` at the input resolution."""
        size = next(iter(x.values())).shape[-2:]
        maps = [enc(x[m]) for m, enc in self.encoders.items()]
        scores = [
            F.interpolate(head(torch.cat([f[level] for f in maps], dim=1)), size=size, mode="bilinear")
            for level, head in enumerate(self.heads)
        ]
        return torch.stack(scores).sum(dim=0)
