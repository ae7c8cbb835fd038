"""One ``nn.Module`` holding every modality's encoder: DeCUR's joint representation as a backbone for other tools.

``JointEncoder`` takes a dict of modalities, or the stacked channels of a multimodal dataset (TerraTorch /
GEO-Bench-2's S1 + S2 stacks, torchgeo's BigEarthNet ``bands='all'``) split by band names, and returns one of

- ``pooled``: late fusion, the pooled features of the present modalities concatenated (``N x M·D``);
- ``common``: the mean over the present modalities of the common embedding dimensions (``N x common_dim``; they
  were trained to agree across modalities, so any subset gives the same space);
- ``maps``: per level the feature maps of the present modalities concatenated along channels, the input of a
  decoder (the paper's FCN does this). By default strides 8, 16, 32 for ResNets, 4 … 32 for MiT and ViT;
  ``levels`` picks others from ``decur.models.heads.pyramid`` (ResNet: 0-4 = strides 2-32; MiT and ViT:
  0-3 = strides 4-32).

Missing modality (decur's rule): a modality absent from the input is left out — no zeros are fed in its place.
A stacked input missing Sentinel-2's B10 (L2A products, BigEarthNet) gets it as zeros, as decur's readers do.
"""

from __future__ import annotations

import re
from typing import Any, cast

import torch
from torch import Tensor, nn

from decur.data.transforms import InputTransform
from decur.models.heads import pyramid
from decur.models.multimodal import projector

OUTPUTS = ("pooled", "common", "maps")
ZERO_FILLED = ("B10",)
"""Bands inserted as zeros when a stacked input lacks them."""


def band_key(name: str) -> str:
    """A band name compared loosely: ``B01`` = ``B1``, ``B8a`` = ``B8A``, ``vv`` = ``VV``."""
    return re.sub(r"^B0*(\d)", r"B\1", name.strip().upper())


def band_index(given: list[str], names: list[str]) -> tuple[list[int | None], list[str]]:
    """Channel of each of ``names`` in ``given`` (``None``: absent), and the absent ones not zero-filled."""
    where = {band_key(b): i for i, b in enumerate(given)}
    index = [where.get(band_key(b)) for b in names]
    lacking = [b for b, i in zip(names, index, strict=True) if i is None and band_key(b) not in ZERO_FILLED]
    return index, lacking


def take_bands(x: Tensor, index: list[int | None]) -> Tensor:
    """The channels ``index`` of ``N x C x H x W`` ``x`` in that order, zeros where an entry is ``None``."""
    zeros = x.new_zeros(x.shape[0], 1, *x.shape[2:])
    return torch.cat([x[:, i : i + 1] if i is not None else zeros for i in index], dim=1)


