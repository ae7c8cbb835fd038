"""``MultimodalEncoder``: the joint encoder (``decur.models.joint.JointEncoder``) built from any weights decur reads.

The module itself lives in the models layer and knows no files or formats; this subclass adds the constructors that
read weights (``from_export``, ``from_pretrained``), so no import goes up a layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from decur.models.joint import JointEncoder, projector_from_state
from decur.weights.formats import WeightsError, read_pretrained
from decur.weights.inputs import default_transforms


class MultimodalEncoder(JointEncoder):
    """``decur.models.joint.JointEncoder`` with constructors from weights (the class users import)."""

    @classmethod
    def from_export(
        cls, source: str | Path, output: str = "pooled", modalities: list[str] | None = None, **kwargs: Any
    ) -> MultimodalEncoder:
        """The joint encoder of any weights decur reads (export folder, run, the release's joint checkpoint ...).

        Args:
            source: The weights (``decur.weights.read_pretrained``).
            output: One of ``decur.models.joint.OUTPUTS``.
            modalities: Names of the encoders in file order (release files: e.g. ``["s1", "s2"]``).
            **kwargs: ``stack_bands``, ``transforms`` (``True``: the card's), ``levels`` of ``JointEncoder``.

        """
        return joint_encoder(source, output, modalities, **kwargs)

    @classmethod
    def from_pretrained(cls, source: str | Path, output: str = "pooled", **kwargs: Any) -> MultimodalEncoder:
        """``from_export`` for any weights decur reads, by path or by name, loaded strictly.

        Names: ``hf:ORG/REPO`` (e.g. a folder ``decur export --hub`` wrote and pushed), a release short name,
        ``torchgeo:...`` (``decur.weights.hub``).
        """
        return cls.from_export(source, output, **kwargs)


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
