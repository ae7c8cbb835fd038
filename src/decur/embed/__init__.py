"""Decomposed embeddings as a product: ``decur embed`` writes them, ``decur search`` queries them.

``config`` (``EmbedConfig``, no torch), ``geo`` (footprints as GeoParquet geometries), ``run`` (the forward pass
on the engine, parts, resume, merge), ``search`` (exact cosine top-k, cross-modal, chunked).
"""

from __future__ import annotations

from decur.embed.config import EmbedConfig

__all__ = ["EmbedConfig"]
