"""Global-batch helpers for data-parallel training.

DeCUR's cross-correlation matrices are statistics of the *global* batch. Under DDP every process holds a shard,
so the embeddings are gathered with an autograd-aware collective: the backward pass of
``torch.distributed.nn.functional.all_gather`` sums the gradient of every rank's (identical) loss into the rank
that owns each row. Each local input therefore receives ``world_size`` times the single-process gradient, which
DDP's gradient *averaging* divides out again, so parameters see exactly the gradient of the global-batch loss.
A plain ``all_reduce`` on the graph (as in the reference code) would be invisible to autograd and silently scale
gradients by ``1 / world_size``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_batch(z: Tensor) -> Tensor:
    """Concatenate the per-process batches along dim 0, keeping the graph.

    Args:
        z: Local embeddings, ``N_local x K``. Every rank must pass the same ``N_local``.

    Returns:
        ``(world_size * N_local) x K`` embeddings, ordered by rank; ``z`` itself when not distributed.

    """
    if world_size() == 1:
        return z
    try:  # torch >= 2.10: functional collectives carry autograd
        from torch.distributed._functional_collectives import all_gather_single

        return all_gather_single(z.contiguous(), 0, dist.group.WORLD)  # type: ignore[arg-type]
    except ImportError:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(z), dim=0)
