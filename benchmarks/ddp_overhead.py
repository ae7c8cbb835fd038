"""DDP cost on this machine: one process on the whole batch vs 2 gloo processes on half batches each.

    python benchmarks/ddp_overhead.py            # the default config, 2 processes x 1 thread vs 1 process x 2 threads

Both sides run the training step of the config (:class:`decur.train.module.PretrainModule`: views, encoders,
projectors, loss with global-batch statistics, backward, LARS step); the processes side wraps it in
``DistributedDataParallel`` exactly as Lightning does (one forward = one step). The machine's cores are split
evenly, so the ratio isolates what data parallelism costs: gradient all-reduce, the embedding all-gather and the
smaller per-process matrices. It also times the two ways to get global-batch correlation statistics: one
all-gather of the N x K embeddings (what decur does) vs all-reducing the K x K correlation blocks.
Results go to ``benchmarks/results/ddp_overhead-cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from decur import __version__
from decur.config import load_config
from decur.optim import build_optimizer
from decur.train.host import tune_host
from decur.train.module import PretrainModule

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it


class _Step(nn.Module):
    """Views → embeddings → loss as one forward, the unit Lightning wraps in DDP."""

    def __init__(self, module: PretrainModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        views = self.module.make_views(batch)
        z = {m: [self.module.model.embed(m, x) for x in xs] for m, xs in views.items()}
        return self.module.objective(z)["total"]


def _run(rank: int, world: int, threads: int, args: argparse.Namespace, port: int, out: dict) -> None:
    torch.set_num_threads(threads)
    tune_host()  # as a training run does
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    cfg = load_config(args.config, args.set).validate()
    n, size = cfg.data.batch_size // world, cfg.data.image_size
    bands = {m.name: m.bands for m in cfg.data.modalities}
    torch.manual_seed(0)
    module = PretrainModule(cfg, {m: ([0.5] * c, [0.25] * c) for m, c in bands.items()})
    step: nn.Module = _Step(module)
    if world > 1:
        step = DistributedDataParallel(step)
    opt = build_optimizer([module.model, module.objective], cfg.optim, cfg.data.batch_size)
    torch.manual_seed(rank)
    batch = {m: torch.rand(n, c, size, size) for m, c in bands.items()}
    times = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        step(batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if world > 1:
            dist.barrier()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    result = {"step_s": statistics.median(times)}
    if world > 1:
        result.update(_collectives(cfg.embed_dim, n, cfg.common_dim, args.repeats))
        grads = sum(p.numel() for p in module.parameters())
        buf = torch.zeros(grads)
        result["grad_allreduce_s"] = _time(lambda: dist.all_reduce(buf), args.repeats)
        dist.destroy_process_group()
    if rank == 0:
        out.update(result)


def _collectives(k: int, n_local: int, kc: int, repeats: int) -> dict[str, float]:
    """Time one all-gather of the 4 views' embeddings vs an all-reduce of the correlation blocks decur needs."""
    z = torch.randn(4 * n_local, k)
    gathered = torch.empty(dist.get_world_size() * 4 * n_local, k)
    blocks = torch.zeros(kc * kc + (k - kc) ** 2 + 2 * k * k)  # common block, unique block, two intra matrices
    return {
        "allgather_embeddings_s": _time(lambda: dist.all_gather_into_tensor(gathered, z), repeats),
        "allreduce_correlations_s": _time(lambda: dist.all_reduce(blocks), repeats),
        "allgather_bytes": gathered.numel() * 4,
        "allreduce_bytes": blocks.numel() * 4,
    }


def _time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cores = os.cpu_count() or 2
    world = args.processes
    with mp.Manager() as manager:
        single, multi = manager.dict(), manager.dict()
        ctx = mp.get_context("spawn")
        proc = ctx.Process(target=_run, args=(0, 1, cores, args, 0, single))
        proc.start()
        proc.join()
        mp.start_processes(
            _run, args=(world, max(1, cores // world), args, _free_port(), multi), nprocs=world, start_method="spawn"
        )
        single, multi = dict(single), dict(multi)
    cfg = load_config(args.config, args.set)
    n = cfg.data.batch_size
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {cores} cores",
        "versions": {"decur": __version__, "torch": torch.__version__},
        "config": {
            "arch": cfg.model.arch,
            "batch_size": n,
            "crop_size": cfg.data.crop_size,
            "embed_dim": cfg.embed_dim,
        },
        "processes": world,
        "single_samples_per_s": n / single["step_s"],
        "ddp_samples_per_s": n / multi["step_s"],
        "ddp_ratio": single["step_s"] / multi["step_s"],
        **{k: v for k, v in multi.items() if k != "step_s"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ddp_overhead-cpu.json").write_text(json.dumps(result, indent=2))
    md = _markdown(result)
    (RESULTS / "ddp_overhead-cpu.md").write_text(md)
    print(md)


def _markdown(r: dict) -> str:
    c, w = r["config"], r["processes"]
    return "\n".join(
        [
            f"# DDP overhead on the CPU — {c['arch']}, global batch {c['batch_size']}, {c['crop_size']} px, "
            f"K = {c['embed_dim']}",
            "",
            f"{r['date']} · {r['machine']} · torch {r['versions']['torch']} · decur {r['versions']['decur']}",
            "",
            "| measure | value |",
            "|---|---|",
            f"| 1 process (all cores), samples/s | {r['single_samples_per_s']:.1f} |",
            f"| {w} gloo processes (cores split), samples/s | {r['ddp_samples_per_s']:.1f} |",
            f"| ratio ({w} processes / 1) | {r['ddp_ratio']:.3f} |",
            f"| gradient all-reduce, ms | {r['grad_allreduce_s'] * 1000:.1f} |",
            f"| all-gather of the 4 views' embeddings ({r['allgather_bytes'] / 1e6:.1f} MB), ms | "
            f"{r['allgather_embeddings_s'] * 1000:.2f} |",
            f"| all-reduce of the correlation blocks instead ({r['allreduce_bytes'] / 1e6:.1f} MB), ms | "
            f"{r['allreduce_correlations_s'] * 1000:.2f} |",
            "",
        ]
    )


if __name__ == "__main__":
    main()
