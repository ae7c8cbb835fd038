"""Crops taken per sample, at each image's own size, before batching: datasets of mixed image sizes.

SUN-RGBD's 10,335 pairs come in several sizes (530 x 730, 427 x 561, 441 x 591, 480 x 640, ...), which no batch can
hold before cropping. Both wrappers draw their random geometry from the CPU generator inside ``__getitem__``; under
``decur.data.sampling.SeededDataset`` that generator is seeded per (seed, epoch, index), so the crops repeat
exactly after a resume and do not depend on the number of loader workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from decur.geometry import PRESETS, Geometry, ViewSpec, as_float, resized_crop, sample_geometry


def _crop_one(x: Tensor, g: Geometry, size: int | tuple[int, int], mode: str = "bilinear") -> Tensor:
    """One sample ``C x H x W`` (or a label map ``H x W``) cropped by the one-sample geometry ``g``."""
    if x.ndim == 2:  # a label map: nearest, no class blended
        return resized_crop(x[None, None].float(), g, size, mode="nearest")[0, 0].to(x.dtype)
    return resized_crop(as_float(x)[None], g, size, mode=mode)[0]


class CroppedViews(Dataset[dict[str, Tensor]]):
    """Pretraining samples as ``V x C x S x S`` views per modality, each a random resized crop of its own image.

    The geometry follows the training module's rules: with ``share_crop`` the modalities' first views share one
    box and one flip draw (the first modality's preset), every other view draws its own with its modality's preset.
    The module then runs only the photometric ops (``ViewPipeline(..., cropped=True)``).

    Args:
        dataset: Samples ``{modality: C x H x W}``; sizes may differ between samples, not between modalities.
        presets: Modality → augmentation preset (flip probabilities).
        crop_size: Output side ``S``.
        crop_scale: Area range of the crops.
        share_crop: Share the first view's geometry across modalities.
        views: Views per modality.

    """

    def __init__(
        self,
        dataset: Dataset[dict[str, Tensor]],
        presets: dict[str, str],
        crop_size: int,
        crop_scale: tuple[float, float],
        share_crop: bool = True,
        views: int = 2,
    ) -> None:
        self.dataset, self.crop_size, self.crop_scale = dataset, crop_size, crop_scale
        self.specs: dict[str, ViewSpec] = {m: PRESETS[p] for m, p in presets.items()}
        self.share_crop, self.views = share_crop, views
        self.stats = getattr(dataset, "stats", None)
        self.root = getattr(dataset, "root", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = self.dataset[index]
        names = list(self.specs)
        shared = sample_geometry(1, self.crop_scale, self.specs[names[0]]) if self.share_crop else None
        out: dict[str, Tensor] = {}
        for m in names:
            crops = []
            for v in range(self.views):
                g = shared if v == 0 and shared is not None else sample_geometry(1, self.crop_scale, self.specs[m])
                crops.append(_crop_one(sample[m], g, self.crop_size))
            out[m] = torch.stack(crops)
        out["views_cropped"] = torch.tensor(True)
        return out


class TrainCrop(Dataset[dict[str, Tensor]]):
    """Transfer training augmentation: one random resized crop + horizontal flip for every modality and the mask.

    The geometry is identical for all images and the label map (nearest for the map).

    Classification (BigEarthNet, the paper): scale 0.8-1, output at the image's size. Segmentation: scale 0.2-1,
    output ``size`` (fixed-size training crops of mixed-size images).

    Args:
        dataset: Samples ``{modality: C x H x W, "label" or "mask": ...}``.
        keys: The image keys to crop (the modalities used).
        scale: Area range of the crop.
        size: Output side or ``(height, width)``; ``None`` keeps each image's own side (square images).
        hflip: Probability of a horizontal flip.

    """

    def __init__(
        self,
        dataset: Dataset[dict[str, Tensor]],
        keys: Sequence[str],
        scale: tuple[float, float],
        size: int | tuple[int, int] | None = None,
        hflip: float = 0.5,
    ) -> None:
        self.dataset, self.keys, self.scale, self.size = dataset, list(keys), scale, size
        self.spec = ViewSpec(hflip=hflip)
        self.root = getattr(dataset, "root", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = dict(self.dataset[index])
        g = sample_geometry(1, self.scale, self.spec)
        size = self.size if self.size is not None else int(sample[self.keys[0]].shape[-1])
        for key in [*self.keys, "mask"]:
            if key in sample:
                sample[key] = _crop_one(sample[key], g, size)
        return sample


class ScaleCrop(Dataset[dict[str, Tensor]]):
    """SegFormer / CMX training augmentation: random rescale, random crop (padded where too small), horizontal flip.

    The scale is drawn uniformly from ``scales`` (CMX: 0.5-1.75); the image is resized by it (bilinear, the mask
    nearest), a random window of ``size`` is cut out, and where the rescaled image is smaller than the window it is
    padded: images with their ``fill`` value (the dataset mean, which standardises to 0 as CMX's zero padding of
    normalised images), the mask with ``ignore_index`` (those pixels carry no loss). Geometry is shared by every
    modality and the mask.

    Args:
        dataset: Samples ``{modality: C x H x W, "mask": H x W}``.
        keys: The image keys (the modalities used).
        scales: Scale factors to draw from.
        size: Window ``(height, width)``.
        fill: Modality → per-band padding value.
        ignore_index: Mask value of padded pixels.
        hflip: Probability of a horizontal flip.

    """

    def __init__(
        self,
        dataset: Dataset[dict[str, Tensor]],
        keys: Sequence[str],
        scales: Sequence[float],
        size: tuple[int, int],
        fill: Mapping[str, Sequence[float]],
        ignore_index: int,
        hflip: float = 0.5,
    ) -> None:
        self.dataset, self.keys, self.scales, self.size = dataset, list(keys), list(scales), size
        self.fill, self.ignore_index, self.hflip = fill, ignore_index, hflip
        self.root = getattr(dataset, "root", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = dict(self.dataset[index])
        scale = self.scales[int(torch.randint(len(self.scales), ()))]
        h, w = sample[self.keys[0]].shape[-2:]
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        ch, cw = self.size
        top = int(torch.randint(max(sh - ch, 0) + 1, ()))
        left = int(torch.randint(max(sw - cw, 0) + 1, ()))
        flip = bool(torch.rand(()) < self.hflip)
        for key in [*self.keys, "mask"]:
            if key not in sample:
                continue
            x = sample[key]
            if key == "mask":
                resized = F.interpolate(x[None, None].float(), size=(sh, sw), mode="nearest")[0].to(x.dtype)
                out = torch.full((1, ch, cw), self.ignore_index, dtype=x.dtype)
            else:
                resized = F.interpolate(as_float(x)[None], size=(sh, sw), mode="bilinear", antialias=scale < 1)[0]
                out = torch.tensor(list(self.fill[key]), dtype=resized.dtype)[:, None, None].repeat(1, ch, cw)
            window = resized[:, top : top + ch, left : left + cw]
            out[:, : window.shape[1], : window.shape[2]] = window
            if flip:
                out = out.flip(-1)
            sample[key] = out[0] if key == "mask" else out
        return sample
