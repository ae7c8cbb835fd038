"""Encoders, the multimodal pretraining model and the transfer models."""

from decur.models.encoder import create_encoder, encoder_width
from decur.models.heads import FCN, LateFusionClassifier, feature_encoder
from decur.models.multimodal import MultimodalModel, projector

__all__ = [
    "FCN",
    "LateFusionClassifier",
    "MultimodalModel",
    "create_encoder",
    "encoder_width",
    "feature_encoder",
    "projector",
]
