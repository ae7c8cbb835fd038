"""``method.common_dim: auto``: the split of common and unique dimensions found during one pretraining run.

The run starts with every dimension common (DeCUR's cross-modal term on all ``K`` dimensions, Eq. 2, plus the
intra-modal terms, Eq. 4-5). Over the second half of a warm-up of ``method.auto_warmup`` of the run's steps, the
per-dimension correlations of the global batch are averaged: each pair of modalities across *different* crops, each
modality between its two views. At the end of the warm-up ``decur.losses.split_dimensions`` (the rule, with its
equation) assigns every dimension to the common or the unique block; the dimensions are reordered so that the
common ones come first (the rows of every projector's last layer, and the optimiser's state of those rows, are
permuted in place), and training continues with that ``common_dim`` exactly as a fixed one would.

One split is shared by all modalities (the loss has one ``common_dim`` for every pair, Eq. 2-3 for M > 2); with
M > 2 each pair's correlations are corrected on their own, then averaged. Every process computes the statistics
from the gathered batch and the split is broadcast from process 0, so all processes permute alike. The statistics,
the decision and the order are part of every checkpoint: a resumed run continues the warm-up where it stopped, or
keeps the split it found.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from decur.distributed import gather_batch
from decur.losses import split_dimensions, standardize


class SplitSearch:
    """Statistics of the warm-up and the split found from them.

    Args:
        embed_dim: ``K``.
        modalities: The modality names, in order.
        warmup_steps: Optimiser steps before the split is decided (the statistics are taken over the second half).

    """

    def __init__(self, embed_dim: int, modalities: list[str], warmup_steps: int) -> None:
        self.k, self.modalities, self.warmup_steps = embed_dim, list(modalities), max(2, int(warmup_steps))
        self.pairs = list(itertools.combinations(range(len(modalities)), 2))
        self.cross = torch.zeros(len(self.pairs), embed_dim, dtype=torch.float64)
        self.intra = torch.zeros(len(modalities), embed_dim, dtype=torch.float64)
        self.count = 0
        self.found: int | None = None
        self.order: list[int] | None = None
        self.found_at: int | None = None

    @property
    def window_start(self) -> int:
        """First step (0-based) whose batch enters the statistics."""
        return self.warmup_steps // 2

    def observe(self, z: dict[str, list[Tensor]], step: int) -> None:
        """Add one step's per-dimension correlations (``step`` 0-based; outside the window nothing happens)."""
        if self.found is not None or not self.window_start <= step < self.warmup_steps:
            return
        with torch.no_grad(), torch.autocast(z[self.modalities[0]][0].device.type, enabled=False):
            s = [[standardize(gather_batch(v.detach())) for v in z[m][:2]] for m in self.modalities]
            cross = torch.stack(
                [((s[a][0] * s[b][1]).mean(0) + (s[a][1] * s[b][0]).mean(0)) / 2 for a, b in self.pairs]
            )
            intra = torch.stack([(v[0] * v[1]).mean(0) for v in s])
        self.cross += cross.double().cpu()
        self.intra += intra.double().cpu()
        self.count += 1

    def estimate(self) -> tuple[int, list[int]] | None:
        """The split the statistics so far give (``None`` before the first observed step)."""
        if not self.count:
            return None
        k_c, order = split_dimensions(self.cross / self.count, self.intra / self.count, self.pairs)
        return k_c, order.tolist()

    def due(self, steps_done: int) -> bool:
        """True when the warm-up is over (``steps_done`` optimiser steps) and no split is recorded yet."""
        return self.found is None and steps_done >= self.warmup_steps

    def decide(self, steps_done: int) -> tuple[int, list[int]]:
        """Record the split of the statistics (all dimensions common when the window saw no step)."""
        found = self.estimate() or (self.k, list(range(self.k)))
        self.found, self.order = found
        self.found_at = steps_done
        return found

    def state_dict(self) -> dict[str, Any]:
        """Plain types and tensors (checkpoints load with ``weights_only=True``)."""
        return {
            "warmup_steps": self.warmup_steps,
            "cross": self.cross,
            "intra": self.intra,
            "count": self.count,
            "found": self.found,
            "order": self.order,
            "found_at": self.found_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``; the warm-up length is the one the run started with."""
        self.warmup_steps = int(state["warmup_steps"])
        self.cross, self.intra, self.count = state["cross"].double(), state["intra"].double(), int(state["count"])
        self.found, self.order, self.found_at = state["found"], state["order"], state["found_at"]

    def summary(self) -> dict[str, Any]:
        """What the run's summary and card record."""
        return {
            "common_dim": self.found,
            "embed_dim": self.k,
            "common_share": None if self.found is None else round(self.found / self.k, 4),
            "found_at_step": self.found_at,
            "warmup_steps": self.warmup_steps,
            "window_steps": self.count,
            "rule": "decur.losses.split_dimensions",
        }


def last_linear(projector: nn.Module) -> nn.Linear:
    """The layer whose output rows are the embedding dimensions (the projector's last ``Linear``)."""
    linears = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("common_dim=auto needs a projector (model.projector): its output dimensions are split")
    return linears[-1]


def permute_rows(projectors: list[nn.Module], order: list[int], optimizers: list[torch.optim.Optimizer]) -> None:
    """Reorder the output dimensions of every projector by ``order`` (common first), with the optimisers' state.

    Each distinct last layer is permuted once (a shared projector appears once however many modalities use it);
    every optimiser state tensor of the same shape as a permuted parameter (momentum, Adam's moments) follows it.
    """
    seen: set[int] = set()
    for projector in projectors:
        layer = last_linear(projector)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        for param in [p for p in (layer.weight, layer.bias) if p is not None]:
            index = torch.as_tensor(order, device=param.device)
            with torch.no_grad():
                param.copy_(param[index])
            for opt in optimizers:
                for value in opt.state.get(param, {}).values():
                    if isinstance(value, Tensor) and value.shape == param.shape:
                        value.copy_(value[index])
