"""The joint encoder (``decur.models.joint.MultimodalEncoder``) built from any weights decur reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from decur.models.joint import MultimodalEncoder, projector_from_state
from decur.weights.formats import WeightsError, read_pretrained
from decur.weights.inputs import default_transforms


def joint_encoder(
    source: str | Path, output: str = "pooled", modalities: list[str] | None = None, **kwargs: Any
) -> MultimodalEncoder:
    """Every encoder of ``source`` (and its projectors, for ``output="common"``) as one ``MultimodalEncoder``.

    Args:
        source: The weights: export folder, run, the release's joint checkpoint, a Hub folder, or a name
            (``decur.weights.read_pretrained``).
        output: One of ``decur.models.joint.OUTPUTS``.
        modalities: Names of the encoders in file order (release files: e.g. ``["s1", "s2"]``).
        **kwargs: ``stack_bands``, ``transforms`` (``True``: the card's), ``levels`` of ``MultimodalEncoder``.

    Returns:
        The encoder in eval mode, every tensor loaded strictly.

    """
    pre = read_pretrained(source, modalities, None)
    encoders = {m: pre.encoder(m) for m in pre.modalities}
    projectors: dict[str, nn.Module] = {}
    if output == "common":
        projectors = {m: projector_from_state(state) for m, state in pre.projectors.items()}
    try:  # the recorded transforms, else the rule the weights were trained with (band names come with it)
        transforms = default_transforms(pre, None, "MultimodalEncoder")
    except WeightsError:
        transforms = pre.transforms
    names = {
        m: (transforms[m].bands if m in transforms else [f"{m}{i}" for i in range(c)]) for m, c in pre.bands.items()
    }
    if kwargs.get("transforms") is True:
        kwargs["transforms"] = transforms
    net = MultimodalEncoder(encoders, names, output, projectors, pre.common_dim, **kwargs)
    return net.eval()
