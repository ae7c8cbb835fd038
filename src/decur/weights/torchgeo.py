"""decur exports as torchgeo weights: a ``WeightsEnum`` member built from a card (optional extra ``torchgeo``).

``torchgeo.models.resnet50(weights=w)`` and torchgeo's trainers (``ClassificationTask(model="resnet50",
weights=w, in_channels=13, ...)``) accept the member: its ``url`` points at the export's ``.pth`` (``file://``;
read locally, never downloaded), ``meta`` carries torchgeo's keys (``dataset``, ``in_chans``, ``model``,
``ssl_method``, ``bands``) plus decur's card, and ``transforms`` is the card's input transform as a module that
torchgeo applies to an image tensor (or to a sample dict's ``image``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decur.data.transforms import InputTransform
from decur.weights.formats import CARD, WeightsError, card_json


class CardTransform(nn.Module):
    """A card's input transform as a module: ``N x C x H x W`` (or ``{"image": ...}``) of raw values → input."""

    def __init__(self, transform: InputTransform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, x: Tensor | dict[str, Any]) -> Tensor | dict[str, Any]:
        """The transformed tensor, or the sample dict with its ``image`` transformed."""
        if isinstance(x, dict):
            return {**x, "image": self.transform(x["image"])}
        return self.transform(x)


def torchgeo_weights(export: str | Path, modality: str) -> Any:
    """The torchgeo ``WeightsEnum`` member of one modality of a decur export folder.

    Raises:
        WeightsError: Not an export folder, no such modality, or no input transform on the card.
        ImportError: torchgeo / torchvision's weights API is not installed (``pip install decur[torchgeo]``).

    """
    from torchvision.models._api import Weights, WeightsEnum

    folder = Path(export)
    card = card_json(folder / CARD if folder.is_dir() else folder)
    folder = folder if folder.is_dir() else folder.parent
    entry = card.get("modalities", {}).get(modality)
    if entry is None:
        raise WeightsError(f"{folder}: no modality {modality!r} (it has {list(card.get('modalities', {}))})")
    if not isinstance(entry.get("transform"), dict):
        raise WeightsError(f"{folder}: the card records no input transform for {modality!r}")
    transform = InputTransform.from_card(entry["transform"])
    pth = (folder / entry["weights_pth"]).resolve()

    class DecurWeights(WeightsEnum):
        """Weights of a decur export, read from the local ``.pth``."""

        def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
            url = str(self.value.url)
            if url.startswith("file://"):
                return dict(torch.load(url.removeprefix("file://"), map_location="cpu", weights_only=True))
            return dict(super().get_state_dict(*args, **kwargs))

    meta = {
        "dataset": card.get("dataset"),
        "in_chans": int(entry["in_chans"]),
        "model": card["arch"],
        "publication": "https://arxiv.org/abs/2309.05300",
        "repo": "decur",
        "ssl_method": card.get("method", "decur"),
        "bands": transform.bands,
        "decur_card": card,
    }
    member = Weights(url=f"file://{pth}", transforms=CardTransform(transform), meta=meta)
    enum = DecurWeights("DecurWeights", {modality.upper(): member})
    return enum[modality.upper()]
