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


def cut_outliers_half(x: np.ndarray, fraction: float = 0.02) -> Tensor:
    """``cut_outliers`` of a NaN-free ``float16`` ``C x H x W`` image, exactly, as ``float32``, 3x faster.

    A ``float16`` band takes at most 65536 distinct values, so its order statistics come from one count per value
    (``bincount`` over the bit patterns mapped to a monotone key) instead of a partial sort: SSL4EO-S12 v1.1 stores
    S1 backscatter as ``float16``, and this cut is the largest cost of its loader workers.
    """
    c, n = x.shape[0], x.shape[1] * x.shape[2]
    bits = x.reshape(c, n).view(np.uint16)
    keys = np.where(bits & 0x8000, ~bits, bits | 0x8000).astype(np.int64)  # negative floats reverse their order
    counts = np.bincount((keys + np.arange(c)[:, None] * 65536).ravel(), minlength=c * 65536).reshape(c, 65536)
    cum = np.cumsum(counts, axis=1)
    pos = np.array([fraction * (n - 1), (1 - fraction) * (n - 1)])
    below, above = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    found = np.stack([np.searchsorted(cum[b], np.concatenate([below, above]), side="right") for b in range(c)])
    found = found.astype(np.uint16)
    ranked = np.where(found & 0x8000, found & 0x7FFF, ~found).astype(np.uint16).view(np.float16).astype(np.float32)
    a, b = torch.from_numpy(ranked[:, :2]), torch.from_numpy(ranked[:, 2:])
    lo, hi = torch.lerp(a, b, torch.from_numpy(pos - below).to(a.dtype)).unbind(-1)
    image = torch.from_numpy(x.astype(np.float32))
    return torch.maximum(torch.minimum(image, hi[:, None, None]), lo[:, None, None])


def s2_to_unit(reflectance: Tensor) -> Tensor:
    """Sentinel-2 digital numbers (reflectance x 10000) → the paper's 8-bit values, divided by 255.

    ``x / 10000 · 255``, rounded and clipped to [0, 255] (no wrap-around), then / 255: values in [0, 1].
    """
    return (reflectance / 10000 * 255).round().clamp(0, 255) / 255
