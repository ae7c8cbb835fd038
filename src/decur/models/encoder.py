"""Modality-specific encoders: timm backbones or SegFormer's MiT, the first layer matched to the band count."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

# the names and their checks are declared in decur.catalog (importable without torch)
from decur.catalog import FAMILIES, VIT, VIT_POOLS, check_arch, check_vit_pool, encoder_width, vit_patch

__all__ = [
    "FAMILIES",
    "VIT",
    "VIT_POOLS",
    "check_arch",
    "check_vit_pool",
    "create_encoder",
    "encoder_width",
    "vit_patch",
]


def create_encoder(arch: str, in_chans: int, vit_pool: str = "token") -> nn.Module:
    """A backbone returning pooled features ``N x num_features``, randomly initialised.

    A timm model (``num_classes=0``): its ``state_dict()`` is a plain timm state dict that
    ``timm.create_model(arch, in_chans=in_chans, num_classes=0)`` loads with strict key matching (torchvision
    ResNets share the keys). ``mit_b0`` ... ``mit_b5``: SegFormer's Mix Transformer (``decur.models.mit``), whose
    state dict has SegFormer's original keys; its pooled feature is the mean of the last stage. ``vit_pool``
    (``VIT_POOLS``) chooses a plain ViT's pooled feature; other architectures take ``token`` (no effect).

    Raises:
        ValueError: If neither timm nor ``decur.models.mit.MIT_ARCHS`` knows ``arch``, or an unknown pooling.

    """
    from decur.models.mit import create_mit, is_mit  # (mit builds on this module)

    if is_mit(arch):
        return create_mit(arch, in_chans)
    check_arch(arch)
    check_vit_pool(arch, vit_pool)
    extra: dict[str, Any] = {}
    if VIT.match(arch):
        extra = {"dynamic_img_size": True, "global_pool": vit_pool, "fc_norm": False}
    return timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=0, **extra)


@cache
def read_weights_file(path: str | Path, drop: tuple[str, ...] = ("head.",)) -> dict[str, torch.Tensor]:
    """A backbone state dict from a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` weights file.

    Unwraps ``state_dict`` / ``model`` wrappers, removes ``module.`` (DDP) and ``backbone.`` (mmseg / torchgeo)
    prefixes, and drops the keys starting with ``drop`` (the classifier of an ImageNet checkpoint).

    Raises:
        FileNotFoundError: If ``path`` does not exist.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: dict[str, Any] = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model"):
            if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
                state = state[wrapper]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(drop)}
