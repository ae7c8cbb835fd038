"""The built-in synthetic SAR-optical dataset: procedural scenes whose shared and unique factors are known.

Generative model of one sample (everything is a deterministic function of ``(seed, index)``):

*Shared by both modalities* — a land-cover layout. A handful of seed points, each with one of ``num_classes``
classes, tile the scene as a Voronoi partition whose borders are warped by a smooth random field. The layout
gives the segmentation ``mask``, the multi-hot ``label`` (classes covering at least 1 % of the scene) and the
shared factors: the fraction of the scene each class covers.

*Optical only* (``optical``, ``optical_bands`` bands, reflectance in [0, 1], Sentinel-2 band wavelengths):
each class has a fixed smooth spectrum; on top of it
  - ``phenology`` in [0, 1] scales the vegetation response — red-edge and NIR up, red down — in proportion to
    each class's greenness (a band-ratio effect, so brightness/contrast jitter does not erase it);
  - ``haze`` in [0, 1] adds wavelength-dependent path radiance (strong in blue, none in SWIR) and lowers contrast.

*SAR only* (``sar``, ``sar_bands`` channels VV, VH, ..., backscatter in dB with multiplicative speckle):
each class has a fixed backscatter; on top of it
  - ``soil_moisture`` in [0, 1] raises backscatter by up to 6 dB (VV) / 4 dB (VH);
  - ``roughness`` in [0, 1] raises the cross-polarised ratio by up to 4 dB and adds a spatially correlated
    surface texture of up to 3 dB amplitude at a scale of 4-8 pixels.
Speckle is 4-look gamma-distributed intensity noise, applied before conversion to dB.

*Elevation only* (``elevation``, optional third modality, 1 band, metres; ``elevation=True``): each class has a
fixed height above the terrain (buildings, forest canopy, water at 0), smoothed at the class borders, on top of
  - ``relief`` in [0, 1]: the amplitude (up to 40 m) of smooth rolling terrain at a scale of 3-5 cells;
  - ``tilt`` in [0, 1]: a regional slope of up to 3 m per pixel in a random direction (the direction is nuisance:
    flips change it, the magnitude survives every augmentation).
Its draws follow the optical and SAR ones, so the two-modality samples are the same with or without it.

*How much is unique* (``unique_factors``, ``unique_strength``): every modality has ``unique_factors`` factors of
its own (2 by default: the named ones above). With fewer, the named ones are dropped from the end (0: the modality
sees only the shared layout); each one beyond two is an extra texture: a smooth field at its own scale (2-9 cells)
whose amplitude is the factor, with its own band pattern (fixed per world). ``unique_strength`` scales every unique
effect (0: present in the factor list, invisible in the images). The defaults reproduce the original samples
exactly; the extra draws follow all others.

The unique factors are global per scene and carried by band ratios, absolute levels and texture, which survive
the paper's augmentations (crops, flips, brightness/contrast, blur) in most views. ``factors`` holds the ground
truth in the order of ``FACTOR_GROUPS``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from decur.datasets import UNIQUE_FACTORS

S2_WAVELENGTHS_NM = (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190)


class SyntheticMultimodal(Dataset[dict[str, Tensor]]):
    """Procedural paired optical/SAR (and optionally elevation) scenes with known shared and unique factors.

    Args:
        length: Number of samples.
        image_size: Side of the square images in pixels.
        num_classes: Number of land-cover classes (shared factors).
        optical_bands: Bands of the optical modality (13 follows Sentinel-2 L1C wavelengths).
        sar_bands: Channels of the SAR modality (VV, VH, then alternating).
        seed: Scene seed; the class spectra and backscatter depend on ``signature_seed`` only, so datasets with
            different seeds are draws from the same world.
        signature_seed: Seed of the per-class spectra and backscatter.
        elevation: Add the third modality ``elevation`` (1 band, metres) and its factors ``relief``, ``tilt``.
        unique_factors: Factors seen by one modality only, per modality (>= 0; 2: the named ones).
        unique_strength: Scale of every unique effect (>= 0; 1: as documented, 0: none visible).

    Returns (per sample):
        ``{"optical": C_o x H x W float, "sar": C_s x H x W float (dB), ["elevation": 1 x H x W float (m),]
        "label": num_classes float multi-hot, "mask": H x W int64, "factors": F float}``.

    """

    def __init__(
        self,
        length: int = 4096,
        image_size: int = 64,
        num_classes: int = 8,
        optical_bands: int = 13,
        sar_bands: int = 2,
        seed: int = 0,
        signature_seed: int = 1234,
        elevation: bool = False,
        unique_factors: int = 2,
        unique_strength: float = 1.0,
    ) -> None:
        if length < 1 or image_size < 8 or num_classes < 2 or optical_bands < 1 or sar_bands < 1:
            raise ValueError(
                "SyntheticMultimodal needs length >= 1, image_size >= 8, num_classes >= 2 and >= 1 band per "
                f"modality; got {length=}, {image_size=}, {num_classes=}, {optical_bands=}, {sar_bands=}"
            )
        if unique_factors < 0 or not unique_strength >= 0:
            raise ValueError(f"SyntheticMultimodal needs unique_factors >= 0 and unique_strength >= 0, got "
                             f"{unique_factors=}, {unique_strength=}")  # fmt: skip
        self.unique_factors, self.unique_strength = unique_factors, float(unique_strength)
        self.length, self.size, self.num_classes, self.seed = length, image_size, num_classes, seed
        self.optical_bands, self.sar_bands = optical_bands, sar_bands
        g = torch.Generator().manual_seed(signature_seed)
        wl = _wavelengths(optical_bands)
        self.wavelengths = wl
        # Smooth class spectra: a base level plus a vegetation-like red edge weighted by greenness.
        self.greenness = torch.rand(num_classes, generator=g)
        base = 0.05 + 0.25 * torch.rand(num_classes, 1, generator=g)
        slope = 0.1 * (torch.rand(num_classes, 1, generator=g) - 0.3) * (wl / 1000)
        red_edge = torch.sigmoid((wl - 715) / 20)
        swir_drop = torch.sigmoid((wl - 1300) / 50)
        veg = self.greenness[:, None] * (0.35 * red_edge * (1 - 0.6 * swir_drop) - 0.04 * (wl > 600).float())
        self.spectra = (base + slope + veg).clamp(0.01, 0.9)  # num_classes x bands
        self._veg_bands = red_edge * (1 - swir_drop)  # where phenology acts (multiplicatively)
        self._red_band = torch.exp(-(((wl - 665) / 40) ** 2))
        self._haze_bands = (443 / wl) ** 4 * (wl < 1300).float()
        vv = -18 + 12 * torch.rand(num_classes, generator=g)
        cross = 6 + 4 * torch.rand(num_classes, generator=g)
        self.backscatter = torch.stack([vv - (i % 2) * cross for i in range(sar_bands)], dim=1)  # dB
        self.moisture_response = 0.5 + 0.5 * torch.rand(num_classes, generator=g)
        self.elevation = elevation
        self.class_height = 25 * torch.rand(num_classes, generator=g) ** 2  # drawn last: the rest is unchanged
        extra = max(0, unique_factors - 2)  # per extra factor and modality: a band pattern and a texture scale
        self._extra_patterns = {
            m: torch.rand(extra, b, generator=g) + 0.5 for m, b in self.bands.items()
        }  # fmt: skip
        self._extra_cells = {m: torch.randint(2, 10, (extra,), generator=g).tolist() for m in self.bands}

    @property
    def modalities(self) -> list[str]:
        """The modalities of a sample, in order."""
        return ["optical", "sar", "elevation"] if self.elevation else ["optical", "sar"]

    @property
    def factor_names(self) -> list[str]:
        """Names of the entries of ``factors``: class fractions, then the unique factors."""
        shared = [f"class_{c}_fraction" for c in range(self.num_classes)]
        return shared + [f for m in self.modalities for f in self._unique_names(m)]

    def _unique_names(self, modality: str) -> list[str]:
        named = list(UNIQUE_FACTORS[modality])
        extra = [f"{modality}_extra_{j + 1}" for j in range(self.unique_factors - len(named))]
        return (named + extra)[: self.unique_factors]

    @property
    def factor_groups(self) -> dict[str, list[int]]:
        """Indices into ``factors`` of the shared factors and of each modality's unique factors."""
        c, u = self.num_classes, self.unique_factors
        groups = {"shared": list(range(c))}
        for i, m in enumerate(self.modalities):
            groups[m] = list(range(c + u * i, c + u * (i + 1)))
        return groups

    @property
    def unique_factor_bands(self) -> Tensor:
        """Per optical band, how strongly the optical-only factors act there (haze + phenology), in [0, 1]."""
        weight = self._haze_bands / self._haze_bands.max() + (0.8 * self._veg_bands + 0.6 * self._red_band)
        return weight / weight.max()

    @property
    def bands(self) -> dict[str, int]:
        """Band count per modality."""
        bands = {"optical": self.optical_bands, "sar": self.sar_bands}
        return bands | ({"elevation": 1} if self.elevation else {})

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[str, None]:
        """Sample ``index``'s id (its scene number) and no georeferenced file (``decur embed``)."""
        return f"{index:07d}", None

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} samples")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        mask = self._layout(g)
        onehot = F.one_hot(mask, self.num_classes).permute(2, 0, 1).float()  # classes x H x W
        fractions = onehot.mean(dim=(1, 2))
        named = min(self.unique_factors, 2)
        keep = [1.0] * named + [0.0] * (2 - named)  # the named factors this world has (0: drawn, not shown)
        haze, phenology, moisture, roughness = torch.rand(4, generator=g).tolist()
        k = self.unique_strength
        optical = self._optical(onehot, k * keep[0] * haze, k * keep[1] * phenology + 0.5 * (1 - k * keep[1]), g)
        sar = self._sar(onehot, k * keep[0] * moisture, k * keep[1] * roughness, g)
        unique = {"optical": [haze, phenology][:named], "sar": [moisture, roughness][:named]}
        sample = {"optical": optical, "sar": sar, "label": (fractions >= 0.01).float(), "mask": mask}
        if self.elevation:
            relief, tilt = torch.rand(2, generator=g).tolist()
            sample["elevation"] = self._elevation(onehot, k * keep[0] * relief, k * keep[1] * tilt, g)
            unique["elevation"] = [relief, tilt][:named]
        for m in self.modalities:  # extra unique factors: drawn after everything else
            for j in range(self.unique_factors - 2):
                value = float(torch.rand(1, generator=g))
                sample[m] = self._extra(sample[m], m, j, k * value, g)
                unique[m].append(value)
        values = [v for m in self.modalities for v in unique[m]]
        return sample | {"factors": torch.cat([fractions, torch.tensor(values)])}

    # ----------------------------------------------------------------------------------------------------------

    def _layout(self, g: torch.Generator) -> Tensor:
        n = int(torch.randint(3, 8, (1,), generator=g))
        points = torch.rand(n, 2, generator=g)
        classes = torch.randint(0, self.num_classes, (n,), generator=g)
        s = self.size
        axis = (torch.arange(s) + 0.5) / s
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        warp = 0.12 * _smooth_noise(2, s, 4, g)
        coords = torch.stack([yy + warp[0], xx + warp[1]], dim=-1)  # H x W x 2
        dist = (coords[:, :, None, :] - points[None, None]).pow(2).sum(-1)
        return classes[dist.argmin(dim=-1)]

    def _optical(self, onehot: Tensor, haze: float, phenology: float, g: torch.Generator) -> Tensor:
        green = torch.einsum("chw,c->hw", onehot, self.greenness)
        pheno = 1 + (phenology - 0.5) * green * (
            0.8 * self._veg_bands[:, None, None] - 0.6 * self._red_band[:, None, None]
        )
        surface = torch.einsum("chw,cb->bhw", onehot, self.spectra) * pheno
        texture = (
            1 + 0.06 * _smooth_noise(1, self.size, 8, g) + 0.02 * torch.randn(1, self.size, self.size, generator=g)
        )
        surface = surface * texture
        image = surface * (1 - 0.35 * haze) + 0.3 * haze * self._haze_bands[:, None, None]
        return image.clamp(0, 1)

    def _sar(self, onehot: Tensor, moisture: float, roughness: float, g: torch.Generator) -> Tensor:
        db = torch.einsum("chw,cb->bhw", onehot, self.backscatter)
        response = torch.einsum("chw,c->hw", onehot, self.moisture_response)
        pol = torch.tensor([6.0 if i % 2 == 0 else 4.0 for i in range(self.sar_bands)])
        db = db + moisture * pol[:, None, None] * response
        cross = torch.tensor([float(i % 2) for i in range(self.sar_bands)])
        db = db + 4 * roughness * cross[:, None, None]
        scale = max(2, self.size // int(torch.randint(4, 9, (1,), generator=g)))
        db = db + 3 * roughness * _smooth_noise(1, self.size, scale, g)
        # 4-look speckle: the mean of 4 unit exponentials (torch.distributions takes no generator)
        uniform = torch.rand(4, self.sar_bands, self.size, self.size, generator=g).clamp_min(1e-12)
        speckle = -torch.log(uniform).mean(dim=0)
        return (10 * torch.log10(10 ** (db / 10) * speckle)).float()

    def _extra(self, image: Tensor, modality: str, j: int, amount: float, g: torch.Generator) -> Tensor:
        """Extra unique factor ``j``: a texture at its own scale and band pattern, amplitude ``amount``."""
        field = _smooth_noise(1, self.size, self._extra_cells[modality][j], g)
        pattern = self._extra_patterns[modality][j][:, None, None]
        if modality == "optical":  # reflectance: multiplicative, up to ±30 %
            return (image * (1 + 0.3 * amount * pattern * field)).clamp(0, 1)
        scale = 3.0 if modality == "sar" else 8.0  # dB or metres
        return image + scale * amount * pattern * field

    def _elevation(self, onehot: Tensor, relief: float, tilt: float, g: torch.Generator) -> Tensor:
        heights = torch.einsum("chw,c->hw", onehot, self.class_height)[None, None]
        heights = F.avg_pool2d(F.pad(heights, (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]  # soft borders
        terrain = 40 * relief * _smooth_noise(1, self.size, int(torch.randint(3, 6, (1,), generator=g)), g)
        angle = 2 * torch.pi * float(torch.rand(1, generator=g))
        axis = torch.arange(self.size, dtype=torch.float32) - (self.size - 1) / 2
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        ramp = 3 * tilt * (math.cos(angle) * xx + math.sin(angle) * yy)
        noise = 0.3 * torch.randn(1, self.size, self.size, generator=g)  # sensor noise, m
        return (heights + terrain + ramp + noise).float()


def _wavelengths(bands: int) -> Tensor:
    if bands == len(S2_WAVELENGTHS_NM):
        return torch.tensor(S2_WAVELENGTHS_NM, dtype=torch.float32)
    return torch.linspace(443, 2190, bands)


def _smooth_noise(channels: int, size: int, cells: int, g: torch.Generator) -> Tensor:
    """Zero-mean smooth random field: ``cells x cells`` Gaussian noise upsampled bicubically."""
    coarse = torch.randn(1, channels, cells + 1, cells + 1, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0]


def pretrain_dataset(cfg: Any, *, seed_offset: int = 0, length: int | None = None) -> SyntheticMultimodal:
    """The pretraining scenes of ``cfg`` (a ``PretrainConfig``): its modalities, sizes, seed and truth knobs.

    ``seed_offset`` is added to ``trainer.seed`` (evaluation draws fresh scenes of the same world); ``length``
    overrides ``data.length``.
    """
    d = cfg.data
    bands = {m.name: m.bands for m in d.modalities}
    return SyntheticMultimodal(
        length=length if length is not None else d.length,
        image_size=d.image_size,
        num_classes=d.num_classes,
        optical_bands=bands.get("optical", 13),
        sar_bands=bands.get("sar", 2),
        seed=cfg.trainer.seed + seed_offset,
        elevation="elevation" in bands,
        unique_factors=d.unique_factors,
        unique_strength=d.unique_strength,
    )


TRANSFER_SEEDS = {"train": 10_000, "test": 20_000}
"""Scene seeds of the transfer sets: other scenes than any pretraining run's (seeds < 10,000) draws."""


def transfer_dataset(run: Any, role: str, modalities: list[str]) -> SyntheticMultimodal:
    """The ``role`` (train/test) scenes of a transfer run (``train_samples``/``test_samples`` at ``image_size``)."""
    samples = run.train_samples if role == "train" else run.test_samples
    return SyntheticMultimodal(samples, run.image_size, seed=TRANSFER_SEEDS[role], elevation="elevation" in modalities)
