"""End-to-end pretraining throughput from the packed SSL4EO-S12 format (the GPU target of the performance issue).

    python benchmarks/e2e_packed.py --peak-tflops 989          # one H100: ResNet-50, 2 + 13 bands, 224 px, bf16

Writes a packed store of SSL4EO-S12-shaped random data (``decur data pack`` layout: 264 px, S2 13 bands uint8,
S1 2 bands float16, two seasons per location), then runs the real ``decur pretrain`` path on it with
``configs/ssl4eo_s12_decur.yaml`` on one device (batch 256, bf16, channels_last, loader workers from
``--workers``) and reports the training loop's own samples/s (the progress bar's number: wall time between
steps, data loading included) over the epochs after the first. MFU = samples/s x FLOPs per sample (counted on
one full step) / ``--peak-tflops``. ``--set`` overrides any config field; a CPU smoke run:

    python benchmarks/e2e_packed.py --locations 64 --epochs 2 --workers 1 --set model.arch=resnet18 \
        data.image_size=64 data.crop_size=56 data.batch_size=16 'model.projector=[64, 64]' trainer.precision=32-true

Results go to ``benchmarks/results/e2e_packed-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from decur import __version__
from decur.config import PretrainConfig, load_config
from decur.data.pack import FORMAT, PAIRING, SEASONS
from decur.optim import build_optimizer
from decur.train.module import PretrainModule
from decur.train.run import pretrain

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it


def write_store(root: Path, locations: int, size: int, seasons: int = 2) -> None:
    """A packed store of random SSL4EO-S12-shaped data (only ``seasons`` of the 4 slots are written)."""
    root.mkdir(parents=True, exist_ok=True)
    s1 = np.lib.format.open_memmap(root / "s1.npy", "w+", np.float16, (locations, SEASONS, 2, size, size))
    s2 = np.lib.format.open_memmap(root / "s2.npy", "w+", np.uint8, (locations, SEASONS, 13, size, size))
    rng = np.random.default_rng(0)
    for i in range(locations):
        s1[i, :seasons] = rng.normal(-15, 5, (seasons, 2, size, size)).astype(np.float16)
        s2[i, :seasons] = rng.integers(0, 256, (seasons, 13, size, size), dtype=np.uint8)
    s1.flush()
    s2.flush()
    ids = [f"{i:07d}" for i in range(locations)]
    index = {
        "format": FORMAT,
        "pairing": PAIRING,
        "ids": ids,
        "seasons": [seasons] * locations,
        "s2_product": "s2c",
        "size": size,
    }
    (root / "index.json").write_text(json.dumps(index))


def flops_per_sample(cfg: PretrainConfig, device: torch.device, batch: int = 8) -> float:
    """FLOPs of one full training step (views, forward, backward, optimiser) divided by its samples."""
    bands = {m.name: m.bands for m in cfg.data.modalities}
    module = PretrainModule(cfg, {m: ([0.5] * c, [0.25] * c) for m, c in bands.items()}).to(device)
    opt = build_optimizer([module.model, module.objective], cfg.optim, batch)
    x = {m: torch.rand(batch, c, cfg.data.image_size, cfg.data.image_size, device=device) for m, c in bands.items()}
    with FlopCounterMode(display=False) as counter:
        views = module.make_views(x)
        z = {m: [module.model.embed(m, v) for v in vs] for m, vs in views.items()}
        module.objective(z)["total"].backward()
        opt.step()
    return counter.get_total_flops() / batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--locations", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H100 SXM bf16: 989)")
    p.add_argument("--work-dir", default=None, help="where the store and the run go (default: a temporary folder)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        overrides = [
            f"data.root={work / 'store'}",
            f"trainer.max_epochs={args.epochs}",
            "trainer.devices=1",
            "trainer.strategy=auto",
            f"data.num_workers={args.workers}",
            "model.channels_last=true",
            "trainer.log_every_n_steps=1",
            *args.set,
        ]
        cfg = load_config(REPO / "configs" / "ssl4eo_s12_decur.yaml", overrides)
        started = time.perf_counter()
        write_store(work / "store", args.locations, cfg.data.image_size)
        store_s = time.perf_counter() - started
        cfg.validate()
        flops = flops_per_sample(cfg, device)
        started = time.perf_counter()
        pretrain(cfg, work / "run")
        wall = time.perf_counter() - started
        steps_per_epoch = args.locations // cfg.data.batch_size
        with open(work / "run" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("samples_per_s") and int(r["step"]) > steps_per_epoch]
    rates = [float(r["samples_per_s"]) for r in rows]
    waits = [float(r["data_wait"]) for r in rows if r.get("data_wait")]
    sps = statistics.median(rates)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": torch.cuda.get_device_name() if device.type == "cuda" else platform.machine(),
        "versions": {"decur": __version__, "torch": torch.__version__},
        "args": vars(args),
        "config": {
            "arch": cfg.model.arch,
            "batch_size": cfg.data.batch_size,
            "crop_size": cfg.data.crop_size,
            "precision": cfg.trainer.precision,
            "workers": cfg.data.num_workers,
        },
        "store_seconds": store_s,
        "run_seconds": wall,
        "samples_per_s": sps,
        "data_wait_share": statistics.median(waits) if waits else None,
        "flops_per_sample": flops,
        "achieved_tflops": sps * flops / 1e12,
    }
    if args.peak_tflops:
        result["mfu"] = result["achieved_tflops"] / args.peak_tflops
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"e2e_packed-{device.type}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2))
    md = _markdown(result)
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


def _markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        f"# End-to-end pretraining from the packed store — {c['arch']}, batch {c['batch_size']}, {c['crop_size']} px, "
        f"{c['precision']}, {c['workers']} loader workers",
        "",
        f"{r['date']} · {r['machine']} · torch {r['versions']['torch']} · decur {r['versions']['decur']}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| samples/s (median after the first epoch, data loading included) | {r['samples_per_s']:.1f} |",
        f"| share of step time waiting for data | {r['data_wait_share']:.3f} |"
        if r["data_wait_share"] is not None
        else "| share of step time waiting for data | – |",
        f"| FLOPs per sample (fwd + bwd + step) | {r['flops_per_sample'] / 1e9:.1f} G |",
        f"| achieved TFLOP/s | {r['achieved_tflops']:.2f} |",
    ]
    if "mfu" in r:
        lines.append(f"| MFU | {r['mfu']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