class JointEncoder(nn.Module):
    """Every modality's encoder (and projector, for ``common``) of a DeCUR model.

    Args:
        encoders: Modality → pooled-feature encoder (timm ``num_classes=0`` or ``decur.models.MiT``).
        band_names: Modality → its band names in channel order.
        output: One of ``OUTPUTS``.
        projectors: Modality → projector (required for ``common``).
        common_dim: Common embedding dimensions (required for ``common``).
        stack_bands: Band names of a stacked input tensor, in channel order (``None``: dict input only).
        transforms: Modality → input transform applied to the input first (``None``: inputs are already prepared).
        levels: Indices into ``decur.models.heads.pyramid`` returned by ``maps`` (``None``: the default above).

    Raises:
        ValueError: An unknown output, ``common`` without projectors, or a stack lacking a band of a modality.

    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        band_names: dict[str, list[str]],
        output: str = "pooled",
        projectors: dict[str, nn.Module] | None = None,
        common_dim: int | None = None,
        stack_bands: list[str] | None = None,
        transforms: dict[str, InputTransform] | None = None,
        levels: list[int] | None = None,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r} is not one of {list(OUTPUTS)}")
        if output == "common" and (not projectors or common_dim is None):
            raise ValueError(
                "output 'common' needs the projectors and common_dim (a decur run, export or the "
                "release's joint checkpoint)"
            )
        self.output, self.common_dim = output, common_dim
        self.encoders = nn.ModuleDict(encoders)
        self.projectors = nn.ModuleDict(projectors or {})
        self.band_names = {m: list(b) for m, b in band_names.items()}
        self.transforms = transforms or {}
        self.band_map = self._band_map(stack_bands) if stack_bands is not None else None
        self.levels = levels

    def _band_map(self, stack: list[str]) -> dict[str, list[int | None]]:
        out: dict[str, list[int | None]] = {}
        for m, names in self.band_names.items():
            index, lacking = band_index(stack, names)
            needed = [b for b in names if band_key(b) not in ZERO_FILLED]  # a stack with none of them: left out
            if lacking and len(lacking) < len(needed):
                raise ValueError(f"the stacked bands {stack} lack {lacking} of modality {m!r} ({names})")
            if not lacking:
                out[m] = index
        if not out:
            raise ValueError(f"the stacked bands {stack} hold no modality of {self.band_names}")
        return out

    def split(self, x: Tensor) -> dict[str, Tensor]:
        """The modalities of a stacked ``N x C x H x W`` input (zeros for missing B10)."""
        if self.band_map is None:
            raise ValueError("a stacked input needs stack_bands=[...] (the band names of its channels)")
        return {m: take_bands(x, index) for m, index in self.band_map.items()}

    def forward(self, x: dict[str, Tensor] | Tensor) -> Tensor | list[Tensor]:
        """The joint representation of ``x`` (a modality dict, or a stacked tensor with ``stack_bands``)."""
        inputs = self.split(x) if isinstance(x, Tensor) else x
        present = [m for m in self.encoders if m in inputs]
        if not present:
            raise ValueError(f"no modality of {list(self.encoders)} in the input ({list(inputs)})")
        inputs = {m: self.transforms[m](inputs[m]) if m in self.transforms else inputs[m] for m in present}
        if self.output == "maps":
            levels = [self._maps(m, inputs[m]) for m in present]
            return [torch.cat(per_level, dim=1) for per_level in zip(*levels, strict=True)]
        pooled = {m: self.encoders[m](inputs[m]) for m in present}
        if self.output == "pooled":
            return torch.cat([pooled[m] for m in present], dim=1)
        common = [self.projectors[m](pooled[m])[:, : self.common_dim] for m in present]
        return torch.stack(common).mean(dim=0)

    def _maps(self, m: str, x: Tensor, every: bool = False) -> list[Tensor]:

        maps = pyramid(self.encoders[m], x)
        if every:
            return maps
        if self.levels is not None:
            return [maps[i] for i in self.levels]
        return maps if len(maps) == 4 else maps[-3:]  # MiT and ViT: all four levels; ResNet: strides 8-32

    def out_channels(self, every: bool = False) -> list[int]:
        """Channels of each ``maps`` level (``every``: of every pyramid level), all modalities together.

        Read off one small forward pass in eval mode (running statistics stay as they are). With ``stack_bands``,
        only the modalities the stack holds count: the others are left out of every output.
        """
        widths = []
        for m, encoder in self.encoders.items():
            if self.band_map is not None and m not in self.band_map:
                continue
            patch = int(getattr(getattr(encoder, "patch_embed", None), "patch_size", (1,))[0])
            side = patch * -(-64 // patch)  # >= 64 px, a multiple of a ViT's patch
            probe = next(encoder.parameters()).new_zeros(1, len(self.band_names[m]), side, side)
            mode = encoder.training
            encoder.eval()
            with torch.no_grad():
                widths.append([int(f.shape[1]) for f in self._maps(m, probe, every)])
            encoder.train(mode)
        return [sum(w) for w in zip(*widths, strict=True)]


def projector_from_state(state: dict[str, Tensor]) -> nn.Module:
    """A projector of the widths stored in ``state``, loaded from it strictly (decur's layout, or the release's)."""
    net = _projector_from_state(state, projector)
    net.load_state_dict(state, strict=True)
    return net


def _projector_from_state(state: dict[str, Tensor], make: Any) -> nn.Module:
    """A projector of the widths stored in ``state`` (decur's layout, with the release's MiT head when present)."""
    linear = sorted(int(k.split(".")[0]) for k in state if k.endswith("weight") and state[k].ndim == 2)
    widths = [int(state[f"{i}.weight"].shape[0]) for i in linear]
    first_in = int(state[f"{linear[0]}.weight"].shape[1])
    head = linear[0] == 0 and "0.bias" in state  # the release's MiT head (Linear with bias) before the projector
    if head:
        return nn.Sequential(nn.Linear(first_in, widths[0]), *make(widths[0], widths[1:]))
    return cast(nn.Module, make(first_in, widths))
