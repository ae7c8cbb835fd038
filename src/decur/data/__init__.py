"""Datasets (no augmentation here: they return model-ready tensors keyed by modality)."""

from decur.data.synthetic import SyntheticMultimodal

__all__ = ["SyntheticMultimodal"]
