"""Every named choice of decur, declared once and importable without torch.

Configs are checked against these names before anything heavy is imported (``decur validate`` and ``decur --help``
start in about a second); the modules that implement a choice import its name from here. Adding a method, an
encoder width or a precision starts in this file; datasets have their own registry, ``decur.datasets``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import cast

# ---- methods -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """What a method needs: its loss function, the modalities it trains and the views per modality.

    ``loss`` names a function of ``decur.losses``. ``multimodal`` holds the switches of
    ``decur.losses.decur_multimodal`` that give the method's form for more than two modalities (pairwise
    cross-modal terms); ``None``: the method trains exactly ``modalities``.
    """

    loss: str
    modalities: int
    views: int
    multimodal: dict[str, bool] | None = field(default=None)

    def accepts(self, count: int) -> bool:
        """Whether the method trains ``count`` modalities."""
        return count == self.modalities or (self.multimodal is not None and count >= 2)


METHODS: dict[str, Method] = {
    "decur": Method("decur_loss", modalities=2, views=2, multimodal={}),
    "decur_no_intra": Method("decur_without_intra", modalities=2, views=1, multimodal={"intra": False}),
    "decur_no_decoupling": Method("decur_without_decoupling", modalities=2, views=2, multimodal={"decouple": False}),
    "barlow_twins_cross": Method(
        "barlow_twins_cross", modalities=2, views=1, multimodal={"intra": False, "decouple": False}
    ),
    "barlow_twins_single": Method("barlow_twins_single", modalities=1, views=2),
    "simclr_cross": Method("simclr_cross", modalities=2, views=1),
    "clip": Method("clip_loss", modalities=2, views=1),
    "vicreg_cross": Method("vicreg_cross", modalities=2, views=1),
}
"""Pretraining methods by config name (``method.name``): DeCUR, its two ablations (paper Table 12) and baselines."""

# ---- encoders ----------------------------------------------------------------------------------------------------

FAMILIES = ("resnet", "resnext", "wide_resnet", "seresnet", "seresnext", "resnetrs")
"""timm families decur runs at any crop size (convolutional, globally pooled); plus SegFormer's ``mit_b0``-``b5``
and the plain timm ViTs (``VIT``)."""
VIT = re.compile(r"^vit_(tiny|small|base|large|huge)_patch(\d+)_(\d+)$")
"""Plain timm Vision Transformers (``vit_small_patch16_224`` ...), see ``decur.models.encoder``."""
VIT_POOLS = ("token", "avg")
"""Pooled feature of a ViT: ``token`` (the class token after the final norm) or ``avg`` (the mean of the patch
tokens after the same norm)."""
MIT_ARCHS = ("mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5")
"""SegFormer's Mix Transformers. Depths per stage: b0/b1 (2, 2, 2, 2), b2 (3, 4, 6, 3), b3 (3, 4, 18, 3),
b4 (3, 8, 27, 3), b5 (3, 6, 40, 3); widths 32-64-160-256 (b0) or 64-128-320-512 (b1-b5)."""
WIDTHS: dict[str, int] = {
    "resnet18": 512,
    "resnet26": 2048,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "resnext50_32x4d": 2048,
    "resnext101_32x8d": 2048,
    "wide_resnet50_2": 2048,
    "wide_resnet101_2": 2048,
    "seresnet50": 2048,
    "vit_tiny_patch16_224": 192,
    "vit_small_patch16_224": 384,
    "vit_small_patch8_224": 384,
    "vit_small_patch32_224": 384,
    "vit_base_patch16_224": 768,
    "vit_base_patch8_224": 768,
    "vit_base_patch32_224": 768,
    "vit_large_patch16_224": 1024,
    "vit_large_patch14_224": 1024,
    "vit_large_patch32_224": 1024,
    "vit_huge_patch14_224": 1280,
    "mit_b0": 256,
    **dict.fromkeys(MIT_ARCHS[1:], 512),
}
"""Pooled feature width of the encoders most configs name (timm's ``num_features``; MiT: its last stage), known
without building them; any other timm name of ``FAMILIES`` is looked up in timm."""


def vit_patch(arch: str) -> int | None:
    """The patch size of a plain ViT name, ``None`` for other architectures."""
    match = VIT.match(arch)
    return int(match.group(2)) if match else None


def is_mit(arch: str) -> bool:
    """Whether ``arch`` names a Mix Transformer."""
    return arch in MIT_ARCHS


# ---- inputs --------------------------------------------------------------------------------------------------

TRANSFORM_RULES = ("decur", "ssl4eo_release", "torchgeo")
"""Named input-transform rules of weights (``decur.data.transforms``)."""

# ---- the engine --------------------------------------------------------------------------------------------------

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")
"""Lightning precisions decur trains in."""


# ---- checks on names (timm is imported only for a name outside the tables) -----------------------------------------


def check_arch(arch: str) -> None:
    """Refuse an encoder name decur cannot run, naming the families it supports.

    Raises:
        ValueError: ``arch`` is not a MiT nor a timm model of ``FAMILIES`` or a plain ViT (``VIT``).

    """
    if arch in WIDTHS:
        return
    family = arch.split("_")[0].rstrip("0123456789d") if not arch.startswith("wide_resnet") else "wide_resnet"
    if VIT.match(arch) or family in FAMILIES:
        import timm

        if arch in timm.list_models():
            return
    raise ValueError(
        f"encoder architecture {arch!r} is not supported: use a timm model of the families {', '.join(FAMILIES)} "
        "(e.g. resnet18, resnet50), a plain ViT (vit_tiny|small|base|large_patch16_224 ...) or SegFormer's "
        "mit_b0..mit_b5"
    )


def check_vit_pool(arch: str, vit_pool: str) -> None:
    """Refuse a pooling that is not one of ``VIT_POOLS``, or other than ``token`` for a non-ViT ``arch``.

    Raises:
        ValueError: Naming the poolings and what ``avg`` applies to.

    """
    if vit_pool not in VIT_POOLS or (vit_pool != "token" and not VIT.match(arch)):
        raise ValueError(
            f"one of {list(VIT_POOLS)}; avg pools a plain ViT's patch tokens only (arch {arch!r}), got {vit_pool!r}"
        )


def encoder_width(arch: str) -> int:
    """Width of the pooled features of ``arch`` (512 for resnet18/34, 2048 for resnet50, 256 / 512 for MiT)."""
    if arch in WIDTHS:
        return WIDTHS[arch]
    import timm
    import torch

    with torch.device("meta"):
        return int(cast(int, timm.create_model(arch, num_classes=0).num_features))
