"""Objectives as modules: which views a method needs, and the state it owns (CLIP's temperature).

DeCUR, its ablations and cross-modal Barlow Twins train any number M >= 2 of modalities (the pairwise form of
``decur.losses.decur_multimodal``; ``method.pairs`` sums or averages the pairs). SimCLR, CLIP and VICReg are
two-modality methods here: each has several M-modal generalisations in the literature (one anchor modality, all
pairs, a shared positive set) and none is the paper's, so they refuse a third modality rather than pick one.

The training loop asks ``Objective`` which modalities and how many views per modality to compute, hands it
the embeddings keyed by modality name, and receives the dict of named loss terms. It never branches on the
method's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from decur import losses
from decur.catalog import METHODS, Method
from decur.config import MethodConfig

__all__ = ["METHODS", "Method", "Objective"]


class Objective(nn.Module):
    """Maps ``{modality: [view-1 embeddings, view-2 embeddings]}`` to the method's loss terms.

    Args:
        cfg: The method section of the config.
        modalities: Modality names in order: the first is "modality 1" of the paper.
        common_dim: Number of common embedding dimensions K_c.

    """

    def __init__(self, cfg: MethodConfig, modalities: list[str], common_dim: int) -> None:
        super().__init__()
        self.method = METHODS[cfg.name]
        self.loss: Callable[..., dict[str, Tensor]] = getattr(losses, self.method.loss)
        many = self.method.multimodal is not None and len(modalities) > 2
        self.modalities = modalities if many else modalities[: self.method.modalities]
        self.common_dim = common_dim
        self.pairs = cfg.pairs
        self.logit_scale: nn.Parameter | None = None
        if cfg.name == "clip":
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        kwargs: dict[str, object] = {}
        if cfg.name.startswith("decur"):
            kwargs = {
                "lambda_common": cfg.lambda_common,
                "lambda_unique": cfg.lambda_unique,
                "lambda_intra_1": cfg.lambda_intra_1,
                "lambda_intra_2": cfg.lambda_intra_2,
            }
            if cfg.name == "decur":
                kwargs |= {
                    "reference_weighting": cfg.reference_weighting,
                    "cross_both_views": cfg.cross_both_views,
                    "separation": cfg.separation,
                }
        elif cfg.name.startswith("barlow_twins"):
            kwargs = {"lambda_offdiag": cfg.lambda_common}
        elif cfg.name == "simclr_cross":
            kwargs = {"temperature": cfg.temperature}
        self.kwargs = kwargs

    @property
    def views(self) -> int:
        """Augmented views needed per modality."""
        return self.method.views

    def forward(self, z: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        """Loss terms of the method; ``"total"`` is minimised."""
        if len(self.modalities) > 2:
            return self._multimodal(z)
        first = z[self.modalities[0]]
        second = z[self.modalities[-1]] if self.method.modalities == 2 else [None, None]
        z1, z1p = first[0], first[1] if len(first) > 1 else None
        z2, z2p = second[0], second[1] if len(second) > 1 else None
        kwargs = dict(self.kwargs)
        if self.logit_scale is not None:
            kwargs["logit_scale"] = self.logit_scale
        return self.loss(z1, z1p, z2, z2p, self.common_dim, **kwargs)

    def _multimodal(self, z: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        """M > 2 modalities: ``decur.losses.decur_multimodal`` with the method's switches."""
        k = self.kwargs
        lam = k.get("lambda_offdiag", k.get("lambda_common", losses.LAMBDA))
        intra_1 = k.get("lambda_intra_1", losses.LAMBDA)
        intra_rest = k.get("lambda_intra_2", losses.LAMBDA)  # every modality after the first
        return losses.decur_multimodal(
            [z[m][0] for m in self.modalities],
            [z[m][1] if len(z[m]) > 1 else None for m in self.modalities],
            self.common_dim,
            lambda_common=float(lam),  # type: ignore[arg-type]
            lambda_unique=float(k.get("lambda_unique", losses.LAMBDA)),  # type: ignore[arg-type]
            lambda_intra=[float(intra_1)] + [float(intra_rest)] * (len(self.modalities) - 1),  # type: ignore[arg-type]
            pairs=self.pairs,
            reference_weighting=bool(k.get("reference_weighting", False)),
            cross_both_views=bool(k.get("cross_both_views", False)),
            separation=float(k.get("separation", 0.0)),  # type: ignore[arg-type]
            **(self.method.multimodal or {}),
        )
