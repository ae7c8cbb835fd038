"""BigEarthNet through the transfer loader: raw GeoTIFFs (14 per patch) vs the packed store, samples/s.

    PYTHONPATH=. python benchmarks/bigearthnet_loader.py                 # a generated v1.0 fixture (120 px patches)
    PYTHONPATH=. python benchmarks/bigearthnet_loader.py --root /data/bigearthnet --store /data/ben-packed

The loader is the one ``decur transfer`` builds for fine-tuning: :func:`decur.data.sampling.seeded_loader` over the
training split with the paper's training crops (:class:`decur.data.crops.TrainCrop`, scale 0.8-1 + flips).
Results go to ``benchmarks/results/bigearthnet_loader-cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from decur.data import BigEarthNetMM
from decur.data.crops import TrainCrop
from decur.data.pack_bigearthnet import PackedBigEarthNet, pack_bigearthnet
from decur.data.sampling import seeded_loader

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it


def rate(dataset, batch: int, workers: int, batches: int) -> float:
    """Samples/s of the transfer training loader over ``batches`` batches (after one warm-up batch)."""
    loader = seeded_loader(TrainCrop(dataset, ["s1", "s2"], (0.8, 1.0)), batch_size=batch, num_workers=workers, seed=0)
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            seen += len(next(it)["label"])
        except StopIteration:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    """Measure raw and packed throughput and write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="BigEarthNet-MM v1.0 folder (default: a generated fixture)")
    p.add_argument("--store", help="its packed store (default: packed here from --root)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batches", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else None
        if root is None:
            from tests.data.bigearthnet.data import SPLITS, make_v1

            SPLITS["train"] = args.batch * (args.batches + 2)  # enough patches for the timed batches
            root = make_v1(Path(tmp) / "raw")
        store = Path(args.store) if args.store else pack_bigearthnet(root, Path(tmp) / "store", progress=False)
        torch.set_num_threads(1)
        raw = rate(BigEarthNetMM(root, "train"), args.batch, args.workers, args.batches)
        packed = rate(PackedBigEarthNet(store, "train"), args.batch, args.workers, args.batches)
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "args": vars(args),
              "raw_samples_per_s": raw, "packed_samples_per_s": packed, "speed_up": packed / raw}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bigearthnet_loader-cpu.json").write_text(json.dumps(result, indent=2))
    md = (f"# BigEarthNet through the transfer loader ({args.workers} workers, batch {args.batch})\n\n"
          f"{result['date']}\n\n| source | samples/s |\n|---|---|\n| raw GeoTIFFs | {raw:.0f} |\n"
          f"| packed store | {packed:.0f} |\n| speed-up | {packed / raw:.1f}x |\n")  # fmt: skip
    (RESULTS / "bigearthnet_loader-cpu.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
