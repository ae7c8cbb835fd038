"""Training-step throughput of DeCUR against the bare backbones on the same batch (the overhead ratio).

    python benchmarks/step_overhead.py                    # the default config (ResNet-18, 56 px crops, batch 128)
    python benchmarks/step_overhead.py --device cuda --precision bf16 --set model.arch=resnet50 \
        data.image_size=264 data.crop_size=224 data.batch_size=256 'model.projector=[8192, 8192, 8192]' \
        model.channels_last=true --peak-tflops 989 --tag resnet50   # the paper's SSL4EO-S12 shape on one GPU

The step is built from the training code itself (:class:`decur.train.module.PretrainModule` of the given config,
its optimiser), on uniform random images of the config's shape held on the device. "Backbone" = forward +
backward of the encoders on the views (2 modalities x 2 views), views made once beforehand. "Full step" = what
training does: make the views on the device, encoders, projectors, loss, backward, optimiser step. Ratio =
full-step samples/s / backbone samples/s. Every number is the median over ``--rounds`` alternating rounds of
``--repeats`` timed iterations (after ``--warmup`` untimed ones), with device synchronisation around each phase.
Results go to ``benchmarks/results/step_overhead-<device>[-tag].{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from decur import __version__
from decur.config import load_config
from decur.optim import build_optimizer
from decur.train.host import tune_host
from decur.train.module import PretrainModule

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="a decur config (default: the built-in default)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders and projectors")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of backbone-only and full-step timing")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H100 SXM bf16: 989)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    result = measure(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"step_overhead-{result['device_type']}{('-' + args.tag) if args.tag else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{stem}.md").write_text(_markdown(result))
    print(_markdown(result))


def measure(args: argparse.Namespace) -> dict:
    """Time the backbone-only and the full step; returns the result dict written as JSON."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    tune_host()  # as a training run does
    cfg = load_config(args.config, args.set).validate()
    n, size = cfg.data.batch_size, cfg.data.image_size
    bands = {m.name: m.bands for m in cfg.data.modalities}
    module = PretrainModule(cfg, {m: ([0.5] * c, [0.25] * c) for m, c in bands.items()}).to(device)
    if args.compile:
        module.compile_networks()
    model, objective = module.model, module.objective
    opt = build_optimizer([model, objective], cfg.optim, n)
    batch = {m: torch.rand(n, c, size, size, device=device) for m, c in bands.items()}
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    )
    fixed_views = module.make_views(batch)

    def backbone_only() -> None:
        with autocast:
            out = sum(model.features(m, x).float().sum() for m, xs in fixed_views.items() for x in xs)
        out.backward()  # type: ignore[union-attr]
        model.zero_grad(set_to_none=True)

    phases: dict[str, list[float]] = {"views": [], "forward": [], "backward": [], "optimizer": []}

    def full_step() -> None:
        _sync(device)
        t0 = time.perf_counter()
        views = module.make_views(batch)
        _sync(device)
        t1 = time.perf_counter()
        with autocast:
            loss = objective({m: [model.embed(m, x) for x in xs] for m, xs in views.items()})["total"]
        _sync(device)
        t2 = time.perf_counter()
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        t4 = time.perf_counter()
        for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[key].append(dt)

    # interleave rounds of both measurements so that drift in machine load affects both alike
    backbone_times: list[float] = []
    full_times: list[float] = []
    split_runs: dict[str, list[float]] = {key: [] for key in phases}
    for _ in range(args.rounds):
        backbone_times += _timed(backbone_only, device, args.warmup, args.repeats)
        for vals in phases.values():
            vals.clear()
        full_times += _timed(full_step, device, args.warmup, args.repeats)
        for key, vals in phases.items():
            split_runs[key] += vals[args.warmup :]
    backbone, full = statistics.median(backbone_times), statistics.median(full_times)
    flops = 0
    if not args.compile:  # the FLOP counter cannot trace compiled graphs
        with FlopCounterMode(display=False) as counter:
            full_step()
        flops = counter.get_total_flops()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(device),
        "device_type": device.type,
        "versions": {"decur": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "args": vars(args),
        "config": {
            "arch": cfg.model.arch,
            "bands": bands,
            "image_size": size,
            "crop_size": cfg.data.crop_size,
            "batch_size": n,
            "projector": cfg.model.projector,
            "channels_last": cfg.model.channels_last,
        },
        "backbone_samples_per_s": n / backbone,
        "full_step_samples_per_s": n / full,
        "overhead_ratio": backbone / full,
        "full_step_split_s": {key: statistics.median(vals) for key, vals in split_runs.items()},
        "flops_per_step": flops,
        "achieved_tflops": flops / full / 1e12,
    }
    if args.peak_tflops and flops:
        result["mfu"] = result["achieved_tflops"] / args.peak_tflops
    return result


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {torch.get_num_threads()} threads"


def _markdown(r: dict) -> str:
    c, a = r["config"], r["args"]
    options = (
        [a["precision"]] + (["channels_last"] if c["channels_last"] else []) + (["compile"] if a["compile"] else [])
    )
    lines = [
        f"# DeCUR step overhead — {c['arch']}, {c['image_size']} → {c['crop_size']} px, batch {c['batch_size']}, "
        f"bands {c['bands']}, projector {c['projector']}, {', '.join(options)}",
        "",
        f"{r['date']} · {r['machine']} · torch {r['versions']['torch']} · decur {r['versions']['decur']}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| backbones only (4 fwd+bwd passes), samples/s | {r['backbone_samples_per_s']:.1f} |",
        f"| full DeCUR step, samples/s | {r['full_step_samples_per_s']:.1f} |",
        f"| overhead ratio (full / backbone) | {r['overhead_ratio']:.3f} |",
    ]
    for key, value in r["full_step_split_s"].items():
        lines.append(f"| full step: {key}, ms | {value * 1000:.1f} |")
    if r["flops_per_step"]:
        lines.append(f"| achieved TFLOP/s | {r['achieved_tflops']:.3f} |")
    if "mfu" in r:
        lines.append(f"| MFU | {r['mfu']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
