"""Datasets (no augmentation here: they return model-ready tensors keyed by modality)."""

from decur.data.bigearthnet import BigEarthNetMM
from decur.data.errors import DatasetError
from decur.data.ssl4eo_s12 import SSL4EOS12
from decur.data.synthetic import SyntheticMultimodal

__all__ = ["SSL4EOS12", "BigEarthNetMM", "DatasetError", "SyntheticMultimodal"]
