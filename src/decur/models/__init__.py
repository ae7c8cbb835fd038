"""Encoders and the multimodal model."""

from decur.models.encoder import create_encoder, encoder_width
from decur.models.multimodal import MultimodalModel, projector

__all__ = ["MultimodalModel", "create_encoder", "encoder_width", "projector"]
