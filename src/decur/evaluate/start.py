"""Where a transfer starts: the encoders (pretrained in any accepted layout, or random) and their input transforms.

The transform is applied per sample in the loader, before the training crops, to every split alike: its steps
work on whole images (the release's S1 quantile clip and decur's outlier cut look at the full patch), and the
transfer model then sees exactly what the encoders were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn
from torch.utils.data import Dataset

from decur.config import ConfigError
from decur.data.transforms import InputTransform, image_transform, sentinel_transform
from decur.datasets import dataset_spec
from decur.errors import DecurError
from decur.models import create_encoder
from decur.models.encoder import vit_patch
from decur.weights import Pretrained, WeightsError, read_pretrained
from decur.weights.inputs import after_reader, default_transforms

if TYPE_CHECKING:
    from decur.evaluate.transfer import TransferConfig, TransferData

FIELD = "transfer config field `input_transform`"


@dataclass
class Start:
    """The starting encoders of a transfer run and the transform of each used modality."""

    arch: str
    bands: dict[str, int]
    transforms: dict[str, InputTransform]
    pretrained: Pretrained | None = None
    notes: list[str] = field(default_factory=list)
    """What the user should know about the choice (a rule other than the one the weights were trained with)."""

    def encoders(self) -> dict[str, nn.Module]:
        """Fresh encoders (one per used modality), loaded with the pretrained weights strictly, or random."""
        if self.pretrained is None:
            return {m: create_encoder(self.arch, c) for m, c in self.bands.items()}
        try:
            return {m: self.pretrained.encoder(m) for m in self.bands}
        except WeightsError as err:
            raise ConfigError(f"transfer config field `pretrained`: {err}") from None

    def describe(self) -> str:
        """One line per modality: the rule and its steps (printed at the start of a run)."""
        lines = [
            f"input transform of {m}: {t.rule} ({t.units} -> " + " -> ".join(s["op"] for s in t.steps) + ")"
            for m, t in self.transforms.items()
        ]
        return "\n".join(lines + self.notes)


def starting_point(run: TransferConfig, data: TransferData) -> Start:
    """The encoders and input transforms of ``run`` on ``data`` (validated; one-line errors).

    Raises:
        ConfigError: Weights that cannot be read or placed, modalities the weights lack, a transform that cannot
            start from the dataset's values.

    """
    use = run.modalities or list(data.bands)
    imagenet = dataset_spec(run.dataset).imagenet
    if run.pretrained:
        try:
            pre = read_pretrained(run.pretrained, run.pretrained_modalities, data.bands)
        except DecurError as err:
            raise ConfigError(f"transfer config field `pretrained`: {err}") from None
        missing = sorted(set(use) - set(pre.encoders))
        if missing:
            raise ConfigError(
                f"transfer config field `modalities`: {missing} not among the encoders of "
                f"{run.pretrained} ({pre.modalities}); name them with pretrained_modalities"
            )
        wrong = {m: (pre.bands[m], data.bands[m]) for m in use if pre.bands[m] != data.bands[m]}
        if wrong:
            raise ConfigError(f"transfer config field `pretrained`: band counts (weights, data) differ: {wrong}")
        try:
            chosen = default_transforms(pre, run.input_transform, FIELD, data.stats, imagenet)
        except WeightsError as err:
            raise ConfigError(str(err)) from None
        arch, bands = pre.arch, {m: pre.bands[m] for m in use}
        notes = [
            f"note: {m}'s weights were trained with the {pre.transforms[m].rule} transform; input_transform "
            f"{run.input_transform} replaces it (leave input_transform out to use the weights' own)"
            for m in use
            if m in pre.transforms and pre.transforms[m].rule != chosen[m].rule
        ]
    else:
        pre, arch, bands, notes = None, run.arch, {m: data.bands[m] for m in use}, []
        chosen = {m: _random_init_transform(run, data, m, imagenet) for m in use}
    if getattr(run, "task", "segmentation") == "segmentation":  # classification feeds the images whole
        _check_patch(arch, run.crop_size or getattr(data, "crop_size", None))
    try:
        transforms = {m: after_reader(chosen[m], m, data.raw, FIELD) for m in use}
    except WeightsError as err:  # its message names the field already
        raise ConfigError(str(err)) from None
    except ValueError as err:
        raise ConfigError(f"{FIELD}: {err}") from None
    return Start(arch, bands, transforms, pre, notes)


def _check_patch(arch: str, crop: int | list[int] | None) -> None:
    """A ViT sees whole patches only: every side of the training crop must be a multiple of its patch."""
    patch = vit_patch(arch)
    sides = [crop] if isinstance(crop, int) else list(crop or [])
    if patch is None:
        return
    if any(s % patch for s in sides):
        fix = [patch * max(1, round(s / patch)) for s in sides]
        raise ConfigError(
            f"transfer config field `crop_size`: {crop} is not a multiple of the {arch} patch ({patch} px); "
            f"use e.g. {fix[0] if len(fix) == 1 else fix}"
        )


def _random_init_transform(run: TransferConfig, data: TransferData, m: str, imagenet: bool) -> InputTransform:
    rule = run.input_transform or "decur"
    try:
        if data.raw:
            return sentinel_transform(rule, m, data.bands[m], data.stats[m] if rule == "decur" else None)
        return image_transform(rule, m, data.bands[m], data.stats[m], imagenet)
    except ValueError as err:
        raise ConfigError(f"{FIELD}: {err}") from None


class Transformed(Dataset[dict[str, Tensor]]):
    """A dataset whose modality images go through their input transforms (other keys pass unchanged)."""

    def __init__(self, dataset: Dataset[dict[str, Tensor]], transforms: dict[str, InputTransform]) -> None:
        self.dataset, self.transforms = dataset, transforms

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = self.dataset[index]
        return {k: self.transforms[k](v) if k in self.transforms else v for k, v in sample.items()}
