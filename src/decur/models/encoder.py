"""Modality-specific encoders: timm backbones or SegFormer's MiT, the first layer matched to the band count."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, cast

import timm
import torch
from torch import nn

FAMILIES = ("resnet", "resnext", "wide_resnet", "seresnet", "seresnext", "resnetrs")
"""timm families decur runs at any crop size (convolutional, globally pooled); plus SegFormer's ``mit_b0``-``b5``
and the plain timm ViTs (:data:`VIT`)."""
VIT = re.compile(r"^vit_(tiny|small|base|large|huge)_patch(\d+)_(\d+)$")
"""Plain timm Vision Transformers (``vit_small_patch16_224`` ...): built with their default 224-px position grid
and ``dynamic_img_size=True``, so they run at any crop that the patch size divides (the embedding is resampled
per forward) and their state dict loads strictly into ``timm.create_model(arch, in_chans=C, num_classes=0)`` and
torchgeo's ViT constructors. The pooled feature is chosen by :data:`VIT_POOLS` (``model.vit_pool``)."""
VIT_POOLS = ("token", "avg")
"""Pooled feature of a ViT: ``token`` (the class token after the final norm, timm's default for these models and
what the DeCUR code base's ViT-S/16 feeds its projector) or ``avg`` (the mean of the patch tokens after the same
final norm: ``timm.create_model(arch, global_pool='avg', fc_norm=False)``, whose state dict has the same keys)."""


def vit_patch(arch: str) -> int | None:
    """The patch size of a plain ViT name, ``None`` for other architectures."""
    match = VIT.match(arch)
    return int(match.group(2)) if match else None


def check_vit_pool(arch: str, vit_pool: str) -> None:
    """Refuse a pooling that is not one of :data:`VIT_POOLS`, or other than ``token`` for a non-ViT ``arch``.

    Raises:
        ValueError: Naming the poolings and what ``avg`` applies to.

    """
    if vit_pool not in VIT_POOLS or (vit_pool != "token" and not VIT.match(arch)):
        raise ValueError(
            f"one of {list(VIT_POOLS)}; avg pools a plain ViT's patch tokens only (arch {arch!r}), got {vit_pool!r}"
        )


def check_arch(arch: str) -> None:
    """Refuse an encoder name decur cannot run, naming the families it supports.

    Raises:
        ValueError: ``arch`` is not a MiT nor a timm model of :data:`FAMILIES`.

    """
    from decur.models.mit import is_mit

    if is_mit(arch) or (VIT.match(arch) and arch in timm.list_models()):
        return
    family = arch.split("_")[0].rstrip("0123456789d") if not arch.startswith("wide_resnet") else "wide_resnet"
    if family not in FAMILIES or arch not in timm.list_models():
        raise ValueError(
            f"encoder architecture {arch!r} is not supported: use a timm model of the families {', '.join(FAMILIES)} "
            "(e.g. resnet18, resnet50), a plain ViT (vit_tiny|small|base|large_patch16_224 ...) or SegFormer's "
            "mit_b0..mit_b5"
        )


def create_encoder(arch: str, in_chans: int, vit_pool: str = "token") -> nn.Module:
    """A backbone returning pooled features ``N x num_features``, randomly initialised.

    A timm model (``num_classes=0``): its ``state_dict()`` is a plain timm state dict that
    ``timm.create_model(arch, in_chans=in_chans, num_classes=0)`` loads with strict key matching (torchvision
    ResNets share the keys). ``mit_b0`` ... ``mit_b5``: SegFormer's Mix Transformer (:mod:`decur.models.mit`), whose
    state dict has SegFormer's original keys; its pooled feature is the mean of the last stage. ``vit_pool``
    (:data:`VIT_POOLS`) chooses a plain ViT's pooled feature; other architectures take ``token`` (no effect).

    Raises:
        ValueError: If neither timm nor :data:`decur.models.mit.MIT_ARCHS` knows ``arch``, or an unknown pooling.

    """
    from decur.models.mit import create_mit, is_mit

    if is_mit(arch):
        return create_mit(arch, in_chans)
    check_arch(arch)
    check_vit_pool(arch, vit_pool)
    extra: dict[str, Any] = {}
    if VIT.match(arch):
        extra = {"dynamic_img_size": True, "global_pool": vit_pool, "fc_norm": False}
    return timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=0, **extra)


@cache
def encoder_width(arch: str) -> int:
    """Width of the pooled features of ``arch`` (512 for resnet18/34, 2048 for resnet50, 256 / 512 for MiT)."""
    from decur.models.mit import is_mit, mit_widths

    if is_mit(arch):
        return mit_widths(arch)[-1]
    with torch.device("meta"):
        return int(cast(int, create_encoder(arch, 3).num_features))


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
