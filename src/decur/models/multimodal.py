"""The multimodal model: one encoder and one projector per modality, keyed by modality name."""

from __future__ import annotations

import itertools
from typing import cast

from torch import Tensor, nn

from decur.models.encoder import create_encoder


def projector(in_dim: int, widths: list[int]) -> nn.Sequential:
    """Barlow Twins projector: (Linear-BN-ReLU) for every width but the last, then a Linear.

    ``widths=[]`` gives the identity (embeddings are the backbone features).
    """
    layers: list[nn.Module] = []
    dims = [in_dim, *widths]
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class MultimodalModel(nn.Module):
    """Encoders E_m and projectors P_m for every modality m.

    Args:
        bands: Band count per modality name, in the order the modalities are used.
        arch: timm architecture of every encoder.
        projector_widths: Projector layer widths (paper: ``[8192, 8192, 8192]``).
        share_projector: Reference-code behaviour: all modalities use one projector module.
        head_dim: A linear layer (with bias) from the pooled feature to this width before the projector, the
            reference code's MiT head (512 → 2048); ``None``: none.
        vit_pool: A plain ViT's pooled feature (``decur.models.encoder.VIT_POOLS``).

    """

    def __init__(
        self,
        bands: dict[str, int],
        arch: str,
        projector_widths: list[int],
        share_projector: bool = False,
        head_dim: int | None = None,
        vit_pool: str = "token",
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({m: create_encoder(arch, c, vit_pool) for m, c in bands.items()})
        width = int(cast(int, next(iter(self.encoders.values())).num_features))

        def make() -> nn.Sequential:
            if head_dim is None:
                return projector(width, projector_widths)
            return nn.Sequential(nn.Linear(width, head_dim), *projector(head_dim, projector_widths))

        shared = make() if share_projector else None
        self.projectors = nn.ModuleDict({m: shared if shared is not None else make() for m in bands})
        self.arch, self.head_dim, self.projector_widths = arch, head_dim, list(projector_widths)
        self.vit_pool = vit_pool
        self.feature_dim = width

    @property
    def modalities(self) -> list[str]:
        """Modality names, in order."""
        return list(self.encoders.keys())

    def features(self, modality: str, x: Tensor) -> Tensor:
        """Pooled backbone features ``N x D`` of one modality."""
        return self.encoders[modality](x)

    def embed(self, modality: str, x: Tensor) -> Tensor:
        """Projector output ``N x K`` of one modality."""
        return self.projectors[modality](self.encoders[modality](x))

    def forward(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        """Embeddings of every modality present in ``x``."""
        return {m: self.embed(m, t) for m, t in x.items()}
