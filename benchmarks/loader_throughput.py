"""SSL4EO-S12 loading throughput: raw GeoTIFFs vs the packed store (vs chunked HDF5, to justify the choice), and
the v1.1 release's Zarr shards streamed per worker.

    python benchmarks/loader_throughput.py                 # generated 264 px SSL4EO-S12 fixture, 32 locations
    python benchmarks/loader_throughput.py --root /data/ssl4eo-s12 --locations 500

Measures samples/s (one sample = 2 seasons of S1 + S2, the paper's two views) for
  1. reading only, in one process (= the rate of one loader worker);
  2. reading + the paper's augmentations of both views on the CPU, per batch of ``--batch`` (224 px crops);
  3. the pretraining DataLoader (``decur.data.sampling.seeded_loader``: per-sample seeds, shuffling) with
     ``--workers`` workers, reading only (inter-process transfer included).
From 3 it extrapolates to ``--target-workers`` workers (the measured rate per worker x that count, which assumes
one free core per worker and data in the page cache) and compares with 1.5 x ``--step-rate``, the training
step rate the loader must outrun (default: the GPU target of 800 samples/s for ResNet-50 at 224 px). Views are
made on the training device (decur's design), so only reading counts against the loader; column 2 shows what
augmenting in the workers instead would cost.
The v1.1 row reads ``--v11-files`` generated release-layout shards (64 locations x 4 timestamps, 264 px, S1GRD +
S2L1C) through :class:`decur.data.ssl4eo_v11.SSL4EOS12v11` and its ``shard_loader`` (each worker streams whole
files; no per-sample seeds), the same two views per sample.
Results: ``benchmarks/results/loader-<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from decur.augment import ViewPipeline
from decur.data.pack import PackedSSL4EOS12, pack_ssl4eo_s12
from decur.data.sampling import seeded_loader
from decur.data.ssl4eo_s12 import SSL4EOS12, STATS

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it


class HDF5Store(Dataset):
    """The packed arrays re-stored as HDF5 with one chunk per (location, season), to compare read paths."""

    def __init__(self, packed: Path, out: Path, compression: str | None) -> None:
        import h5py

        self.path, self.views = out, 2
        with h5py.File(out, "w") as f:
            for m in ("s1", "s2"):
                arr = np.load(packed / f"{m}.npy", mmap_mode="r")
                f.create_dataset(m, data=arr, chunks=(1, 1, *arr.shape[2:]), compression=compression)
        self.n = int(np.load(packed / "s1.npy", mmap_mode="r").shape[0])
        self._file = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        picks = torch.randint(0, 4, (self.views,)).tolist()
        s1 = torch.from_numpy(np.stack([self._file["s1"][i, k] for k in picks]).astype(np.float32))
        s2 = torch.from_numpy(np.stack([self._file["s2"][i, k] for k in picks])).float() / 255
        return {"s1": s1, "s2": s2}


def _rate(ds: Dataset, n: int, repeats: int = 3) -> float:
    rates = []
    for r in range(repeats):
        torch.manual_seed(r)
        start = time.perf_counter()
        for i in range(n):
            ds[i % len(ds)]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def _rate_augmented(ds: Dataset, n: int, batch: int, crop: int) -> float:
    views = {
        "s1": ViewPipeline("sar", 2, crop, (0.08, 1.0), *STATS["s1"]),
        "s2": ViewPipeline("optical", 13, crop, (0.08, 1.0), *STATS["s2c"]),
    }
    start = time.perf_counter()
    done = 0
    while done < n:
        items = [ds[(done + j) % len(ds)] for j in range(batch)]
        for m, pipe in views.items():
            x = torch.stack([it[m] for it in items])
            for v in range(2):
                pipe(x[:, v], view=v)
        done += batch
    return done / (time.perf_counter() - start)


def _rate_loader(ds: Dataset, n: int, workers: int, batch: int) -> float:
    loader = seeded_loader(ds, batch_size=batch, num_workers=workers, seed=0)  # as `decur pretrain` loads
    it = iter(loader)
    next(it)  # start-up
    start, done = time.perf_counter(), 0
    while done < n:
        try:
            done += len(next(it)["s1"])
        except StopIteration:
            it = iter(loader)
    return done / (time.perf_counter() - start)


def _v11_rates(tmp: Path, files: int, samples: int, workers: int, batch: int) -> list[dict]:
    """Read rate in one process and the shard loader's rate for generated v1.1 shards, per timestamp draw."""
    from tests.data.ssl4eo_v11.data import make_v11

    from decur.data.sampling import shard_loader
    from decur.data.ssl4eo_v11 import SSL4EOS12v11

    split = make_v11(tmp / "v11", files=files, samples=samples, size=264, folders=("S1GRD", "S2L1C"))
    rows = []
    for draw in ("sample", "file"):
        ds = SSL4EOS12v11(split, ["s1grd", "s2l1c"], timestamp_draw=draw)
        sum(1 for _ in ds)  # the first pass allocates the decode buffers a long-running worker reuses
        start = time.perf_counter()
        n = sum(1 for _ in ds)
        read = n / (time.perf_counter() - start)
        ds = SSL4EOS12v11(split, ["s1grd", "s2l1c"], timestamp_draw=draw)
        loader = shard_loader(ds, batch_size=batch, num_workers=workers, seed=0)
        rates = []
        for _ in range(2):  # epoch 1 includes starting the workers and their first files; epoch 2 is steady
            start, done = time.perf_counter(), 0
            for b in loader:
                done += len(b["s1grd"])
            rates.append(done / (time.perf_counter() - start))
        rows.append({"store": f"v1.1 Zarr zip shards ({files} x {samples}), timestamp_draw={draw}",
                     "read_per_worker": read, f"loader_{workers}_workers": rates[1],
                     "loader_first_epoch": rates[0]})  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="raw SSL4EO-S12 folder (default: a generated fixture)")
    p.add_argument("--locations", type=int, default=32)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--target-workers", type=int, default=8)
    p.add_argument("--step-rate", type=float, default=800.0, help="training samples/s the loader must feed")
    p.add_argument("--v11-files", type=int, default=4, help="v1.1 shards to generate (0: skip the v1.1 row)")
    p.add_argument("--v11-samples", type=int, default=64, help="locations per v1.1 shard (64 in the release)")
    p.add_argument("--tag", default="cpu")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.root:
            root = Path(args.root)
        else:
            from tests.data.ssl4eo_s12.data import generate

            ids = tuple(f"{i:07d}" for i in range(args.locations))
            root = generate(tmp_path / "raw", size=264, locations=ids)
        start = time.perf_counter()
        packed_dir = pack_ssl4eo_s12(root, tmp_path / "packed", workers=args.workers, progress=False)
        pack_s = time.perf_counter() - start
        stores: dict[str, Dataset] = {"raw GeoTIFF": SSL4EOS12(root), "packed .npy memmap": PackedSSL4EOS12(packed_dir)}
        try:
            stores["HDF5, chunk per season"] = HDF5Store(packed_dir, tmp_path / "plain.h5", None)
            stores["HDF5, chunk per season, lzf"] = HDF5Store(packed_dir, tmp_path / "lzf.h5", "lzf")
        except ImportError:
            pass
        rows = []
        for name, ds in stores.items():
            read = _rate(ds, args.samples)
            row = {"store": name, "read_per_worker": read}
            if name in ("raw GeoTIFF", "packed .npy memmap"):
                row["read_and_augment_per_worker"] = _rate_augmented(ds, args.samples, args.batch, args.crop)
                loader = _rate_loader(ds, args.samples * 2, args.workers, args.batch)
                row[f"loader_{args.workers}_workers"] = loader
                row[f"extrapolated_{args.target_workers}_workers"] = loader / args.workers * args.target_workers
            rows.append(row)
            print(row)
        if args.v11_files:
            for row in _v11_rates(tmp_path, args.v11_files, args.v11_samples, args.workers, args.batch):
                row[f"extrapolated_{args.target_workers}_workers"] = (
                    row[f"loader_{args.workers}_workers"] / args.workers * args.target_workers
                )
                rows.append(row)
                print(row)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "config": vars(args),
        "pack_seconds": pack_s,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"loader-{args.tag}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# SSL4EO-S12 loading throughput ({'generated 264 px fixture' if not args.root else args.root}, "
        f"{args.locations} locations, 2 seasons per sample)",
        "",
        f"{result['date']} · {result['machine']} · torch {result['torch']} · packing took {pack_s:.1f} s",
        "",
        "| store | read, samples/s per worker | read + CPU augmentation of 2 views @"
        f"{args.crop} px, per worker | DataLoader, {args.workers} workers | extrapolated to {args.target_workers} "
        f"workers | ≥ 1.5 x {args.step_rate:.0f} samples/s? | workers for 1.5 x |",
        "|---|---|---|---|---|---|---|",
    ]
    need = 1.5 * args.step_rate
    for r in rows:
        aug = r.get("read_and_augment_per_worker")
        loader = r.get(f"loader_{args.workers}_workers")
        more = r.get(f"extrapolated_{args.target_workers}_workers")
        cells = [f"{r['read_per_worker']:.1f}", f"{aug:.1f}" if aug is not None else "–"]
        if loader is not None:
            cells += [f"{loader:.1f}", f"{more:.0f}", "yes" if more >= need else "no"]
            cells.append(str(math.ceil(need / (loader / args.workers))))
        else:
            cells += ["–"] * 4
        lines.append(f"| {r['store']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Extrapolation: the {args.workers}-worker DataLoader rate (transfer between processes included) per worker "
        f"x {args.target_workers}, assuming a free core per worker and page-cached data; the last column: workers "
        "at the measured rate per worker that reach 1.5 x the step rate. v1.1 rows: the second pass / epoch (the "
        "first includes starting workers and allocating their decode buffers).",
    ]
    (RESULTS / f"loader-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
