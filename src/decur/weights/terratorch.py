"""decur backbones for TerraTorch (optional extra ``terratorch``): the joint DeCUR encoder as one backbone.

TerraTorch builds a backbone by name from its ``BACKBONE_REGISTRY``. ``register`` adds a source ``decur`` with
two names, so that a TerraTorch config (``model_args.backbone``) can say

- ``decur_joint``: every modality of a decur export (or any weights decur reads) as one backbone, taking a dict of
  modalities or the stacked bands of a multimodal dataset (``model_bands``), returning per level the feature maps
  of the present modalities concatenated (decur's late fusion; a missing modality is left out);
- ``decur_encoder``: one modality of it (``modality=``), the single-branch backbone.

The weights come from ``ckpt_data`` (TerraTorch's name for a local weights file); ``pretrained=False`` keeps the
architecture and starts from random weights. ``input_transform="card"`` (default) applies the transform the weights
were trained with, so the datamodule must deliver the card's units (DN, dB: ``means: [0, ...]``,
``stds: [1, ...]``); ``"none"`` when the datamodule already prepares the input. Band names are matched as decur's
export card spells them (``B01`` = ``B1``) or by TerraTorch's names (``RED``, ``NIR_NARROW``, ``VV``, enums too);
an unknown name is refused — TerraTorch's own DeCUR backbones silently re-initialise ``conv1`` then.

TerraTorch finds the source when this module is imported: its CLI imports ``custom_modules_path`` (the shipped
``configs/terratorch/custom_modules`` does it), Python users call ``register``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from decur.models import create_encoder
from decur.models.joint import band_index, band_key, take_bands
from decur.weights import read_pretrained
from decur.weights.formats import WeightsError
from decur.weights.joint import MultimodalEncoder

SOURCE = "decur"
"""Prefix of decur's names in TerraTorch's backbone registry."""

TERRATORCH_S2 = {
    "COASTAL_AEROSOL": "B1",
    "BLUE": "B2",
    "GREEN": "B3",
    "RED": "B4",
    "RED_EDGE_1": "B5",
    "RED_EDGE_2": "B6",
    "RED_EDGE_3": "B7",
    "NIR_BROAD": "B8",
    "NIR_NARROW": "B8A",
    "WATER_VAPOR": "B9",
    "CIRRUS": "B10",
    "SWIR_1": "B11",
    "SWIR_2": "B12",
}
"""TerraTorch's (HLS) band names → Sentinel-2 band names."""
TERRATORCH_RGB = {"RED": "R", "GREEN": "G", "BLUE": "B"}
TERRATORCH_KEYS = {"S1GRD": "s1", "S1RTC": "s1", "S2L1C": "s2", "S2L2A": "s2", "S2RGB": "rgb", "DEM": "dem"}
"""TerraTorch's multimodal input keys (TerraMind's names) → decur's modality names."""
TRANSFORMS = ("card", "none")


def band_name(band: Any) -> str:
    """A band as a string: enums by their value (or name), strings as given; band indices are refused."""
    if isinstance(band, Enum):
        return str(band.value) if isinstance(band.value, str) else band.name
    if not isinstance(band, str):
        raise WeightsError(f"decur backbone: band {band!r} is not a name; give model_bands as names (B04, RED, VV)")
    return band


def resolve_bands(given: list[Any], known: dict[str, list[str]]) -> list[str]:
    """``given`` spelled as the weights spell their bands.

    Args:
        given: Band names (any supported spelling) of the input's channels, in order.
        known: Modality → the weights' band names.

    Raises:
        WeightsError: A name no modality has, naming it and the accepted spellings.

    """
    keys = {band_key(b): b for names in known.values() for b in names}
    out = []
    for band in given:
        name = band_name(band)
        upper = name.strip().upper()
        for candidate in (name, TERRATORCH_S2.get(upper), TERRATORCH_RGB.get(upper)):
            if candidate is not None and band_key(candidate) in keys:
                out.append(keys[band_key(candidate)])
                break
        else:
            raise WeightsError(
                f"decur backbone: model_bands has {name!r}, which these weights do not know; their bands are "
                f"{known} (B01 = B1; TerraTorch's names such as RED, NIR_NARROW, VV are accepted too)"
            )
    return out


class DecurBackbone(nn.Module):
    """A TerraTorch backbone: modality dict or stacked tensor → list of feature maps, ``out_channels`` per level.

    Args:
        joint: The encoders (``output="maps"``, every level of ``decur.models.heads.pyramid``).
        out_indices: Levels returned (``None``: all; negative counts from the coarsest).
        keys: Input dict key → modality (the modality's own name always works).
        orders: Modality → channel of each of its weights' bands in a dict input (``None``: the card's order).

    """

    def __init__(
        self,
        joint: MultimodalEncoder,
        out_indices: list[int] | None = None,
        keys: dict[str, str] | None = None,
        orders: dict[str, list[int | None]] | None = None,
    ) -> None:
        super().__init__()
        self.joint = joint
        widths = joint.out_channels(every=True)
        picked = list(range(len(widths))) if out_indices is None else [i % len(widths) for i in out_indices]
        if out_indices is not None and any(not -len(widths) <= i < len(widths) for i in out_indices):
            raise WeightsError(f"decur backbone: out_indices {out_indices} outside the {len(widths)} levels")
        joint.levels = picked
        self.out_channels = [widths[i] for i in picked]
        self.keys = {k.lower(): m for k, m in (keys or {}).items()}
        self.orders = orders or {}

    def forward(self, x: Tensor | dict[str, Tensor], **kwargs: Any) -> list[Tensor]:
        """Feature maps per selected level (the present modalities concatenated along channels)."""
        if isinstance(x, Tensor):
            return list(self.joint(x))
        inputs = {}
        for key, value in x.items():
            m = key if key in self.joint.encoders else self.keys.get(key.lower())
            if m is None:
                raise WeightsError(
                    f"decur backbone: input key {key!r} is no modality of {list(self.joint.encoders)};"
                    " map it with modality_keys: {" + key + ": <modality>}"
                )
            inputs[m] = take_bands(value, self.orders[m]) if m in self.orders else value
        return list(self.joint(inputs))


