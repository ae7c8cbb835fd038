"""Per-modality view pipelines, batched, on the training device, for any channel count.

The paper's pipelines (Sec. 4 / Appendix):
  - optical / RGB: BYOL — random resized crop, horizontal flip, colour jitter (p 0.8), grayscale (p 0.2),
    Gaussian blur (p 1.0 view 1 / 0.1 view 2), solarisation (p 0 view 1 / 0.2 view 2). On more than 3 bands the
    jitter is multispectral-safe: brightness and contrast only (hue and saturation are RGB notions), and
    "grayscale" replaces every band by the band mean.
  - SAR: random resized crop, grayscale (p 0.2), Gaussian blur (p 0.5), horizontal and vertical flips.
  - DEM: random resized crop, horizontal and vertical flips.
  - HHA: random resized crop, horizontal flip.
Photometric ops expect the modality's values in [0, 1] (optical reflectance /10000 or 8-bit /255); every
pipeline ends with per-band standardisation ``(x − mean) / std``.

Crops are sampled as boxes in *relative* coordinates (``Geometry``), so two modalities of different pixel
sizes can share one crop (the ``share_crop`` option). Crops are bilinear for the whole batch at once; where a crop
is shrunk 2x or more, several points are averaged per output pixel (anti-aliasing, ``roi_align``).
"""

from __future__ import annotations

import math

import kornia.enhance
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decur.geometry import PRESETS, Geometry, ViewSpec, as_float, on_subset, resized_crop, sample_geometry

__all__ = ["PRESETS", "Geometry", "ViewPipeline", "ViewSpec", "as_float", "resized_crop", "sample_geometry"]


class ViewPipeline(nn.Module):
    """Augments a batch ``N x C x H x W`` of one modality into one view ``N x C x S x S``.

    Args:
        preset: One of ``PRESETS``.
        bands: Channel count ``C``.
        crop_size: Output side ``S``.
        crop_scale: Area range of the random resized crop.
        mean: Per-band mean for the final standardisation.
        std: Per-band standard deviation.

    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        preset: str,
        bands: int,
        crop_size: int,
        crop_scale: tuple[float, float],
        mean: list[float],
        std: list[float],
    ) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {list(PRESETS)}")
        if len(mean) != bands or len(std) != bands:
            raise ValueError(f"{preset}: need {bands} mean/std values, got {len(mean)} and {len(std)}")
        self.preset, self.spec, self.bands = preset, PRESETS[preset], bands
        self.crop_size, self.crop_scale = crop_size, crop_scale
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def sample_geometry(self, n: int) -> Geometry:
        """Crop boxes and flips for ``n`` samples with this preset's probabilities."""
        return sample_geometry(n, self.crop_scale, self.spec)

    @torch.no_grad()
    def forward(self, x: Tensor, view: int = 0, geometry: Geometry | None = None, cropped: bool = False) -> Tensor:
        """One augmented, standardised view; ``view`` (0 or 1) selects the asymmetric probabilities.

        ``cropped=True``: ``x`` already holds this view's resized crops (flipped), taken per sample at each image's
        own size (``decur.data.crops.CroppedViews``, for datasets of mixed image sizes); only the photometric
        ops run here.
        """
        if x.ndim != 4 or x.shape[1] != self.bands:
            raise ValueError(f"{self.preset} pipeline expects N x {self.bands} x H x W, got {tuple(x.shape)}")
        x = as_float(x)
        n = x.shape[0]
        if cropped:
            if x.shape[-2:] != (self.crop_size, self.crop_size):
                raise ValueError(f"{self.preset}: pre-cropped views must be {self.crop_size} px, got {tuple(x.shape)}")
            x = x.clone()  # the ops below write in place
        else:
            geometry = geometry if geometry is not None else self.sample_geometry(n)
            x = resized_crop(x, geometry, self.crop_size)  # a new tensor, already flipped: ops below write into it
        spec = self.spec
        x = on_subset(x, _chance(n, spec.jitter), self._color_jitter)
        x = on_subset(x, _chance(n, spec.grayscale), self._grayscale)
        x = on_subset(x, _chance(n, spec.blur[view]), self._blur)
        x = on_subset(x, _chance(n, spec.solarize[view]), _solarize)
        return x.sub_(self.mean).div_(self.std)

    def normalize(self, x: Tensor) -> Tensor:
        """Standardisation only: how evaluation images are prepared (never augmented)."""
        return (as_float(x) - self.mean) / self.std

    def _color_jitter(self, x: Tensor) -> Tensor:
        n, s = x.shape[0], self.spec
        bright = _uniform(n, 1 - s.brightness, 1 + s.brightness, x.device).view(-1, 1, 1, 1)
        contrast = _uniform(n, 1 - s.contrast, 1 + s.contrast, x.device).view(-1, 1, 1, 1)
        y = (x * bright).clamp_(0, 1)
        mean = self._gray(y).mean(dim=(1, 2, 3), keepdim=True)  # torchvision: contrast around the gray mean
        y = y.sub_(mean).mul_(contrast).add_(mean).clamp_(0, 1)
        if self.bands == 3:  # hue and saturation exist only for RGB
            sat = _uniform(n, 1 - s.saturation, 1 + s.saturation, x.device)
            hue = _uniform(n, -s.hue, s.hue, x.device) * 2 * math.pi
            y = kornia.enhance.adjust_saturation(y, sat)
            y = kornia.enhance.adjust_hue(y, hue).clamp(0, 1)
        return y

    def _blur(self, x: Tensor) -> Tensor:
        sigma = _uniform(x.shape[0], 0.1, 2.0, x.device) * self.crop_size / 224
        return _gaussian_blur(x, sigma.clamp_min(0.05), self.crop_size)

    def _gray(self, x: Tensor) -> Tensor:
        """``N x 1 x H x W`` luminance (RGB weights) or band mean (any other band count)."""
        if self.bands == 3:
            weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
            return (x * weights).sum(dim=1, keepdim=True)
        return x.mean(dim=1, keepdim=True)

    def _grayscale(self, x: Tensor) -> Tensor:
        return self._gray(x).expand_as(x).contiguous()  # writable: later ops may work in place


