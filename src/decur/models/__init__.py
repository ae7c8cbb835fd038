"""Encoders, the multimodal pretraining model and the transfer models."""

from decur.models.cmx import CMX
from decur.models.encoder import create_encoder, encoder_width
from decur.models.heads import FCN, LateFusionClassifier, feature_encoder
from decur.models.mit import MIT_ARCHS, MiT, create_mit, is_mit
from decur.models.multimodal import MultimodalModel, projector

__all__ = [
    "CMX",
    "FCN",
    "MIT_ARCHS",
    "LateFusionClassifier",
    "MiT",
    "MultimodalModel",
    "create_encoder",
    "create_mit",
    "encoder_width",
    "feature_encoder",
    "is_mit",
    "projector",
]
