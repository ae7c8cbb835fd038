"""Crop geometry shared by the view pipelines (``decur.augment``) and the datasets' training crops.

Crops are sampled as boxes in *relative* coordinates (``Geometry``), so two modalities of different pixel sizes
can share one crop; ``resized_crop`` cuts them out of a batch at once. Pure tensor code with no dependency on
the rest of decur, so both the data loaders (CPU, in workers) and the training device may use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align


@dataclass
class Geometry:
    """Per-sample crop boxes ``(x0, y0, x1, y1)`` in [0, 1] and flip flags, on the CPU (tiny; moved when used)."""

    boxes: Tensor
    hflip: Tensor
    vflip: Tensor


@dataclass(frozen=True)
class ViewSpec:
    """Probabilities and strengths of one preset's ops; pairs are (view 1, view 2)."""

    hflip: float = 0.5
    vflip: float = 0.0
    jitter: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale: float = 0.0
    blur: tuple[float, float] = (0.0, 0.0)
    solarize: tuple[float, float] = (0.0, 0.0)


PRESETS: dict[str, ViewSpec] = {
    "optical": ViewSpec(jitter=0.8, grayscale=0.2, blur=(1.0, 0.1), solarize=(0.0, 0.2)),
    "rgb": ViewSpec(jitter=0.8, grayscale=0.2, blur=(1.0, 0.1), solarize=(0.0, 0.2)),
    "sar": ViewSpec(vflip=0.5, grayscale=0.2, blur=(0.5, 0.5)),
    "dem": ViewSpec(vflip=0.5),
    "hha": ViewSpec(),
    "none": ViewSpec(hflip=0.0),
}


def sample_geometry(n: int, scale: tuple[float, float], spec: ViewSpec) -> Geometry:
    """Random-resized-crop boxes (area ``scale`` of the image, aspect ratio in [3/4, 4/3]) and flip flags."""
    area = torch.empty(n).uniform_(*scale)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3))
    w = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)
    h = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    x0 = torch.rand(n) * (1 - w)
    y0 = torch.rand(n) * (1 - h)
    boxes = torch.stack([x0, y0, x0 + w, y0 + h], dim=1)
    return Geometry(boxes, torch.rand(n) < spec.hflip, torch.rand(n) < spec.vflip)


def resized_crop(x: Tensor, g: Geometry, size: int | tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resized crops of the boxes of ``g`` to ``size``, then the flips ``g`` asks for.

    Args:
        x: ``N x C x H x W`` batch (float; with ``mode="nearest"`` any label map cast to float).
        g: One box and flip pair per sample.
        size: Output side ``S`` (or ``(S_h, S_w)``).
        mode: ``bilinear`` for images, ``nearest`` for label maps (no class is ever blended).

    Bilinear crops shrunk less than 2x (all of them for 264 -> 224 px or 64 -> 56 px) take one bilinear sample per
    output pixel with ``grid_sample`` (parallel on every device); the others go through ``roi_align``, whose
    adaptive sampling averages ``ceil(crop side / output side)`` points per axis (anti-aliasing). Flips are
    applied to the flagged crops afterwards: a sampling grid read backwards would do the same, but makes
    ``grid_sample`` up to 2x slower on the CPU (5 ms of the default config's views).

    """
    n, _, h, w = x.shape
    sh, sw = (size, size) if isinstance(size, int) else size
    boxes = g.boxes.to(torch.float64) * torch.tensor([w, h, w, h], dtype=torch.float64)  # pixels, on the CPU
    rel = g.boxes.to(x.device, x.dtype)
    ys = (torch.arange(sh, device=x.device, dtype=x.dtype) + 0.5) / sh  # cell centres
    xs = (torch.arange(sw, device=x.device, dtype=x.dtype) + 0.5) / sw
    gx = (rel[:, 0:1] + (rel[:, 2:3] - rel[:, 0:1]) * xs) * 2 - 1  # grid_sample coordinates, align_corners=False
    gy = (rel[:, 1:2] + (rel[:, 3:4] - rel[:, 1:2]) * ys) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(n, sh, sw), gy[:, :, None].expand(n, sh, sw)], dim=-1)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    if mode == "bilinear":
        shrunk = ((boxes[:, 2] - boxes[:, 0] >= 2 * sw) | (boxes[:, 3] - boxes[:, 1] >= 2 * sh)).nonzero().flatten()
        if shrunk.numel():
            rois = torch.cat([shrunk[:, None].to(boxes), boxes[shrunk]], dim=1).to(x.device, x.dtype)
            out[shrunk.to(x.device)] = roi_align(x, rois, (sh, sw), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    out = on_subset(out, g.hflip, lambda v: v.flip(-1))
    return on_subset(out, g.vflip, lambda v: v.flip(-2))


def as_float(x: Tensor) -> Tensor:
    """float32 of a sample batch; ``uint8`` input is an 8-bit image and is scaled to [0, 1] (``x / 255``).

    Loaders may ship 8-bit bands as ``uint8`` (a quarter of float32's bytes between worker processes and to the
    device); the conversion happens here, on the training device.
    """
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def on_subset(x: Tensor, chosen: Tensor, op: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``op`` to the samples flagged in ``chosen`` (a CPU bool vector), computing nothing for the others."""
    index = chosen.nonzero().flatten()
    if index.numel() == 0:
        return x
    if index.numel() == x.shape[0]:
        return op(x)
    index = index.to(x.device)
    x[index] = op(x[index])
    return x
