"""Modality-specific encoders: timm backbones with the first convolution matched to the band count."""

from __future__ import annotations

from functools import cache
from typing import cast

import timm
import torch
from torch import nn


def create_encoder(arch: str, in_chans: int) -> nn.Module:
    """A timm backbone returning pooled features (``num_classes=0``), randomly initialised.

    Its ``state_dict()`` is a plain timm state dict: ``timm.create_model(arch, in_chans=in_chans, num_classes=0)``
    loads it with strict key matching (torchvision ResNets share the keys).

    Raises:
        ValueError: If timm does not know ``arch``.

    """
    if arch not in timm.list_models():
        raise ValueError(f"unknown encoder architecture {arch!r}; any timm model name works, e.g. resnet50")
    return timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=0)


@cache
def encoder_width(arch: str) -> int:
    """Width of the pooled features of ``arch`` (512 for resnet18/34, 2048 for resnet50)."""
    with torch.device("meta"):
        return int(cast(int, create_encoder(arch, 3).num_features))
