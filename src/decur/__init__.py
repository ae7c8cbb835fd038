"""decur: multimodal self-supervised learning that decouples common and modality-unique representations."""

from typing import Any

__all__ = ["cross_correlation", "decur_loss"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The paper's objective, loaded on first use (``import decur`` and ``decur --help`` import no torch)."""
    if name in __all__:
        from decur import losses

        return getattr(losses, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