# Random parameters are drawn from the CPU generator whatever the device, so runs repeat across devices and the
# checkpointed RNG state covers them.
def _uniform(n: int, lo: float, hi: float, device: torch.device) -> Tensor:
    return torch.empty(n).uniform_(lo, hi).to(device)


def _chance(n: int, p: float) -> Tensor:
    return torch.rand(n) < p if p > 0 else torch.zeros(n, dtype=torch.bool)


def _solarize(x: Tensor) -> Tensor:
    """Invert values at or above 0.5 (``x if x < 0.5 else 1 - x``, i.e. ``0.5 - |x - 0.5|``), in place."""
    return x.sub_(0.5).abs_().neg_().add_(0.5)


def _gaussian_blur(x: Tensor, sigma: Tensor, size: int) -> Tensor:
    """Per-sample Gaussian blur with reflected borders, one depthwise convolution per pass.

    Small kernels (up to 7 x 7, crops up to 79 px) take one 2-D pass, larger ones two separable 1-D passes: on the
    CPU the 1 x k pass costs as much as the whole 5 x 5 kernel (56 px crops: 8.0 -> 5.0 ms per optical view), while
    from 9 taps on the separable form is as fast or faster (224 px, 23 taps: equal on the CPU, far cheaper on GPUs).
    """
    k = max(3, (size // 10) | 1)  # BYOL: kernel 23 for 224 px, i.e. about 10 % of the side, odd
    n, c, h, w = x.shape
    offsets = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma.to(x.dtype)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N C) x k
    y = F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="reflect")
    if k <= 7:
        y = F.conv2d(y, (kernel[:, :, None] * kernel[:, None, :]).view(n * c, 1, k, k), groups=n * c)
    else:
        y = F.conv2d(y, kernel.view(n * c, 1, 1, k), groups=n * c)
        y = F.conv2d(y, kernel.view(n * c, 1, k, 1), groups=n * c)
    return y.view(n, c, h, w)
