"""Evaluation of pretrained encoders: transfer (classification, segmentation), probes, metrics, experiments."""

from decur.evaluate.metrics import label_subset, segmentation_scores

__all__ = ["label_subset", "segmentation_scores"]
