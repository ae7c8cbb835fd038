"""Training-step throughput of DeCUR against the bare backbones on the same batch (the overhead ratio).

    python benchmarks/step_overhead.py                      # the default CPU config (ResNet-18, 56 px, batch 128)
    python benchmarks/step_overhead.py --arch resnet50 --crop 224 --batch 256 --projector 8192 8192 8192 \
        --precision bf16 --channels-last --device cuda      # the paper's SSL4EO-S12 shape on one GPU

"Backbone" = forward + backward of the two encoders on the two views of each modality (4 passes), with views
already made. "Full step" = what training does: make the views on the device, encoders, projectors, the DeCUR
loss, backward, LARS step. Ratio = full-step samples/s ÷ backbone samples/s. Every number is the median over
``--rounds`` alternating rounds of ``--repeats`` timed iterations (after ``--warmup`` untimed ones), with device
synchronisation around each phase.
Results go to ``benchmarks/results/step_overhead-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from decur import __version__
from decur.augment import ViewPipeline
from decur.config import MethodConfig, OptimConfig
from decur.data.build import band_stats
from decur.data.synthetic import SyntheticMultimodal
from decur.methods import Objective
from decur.models import MultimodalModel
from decur.optim import build_optimizer

RESULTS = Path(__file__).parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, warmup, repeats) -> list[float]:
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
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--crop", type=int, default=56)
    p.add_argument("--image", type=int, default=64)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--projector", type=int, nargs="*", default=[1024, 1024, 1024])
    p.add_argument("--common-share", type=float, default=0.75)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of backbone-only and full-step timing")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H100 SXM bf16: 989)")
    p.add_argument("--tag", default="")
    args = p.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = SyntheticMultimodal(length=args.batch, image_size=args.image)
    stats = band_stats(data, ["optical", "sar"], samples=min(64, args.batch))
    batch = {m: torch.stack([data[i][m] for i in range(args.batch)]).to(device) for m in ("optical", "sar")}
    bands = {"optical": 13, "sar": 2}
    model = MultimodalModel(bands, args.arch, args.projector).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    views = {
        m: ViewPipeline("optical" if m == "optical" else "sar", c, args.crop, (0.08, 1.0), *stats[m]).to(device)
        for m, c in bands.items()
    }
    k = args.projector[-1] if args.projector else model.feature_dim
    objective = Objective(MethodConfig(name="decur"), ["optical", "sar"], round(args.common_share * k)).to(device)
    opt = build_optimizer([model, objective], OptimConfig(), args.batch)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    )

    def make_views():
        return {m: [views[m](batch[m], view=v).contiguous(memory_format=fmt) for v in (0, 1)] for m in bands}

    fixed_views = make_views()

    def backbone_only():
        with autocast:
            out = sum(model.features(m, x).float().sum() for m, xs in fixed_views.items() for x in xs)
        out.backward()
        model.zero_grad(set_to_none=True)

    phases: dict[str, list[float]] = {"views": [], "forward": [], "backward": [], "optimizer": []}

    def full_step():
        _sync(device)
        t0 = time.perf_counter()
        v = make_views()
        _sync(device)
        t1 = time.perf_counter()
        with autocast:
            z = {m: [model.embed(m, x) for x in xs] for m, xs in v.items()}
            loss = objective(z)["total"]
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
    backbone_times, full_times = [], []
    for _ in range(args.rounds):
        backbone_times += _timed(backbone_only, device, args.warmup, args.repeats)
        for vals in phases.values():
            vals.clear()
        full_times += _timed(full_step, device, args.warmup, args.repeats)
        split_runs = {key: vals[args.warmup :] for key, vals in phases.items()}
    backbone, full = statistics.median(backbone_times), statistics.median(full_times)
    split = {key: statistics.median(vals) for key, vals in split_runs.items()}

    with FlopCounterMode(display=False) as counter:
        full_step()
    flops = counter.get_total_flops()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(device),
        "versions": {"decur": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": vars(args),
        "backbone_samples_per_s": args.batch / backbone,
        "full_step_samples_per_s": args.batch / full,
        "overhead_ratio": backbone / full,
        "full_step_split_s": split,
        "flops_per_step": flops,
        "achieved_tflops": flops / full / 1e12,
    }
    if args.peak_tflops:
        result["mfu"] = result["achieved_tflops"] / args.peak_tflops
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"step_overhead-{device.type}{('-' + args.tag) if args.tag else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{stem}.md").write_text(_markdown(result))
    print(_markdown(result))


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
    c = r["config"]
    lines = [
        f"# DeCUR step overhead — {c['arch']}, {c['crop']} px, batch {c['batch']}, projector {c['projector']}, "
        f"{c['precision']}{', channels_last' if c['channels_last'] else ''}",
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
    lines.append(f"| achieved TFLOP/s | {r['achieved_tflops']:.3f} |")
    if "mfu" in r:
        lines.append(f"| MFU | {r['mfu']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
