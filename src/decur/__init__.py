"""decur: multimodal self-supervised learning that decouples common and modality-unique representations."""

from decur.losses import cross_correlation, decur_loss

__all__ = ["cross_correlation", "decur_loss"]
__version__ = "0.1.0"
