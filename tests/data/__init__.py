"""Fixture generators in the real layouts of the datasets decur reads, and the GeoTIFF writer they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tif(path: Path, data: np.ndarray) -> None:
    """A ``bands x H x W`` array as a GeoTIFF (folders created), without georeference."""
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
               "dtype": data.dtype.name}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def release_joint_state(arch: str, channels: tuple[int, int] = (2, 13)) -> dict:
    """The DeCUR release's bare joint state dict: ``module.backbone_1.*`` (S1) and ``module.backbone_2.*`` (S2) of
    randomly initialised timm ``arch`` encoders with ``channels`` input bands."""
    import timm

    state = {}
    for i, c in enumerate(channels, start=1):
        net = timm.create_model(arch, in_chans=c, num_classes=0)
        state.update({f"module.backbone_{i}.{k}": v for k, v in net.state_dict().items()})
    return state
