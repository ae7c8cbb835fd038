"""Weights in and out: every published DeCUR layout read into one form, decur's export folder, torchgeo weights."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from decur.weights.export import export_backbone, import_weights, read_export, read_run, write_export
from decur.weights.formats import Pretrained, WeightsError, infer_arch, read_pretrained

__all__ = [
    "Pretrained",
    "WeightsError",
    "export_backbone",
    "import_weights",
    "infer_arch",
    "load_backbone",
    "read_export",
    "read_pretrained",
    "read_run",
    "write_export",
]


def load_backbone(
    source: str | Path, modality: str | None = None, names: list[str] | None = None, in_chans: int | None = None
) -> nn.Module:
    """One encoder (pooled features, ``num_classes=0``) from any accepted weights file, loaded strictly.

    Args:
        source: A decur run / export, the release's files, torchgeo's or any plain backbone state dict.
        modality: Which encoder of a file holding several (required then; a one-encoder file needs none).
        names: The encoders' modality names in file order (a joint release file: e.g. ``["s1", "s2"]``).
        in_chans: The band count the caller will feed; checked against the weights.

    Raises:
        WeightsError: Unreadable or ambiguous file, or weights that do not fit (the message says why).

    """
    pre = read_pretrained(source, names, None, field="names", single=modality or "encoder")
    if modality is None:
        if len(pre.encoders) != 1:
            raise WeightsError(f"{source}: holds encoders {pre.modalities}; say which with modality=")
        modality = pre.modalities[0]
    if in_chans is not None and pre.bands.get(modality, in_chans) != in_chans:
        raise WeightsError(f"{source}: the {modality} encoder takes {pre.bands[modality]} bands, not {in_chans}")
    return pre.encoder(modality)
