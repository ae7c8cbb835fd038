"""2-process DDP on CPU (gloo): global-batch losses and gradients equal the 1-process run.

Everything runs in float64 and gradients are compared relative to the norm of the whole tensor: the claim is exact
algebra (a sharded global batch gives the same loss and gradients), so the only differences allowed are
reduction-order rounding, which in float64 stays near 1e-15 of the norm on any CPU. An elementwise float32
comparison flagged a 1e-6 gradient entry on one machine and not on another.
"""

from __future__ import annotations

import os
import tempfile
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from decur import losses

WORLD = 2
N, D, K = 8, 6, 5

METHODS = {
    "decur": lambda z: losses.decur_loss(*z, 3),
    "barlow_twins_cross": lambda z: losses.barlow_twins_cross(*z),
    "simclr_cross": lambda z: losses.simclr_cross(*z),
    "vicreg_cross": lambda z: losses.vicreg_cross(*z),
    "clip": lambda z: losses.clip_loss(*z, logit_scale=torch.tensor(2.0, dtype=torch.float64)),
}


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(N, D, generator=g, dtype=torch.float64) for _ in range(4)]
    return x


class Heads(nn.Module):
    """One head per modality; views 1 and 2 of modality m go through head m. (BatchNorm is left out: CPU has no
    SyncBatchNorm, and per-process BatchNorm statistics legitimately differ from the 1-process run.)"""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.heads = nn.ModuleList([nn.Sequential(nn.Linear(D, 7), nn.ReLU(), nn.Linear(7, K)) for _ in range(2)])
        self.double()

    def forward(self, x):
        return [self.heads[0](x[0]), self.heads[0](x[1]), self.heads[1](x[2]), self.heads[1](x[3])]


def _single_process(name):
    heads = Heads()
    x = [t.clone().requires_grad_(True) for t in _inputs()]
    z = heads(x)
    loss = METHODS[name](z)["total"]
    loss.backward()
    return float(loss.detach()), [_grad(t) for t in x], [p.grad.clone() for p in heads.parameters()]


def _grad(t):
    return t.grad if t.grad is not None else torch.zeros_like(t)  # unused views (one-view methods)


def _worker(rank, init_file, queue):
    """One process pair serves every method (spawning costs seconds; the methods share nothing across calls)."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for name in METHODS:
            try:  # any failure is reported to the parent instead of leaving it waiting
                model = nn.parallel.DistributedDataParallel(Heads())  # averages parameter gradients over ranks
                shard = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
                x = [t[shard].clone().requires_grad_(True) for t in _inputs()]
                loss = METHODS[name](model(x))["total"]
                loss.backward()
                grads = [_grad(t).numpy() for t in x], [p.grad.numpy() for p in model.parameters()]
                queue.put((name, rank, float(loss.detach()), *grads))
            except Exception:
                queue.put((name, rank, traceback.format_exc(), None, None))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results():
    """``{method: [(rank, loss, input grads, parameter grads), ...]}`` from one 2-process gloo group."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        procs = [ctx.Process(target=_worker, args=(r, init_file, queue)) for r in range(WORLD)]
        for p in procs:
            p.start()
        results: dict[str, list] = {}
        for _ in range(WORLD * len(METHODS)):
            name, *rest = queue.get(timeout=180)
            results.setdefault(name, []).append(tuple(rest))
        for p in procs:
            p.join(timeout=60)
    return {name: sorted(rows, key=lambda r: r[0]) for name, rows in results.items()}


@pytest.mark.parametrize("name", list(METHODS))
def test_two_process_loss_and_gradients_equal_single_process(name, two_process_results):
    loss1, input_grads1, param_grads1 = _single_process(name)
    for rank, loss, input_grads, param_grads in two_process_results[name]:
        assert not isinstance(loss, str), f"rank {rank} failed:\n{loss}"
        assert loss == pytest.approx(loss1, rel=1e-9), f"rank {rank}: global-batch loss differs"
        shard = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        # every rank back-propagates the same global loss, so its rows receive WORLD x the gradient;
        # DDP's gradient averaging divides that out again (checked on the parameters)
        _assert_close_in_norm([torch.from_numpy(g) / WORLD for g in input_grads], [g[shard] for g in input_grads1])
        _assert_close_in_norm([torch.from_numpy(g) for g in param_grads], param_grads1)


def _assert_close_in_norm(actual, expected, rel=1e-9):
    """Every ``||a - e|| <= rel * S``, with ``S`` the norm of all expected gradients together.

    The scale is the whole gradient's, not each tensor's: a tensor whose exact gradient is zero (e.g. 1e-15 of
    cancelled terms) carries rounding noise of the size of the terms that cancelled, not of its own size. Float64
    rounding is ~1e-16 of that scale per operation; 1e-9 leaves a wide margin and still catches any real error.
    """
    scale = float(torch.cat([e.flatten() for e in expected]).norm())
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        error = float((a - e).norm())
        assert error <= rel * scale, f"tensor {i}: error {error:.3g} vs gradient norm {scale:.3g}"
