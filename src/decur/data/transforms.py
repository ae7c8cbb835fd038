"""Input transforms: how raw sensor values become an encoder's input, written down so that they travel with weights.

An ``InputTransform`` is a short list of named steps, each a pure function of a ``[..., C, H, W]`` tensor,
stored in a weights card as JSON (``{"units": "DN", "steps": [{"op": "s2_8bit"}, {"op": "standardize", ...}]}``)
and rebuilt from it exactly. Three families of rules exist for the DeCUR weights:

- ``decur``: this library's inputs. Sentinel-2 digital numbers → 8 bit (``round(DN / 10000 · 255)``, clipped) / 255,
  Sentinel-1 dB with the 2 % outliers of each image cut, then per-band ``(x − mean) / std`` with the statistics the
  encoder was trained with.
- ``ssl4eo_release``: the official DeCUR release (SSL4EO-S12 stored as ``uint8``): S1 clipped to the image's 1 % /
  99 % quantiles; every band mapped by ``(x − (mean − 2σ)) / 4σ · 255``, clipped to [0, 255] and truncated to an
  integer (numpy's ``astype(uint8)``), then / 255 — i.e. ``clip(z / 4 + 1/2, 0, 1)`` in 1/255 steps. RGB / HHA
  images are read by OpenCV (blue first: ``reverse_bands``), divided by 255, and for SUN-RGBD standardised with
  ImageNet's statistics.
- ``torchgeo``: torchgeo's DeCUR weights: S2 as ``DN / 10000``, S1 as ``(dB − mean) / std`` (no clipping).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from decur.catalog import TRANSFORM_RULES
from decur.data.preprocess import cut_outliers, s2_to_unit
from decur.data.ssl4eo_s12 import S1_BANDS, S2C_BANDS, S2C_DN_STATS, STATS

RULES = TRANSFORM_RULES
"""Named transform rules (see the module docstring; declared in ``decur.catalog.TRANSFORM_RULES``)."""

# The release's S1 statistics (its uint8 LMDB and torchgeo's DeCUR transform); decur's carry more digits.
RELEASE_S1 = ([-12.59, -20.26], [5.26, 5.91])
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _per_band(values: Sequence[float], x: Tensor) -> Tensor:
    if len(values) != x.shape[-3]:
        raise ValueError(f"{len(values)} per-band values for an image of {x.shape[-3]} bands")
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1).to(x.device, x.dtype)


def _standardize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    return (x - _per_band(mean, x)) / _per_band(std, x)


def _release_8bit(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m, s = _per_band(mean, x).double(), _per_band(std, x).double()
    scaled = (x.double() - (m - 2 * s)) / (4 * s) * 255.0
    return (scaled.clamp(0, 255).floor() / 255).to(x.dtype)  # numpy's astype(uint8) truncates towards zero


def _percentile_stretch(x: Tensor, low: float, high: float) -> Tensor:
    """Per band: clip to the image's ``low``/``high`` percentiles, map that range to 8 bit (truncated), / 255."""
    flat = x.flatten(-2).double()
    lo, hi = torch.quantile(flat, low / 100, dim=-1), torch.quantile(flat, high / 100, dim=-1)
    lo, hi = lo[..., None, None], hi[..., None, None]
    y = (torch.minimum(torch.maximum(x.double(), lo), hi) - lo) / (hi - lo + 1e-5) * 255
    return (y.floor() / 255).to(x.dtype)


OPS: dict[str, Callable[..., Tensor]] = {
    "s2_8bit": lambda x: s2_to_unit(x),
    "cut_outliers": lambda x, fraction: cut_outliers(x, fraction),
    "standardize": _standardize,
    "release_8bit": _release_8bit,
    "percentile_stretch": _percentile_stretch,
    "scale": lambda x, factor: x * factor,
    "reverse_bands": lambda x: x.flip(-3),
}
"""Every step an ``InputTransform`` may hold, by name, with its keyword parameters."""


@dataclass
class InputTransform:
    """Raw sensor values of one modality → the encoder's input, as a list of named steps (``OPS``).

    Args:
        rule: The family (``RULES``) or ``custom``.
        units: What the input holds (``DN``, ``dB``, ``8-bit/255``, ...), in the order of ``bands``.
        bands: Band names in channel order.
        steps: ``[{"op": name, **params}, ...]``, applied in order.
        stats_source: Where the statistics in the steps come from.

    """

    rule: str
    units: str
    bands: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    stats_source: str = ""

    def __post_init__(self) -> None:
        for step in self.steps:
            if step.get("op") not in OPS:
                raise ValueError(f"input transform step {step}: unknown op; known: {sorted(OPS)}")

    def __call__(self, x: Tensor) -> Tensor:
        """The transformed ``[..., C, H, W]`` float image (``uint8`` input is read as 8-bit / 255 first)."""
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        for step in self.steps:
            params = {k: v for k, v in step.items() if k != "op"}
            x = OPS[step["op"]](x, **params)
        return x

    def after(self, applied: Sequence[dict[str, Any]]) -> InputTransform:
        """The steps left once a reader has applied ``applied`` (a prefix of the steps).

        Raises:
            ValueError: ``applied`` is not how this transform starts (the data were stored in other units).

        """
        if list(self.steps[: len(applied)]) != list(applied):
            raise ValueError(
                f"the data hold values after {[s['op'] for s in applied]}, but the {self.rule} transform starts "
                f"with {[s['op'] for s in self.steps[: max(1, len(applied))]]}"
            )
        return InputTransform(self.rule, self.units, self.bands, self.steps[len(applied) :], self.stats_source)

    def fill_value(self, raw: Sequence[float]) -> list[float]:
        """The transformed value of a constant image ``raw`` per band (padding in the transformed space)."""
        pixel = torch.tensor(raw, dtype=torch.float32).view(-1, 1, 1).expand(-1, 2, 2)
        return [float(v) for v in self(pixel)[:, 0, 0]]

    def to_card(self) -> dict[str, Any]:
        """The JSON form stored in weights cards (``from_card`` rebuilds it exactly)."""
        return {
            "rule": self.rule,
            "units": self.units,
            "bands": list(self.bands),
            "steps": self.steps,
            "stats_source": self.stats_source,
        }

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> InputTransform:
        """The transform written by ``to_card``.

        Raises:
            ValueError: A field is missing or a step unknown.

        """
        missing = [k for k in ("rule", "units", "bands", "steps") if k not in card]
        if missing:
            raise ValueError(f"input transform card lacks {missing}")
        return cls(card["rule"], card["units"], list(card["bands"]), list(card["steps"]), card.get("stats_source", ""))


