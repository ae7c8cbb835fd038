"""The paper's Sentinel preprocessing, shared by every Sentinel dataset (pretraining and transfer alike)."""

from __future__ import annotations

import torch
from torch import Tensor


def cut_outliers(x: Tensor, fraction: float = 0.02) -> Tensor:
    """Clip every band of a ``[..., C, H, W]`` SAR image to its [fraction, 1 − fraction] quantile range.

    The paper's "2 % outliers cut per image" for Sentinel-1 backscatter (dB).
    """
    flat = x.flatten(-2)
    lo = torch.quantile(flat, fraction, dim=-1)[..., None, None]
    hi = torch.quantile(flat, 1 - fraction, dim=-1)[..., None, None]
    return torch.maximum(torch.minimum(x, hi), lo)


def s2_to_unit(reflectance: Tensor) -> Tensor:
    """Sentinel-2 digital numbers (reflectance x 10000) → the paper's 8-bit values, divided by 255.

    ``x / 10000 · 255``, rounded and clipped to [0, 255] (no wrap-around), then / 255: values in [0, 1].
    """
    return (reflectance / 10000 * 255).round().clamp(0, 255) / 255
