"""Datasets (no augmentation here: they return model-ready tensors keyed by modality).

Tensors are float32, except 8-bit bands, which may come as ``uint8`` (scaled to [0, 1] on the device by
``decur.augment.as_float``).
"""

from decur.data.bigearthnet import BigEarthNetMM, BigEarthNetV2
from decur.data.errors import DatasetError
from decur.data.geonrw import GeoNRW
from decur.data.paired import PairedFolders
from decur.data.rgbd import RGBDSegmentation
from decur.data.ssl4eo_s12 import SSL4EOS12
from decur.data.synthetic import SyntheticMultimodal

__all__ = [
    "SSL4EOS12",
    "BigEarthNetMM",
    "BigEarthNetV2",
    "DatasetError",
    "GeoNRW",
    "PairedFolders",
    "RGBDSegmentation",
    "SyntheticMultimodal",
]