def _std(mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    return {"op": "standardize", "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def sentinel_transform(
    rule: str, modality: str, bands: int, stats: tuple[list[float], list[float]] | None = None
) -> InputTransform:
    """The ``rule`` transform of a Sentinel-1 (``bands == 2``) or Sentinel-2 L1C (13 / 12 bands) image.

    Args:
        rule: One of ``RULES``.
        modality: Its name (for messages).
        bands: 2 (VV, VH) or 13 (B1..B12 with B10) or 12 (without B10).
        stats: decur's standardisation statistics in its own units (``decur`` only; default SSL4EO-S12's).

    Raises:
        ValueError: Another band count, or an unknown rule.

    """
    if rule not in RULES:
        raise ValueError(f"input transform {rule!r} is not one of {list(RULES)}")
    if bands == 2:
        names, (mean, std) = list(S1_BANDS), RELEASE_S1
        units = "dB"
    elif bands in (12, 13):
        keep = [i for i, b in enumerate(S2C_BANDS) if bands == 13 or b != "B10"]
        names = [S2C_BANDS[i] for i in keep]
        mean, std = ([S2C_DN_STATS[k][i] for i in keep] for k in (0, 1))
        units = "DN"
    else:
        raise ValueError(f"{modality}: {bands} bands is neither Sentinel-1 (2) nor Sentinel-2 (12, 13)")
    if rule == "decur":
        m, s = stats or STATS["s1" if bands == 2 else "s2c" if bands == 13 else "s2a"]
        first = {"op": "cut_outliers", "fraction": 0.02} if bands == 2 else {"op": "s2_8bit"}
        source = (
            "decur: SSL4EO-S12 band statistics (SSL4EO-S12 repository, 50k samples)"
            if stats is None
            else ("decur: the pretraining run's statistics")
        )
        return InputTransform(rule, units, names, [first, _std(m, s)], source)
    if rule == "ssl4eo_release":
        steps = [{"op": "cut_outliers", "fraction": 0.01}] if bands == 2 else []
        steps.append({"op": "release_8bit", "mean": list(mean), "std": list(std)})
        source = "DeCUR release: SSL4EO-S12 statistics of its uint8 LMDB (ssl4eo_dataset*.py)"
        return InputTransform(rule, units, names, steps, source)
    step = _std(mean, std) if bands == 2 else {"op": "scale", "factor": 1e-4}
    return InputTransform(rule, units, names, [step], "torchgeo: ResNet50_Weights.SENTINEL*_ALL_DECUR transforms")


def image_transform(
    rule: str, modality: str, bands: int, stats: tuple[list[float], list[float]], imagenet: bool = False
) -> InputTransform:
    """The ``rule`` transform of an 8-bit image (RGB, HHA) or a DEM, given as decur's readers return it.

    ``decur``: standardise with ``stats``. ``ssl4eo_release`` (the release's RGB-D / GeoNRW loaders): 3-band
    images reversed to OpenCV's blue-first order, ImageNet-standardised when ``imagenet`` (SUN-RGBD / NYUv2);
    a DEM clipped to its 1 / 99 percentiles and stretched to 8 bit. ``torchgeo`` has no such weights.

    Raises:
        ValueError: ``torchgeo`` or an unknown rule.

    """
    units = "m minus the patch mean" if modality == "dem" else "8-bit/255"
    names = {"rgb": ["R", "G", "B"], "hha": ["H", "H2", "A"]}.get(modality, [f"{modality}{i}" for i in range(bands)])
    if rule == "decur":
        return InputTransform(rule, units, names, [_std(*stats)], "decur: the dataset's or run's band statistics")
    if rule != "ssl4eo_release":
        raise ValueError(
            f"input transform {rule!r} exists for Sentinel-1/2 weights only; use decur or "
            "ssl4eo_release for RGB, HHA and DEM"
        )
    if modality == "dem":
        steps: list[dict[str, Any]] = [{"op": "percentile_stretch", "low": 1.0, "high": 99.0}]
    else:
        steps = [{"op": "reverse_bands"}] + ([_std(*IMAGENET)] if imagenet else [])
    return InputTransform(rule, units, names, steps, "DeCUR release: OpenCV reading, ImageNet statistics")