def _order(given: list[str], names: list[str], modality: str) -> list[int | None]:
    order, lacking = band_index(given, names)
    if lacking:
        raise WeightsError(f"decur backbone: model_bands[{modality!r}] {given} lacks {lacking} ({names})")
    return order


def build(
    ckpt_data: str | Path | None = None,
    modalities: list[str] | None = None,
    model_bands: list[Any] | dict[str, list[Any]] | None = None,
    out_indices: list[int] | None = None,
    input_transform: str = "card",
    pretrained: bool = True,
    modality_keys: dict[str, str] | None = None,
    names: list[str] | None = None,
) -> DecurBackbone:
    """The joint backbone of the weights at ``ckpt_data`` (the ``decur_joint`` registry entry).

    Args:
        ckpt_data: A decur export folder (or any weights ``decur.weights.read_pretrained`` reads).
        modalities: The modalities kept (``None``: all).
        model_bands: The input's band names: one list for a stacked tensor, or modality → list for a dict input
            whose channels are not in the card's order (``None``: dict input in the card's order).
        out_indices: Levels of ``decur.models.heads.pyramid`` returned (``None``: all).
        input_transform: ``card`` (the weights' own, on raw DN / dB) or ``none`` (input already prepared).
        pretrained: ``False``: the same architecture with random weights.
        modality_keys: Input dict key → modality, added to ``TERRATORCH_KEYS``.
        names: The encoders' modality names in file order (a joint release file: ``["s1", "s2"]``).

    Raises:
        WeightsError: No weights, unknown band names or transform, or bands that do not cover a modality.

    """
    if ckpt_data is None:
        raise WeightsError(
            "decur backbone: ckpt_data is required (a decur export folder: `decur export` or `decur import` write one)"
        )
    if input_transform not in TRANSFORMS:
        raise WeightsError(f"decur backbone: input_transform {input_transform!r} is not one of {list(TRANSFORMS)}")
    joint = MultimodalEncoder.from_export(ckpt_data, "maps", names, transforms=input_transform == "card")
    keep = modalities or list(joint.encoders)
    unknown = [m for m in keep if m not in joint.encoders]
    if unknown:
        raise WeightsError(f"{ckpt_data}: has no modality {unknown}; it has {list(joint.encoders)}")
    if not pretrained:
        arch = read_pretrained(ckpt_data, names, None).arch  # the read of from_export, cached
        for m in keep:
            joint.encoders[m] = create_encoder(arch, len(joint.band_names[m])).eval()
    stack, orders = None, None
    known = {m: joint.band_names[m] for m in keep}
    if isinstance(model_bands, dict):
        orders = {m: _order(resolve_bands(b, known), known[m], m) for m, b in model_bands.items() if m in known}
    elif model_bands is not None:
        stack = resolve_bands(model_bands, known)
    net = MultimodalEncoder(
        {m: joint.encoders[m] for m in keep},
        known,
        "maps",
        stack_bands=stack,
        transforms={m: t for m, t in joint.transforms.items() if m in keep},
    )
    absent = [m for m in keep if net.band_map is not None and m not in net.band_map]
    if absent:  # the backbone would return fewer channels than out_channels says
        present = [m for m in keep if m not in absent]
        raise WeightsError(
            f"decur backbone: model_bands {[band_name(b) for b in model_bands or []]} hold no band of {absent}; "
            f"add their bands, or keep the others only with backbone_modalities: {present}"
        )
    keys = {k: m for k, m in TERRATORCH_KEYS.items() if m in keep} | dict(modality_keys or {})
    return DecurBackbone(net.train(), out_indices, keys, orders)


def joint(**kwargs: Any) -> DecurBackbone:
    """``decur_joint``: every modality (or ``modalities=[...]``) of the weights at ``ckpt_data`` (``build``)."""
    return build(**_terratorch_kwargs(kwargs))


def encoder(modality: str | None = None, **kwargs: Any) -> DecurBackbone:
    """``decur_encoder``: the one modality ``modality`` of the weights at ``ckpt_data`` (``build``)."""
    if modality is None:
        raise WeightsError("decur_encoder: say which modality with backbone_modality (e.g. s2)")
    return build(modalities=[modality], **_terratorch_kwargs(kwargs))


def _terratorch_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    import inspect

    accepted = set(inspect.signature(build).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise WeightsError(f"decur backbone: unknown argument(s) {unknown}; accepted: {sorted(accepted)}")
    return kwargs


def register() -> None:
    """Add the ``decur`` source (``decur_joint``, ``decur_encoder``) to TerraTorch's backbone registry (once).

    Raises:
        ImportError: TerraTorch is not installed (``pip install decur[terratorch]``).

    """
    from terratorch.registry import BACKBONE_REGISTRY, Registry

    if SOURCE in BACKBONE_REGISTRY._sources:
        return
    registry = Registry()
    registry.register(joint)
    registry.register(encoder)
    BACKBONE_REGISTRY.register_source(SOURCE, registry)
