"""The paper's Sentinel preprocessing, shared by every Sentinel dataset (pretraining and transfer alike)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def cut_outliers(x: Tensor, fraction: float = 0.02) -> Tensor:
    """Clip every band of a ``[..., C, H, W]`` SAR image to its [fraction, 1 − fraction] quantile range.

    The paper's "2 % outliers cut per image" for Sentinel-1 backscatter (dB). The quantiles are
    ``torch.quantile``'s (linear interpolation between the two nearest ranks), found by one partial sort of each
    band instead of a full one (8x faster at 264 x 264: this runs in the loader workers for every S1 image).
    """
    flat = x.detach().flatten(-2).cpu().numpy()
    pos = np.array([fraction * (flat.shape[-1] - 1), (1 - fraction) * (flat.shape[-1] - 1)])
    below, above = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    ranks = np.partition(flat, sorted({*below.tolist(), *above.tolist()}), axis=-1)
    a, b = torch.from_numpy(ranks[..., below]), torch.from_numpy(ranks[..., above])
    lo, hi = torch.lerp(a, b, torch.from_numpy(pos - below).to(a.dtype)).to(x.device).unbind(-1)
    return torch.maximum(torch.minimum(x, hi[..., None, None]), lo[..., None, None])


def s2_to_unit(reflectance: Tensor) -> Tensor:
    """Sentinel-2 digital numbers (reflectance x 10000) → the paper's 8-bit values, divided by 255.

    ``x / 10000 · 255``, rounded and clipped to [0, 255] (no wrap-around), then / 255: values in [0, 1].
    """
    return (reflectance / 10000 * 255).round().clamp(0, 255) / 255
