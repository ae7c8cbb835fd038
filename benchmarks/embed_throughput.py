"""Embedding throughput: ``decur embed``'s machinery against the bare encoders' forward pass on the same batches.

    python benchmarks/embed_throughput.py                          # ResNet-18, S1 + S2 at 120 px, batch 64, CPU
    python benchmarks/embed_throughput.py --device cuda --precision bf16-mixed --arch resnet50 --batch 256 --tag rn50

"Bare" = the two encoders' forward pass (eval mode, no gradients) on batches already in memory, nothing else.
"Embed" = what ``decur embed`` runs per batch, on the same in-memory batches: Lightning's predict loop with
:class:`decur.embed.run.EmbedModule` (encoders and projectors), :class:`decur.embed.run.PartWriter` (rows to Arrow,
part files) and the final :func:`decur.embed.run.merge` (sample order, statistics, GeoParquet metadata) — all of
it inside the timed span. Ratio = embed samples/s / bare samples/s (target ≥ 0.9; the projector's three layers are
part of the embedding and counted against it). Reading and decoding files is the loader's cost and is measured by
``loader_throughput.py``. Results go to ``benchmarks/results/embed-<device>[-tag].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from decur import __version__
from decur.config import EngineConfig
from decur.embed.run import EmbedModule, PartWriter, merge
from decur.models import create_encoder, encoder_width, projector
from decur.train.engine import build_trainer, quiet_lightning
from decur.train.host import tune_host

sys.path.insert(0, str(Path(__file__).parent))
from step_overhead import _machine, _sync

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it
BANDS = {"s1": 2, "s2": 13}


class _InMemory(Dataset):
    """``n`` samples cycling over the same ``batch`` images per modality, with ids and no footprint."""

    def __init__(self, images: dict[str, torch.Tensor], n: int) -> None:
        self.images, self.n = images, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        k = i % len(next(iter(self.images.values())))
        return {"id": f"{i:09d}", "index": i, "corners": torch.full((4, 2), float("nan"), dtype=torch.float64),
                "crs": "", **{m: x[k] for m, x in self.images.items()},
                **{f"present/{m}": True for m in self.images}}  # fmt: skip


def measure(args: argparse.Namespace) -> dict:
    """Time the bare forward pass and the embedding pass over ``--batches`` batches; returns the result dict."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    tune_host()
    quiet_lightning()
    encoders = {m: create_encoder(args.arch, c).eval().to(device) for m, c in BANDS.items()}
    width = encoder_width(args.arch)
    projectors = {m: projector(width, args.projector).eval().to(device) for m in BANDS}
    images = {m: torch.rand(args.batch, c, args.size, args.size) for m, c in BANDS.items()}
    on_device = {m: x.to(device) for m, x in images.items()}
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=args.precision.startswith("bf16"))
    n = args.batch * args.batches

    def bare() -> float:
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            for _ in range(args.batches):
                for m, enc in encoders.items():
                    enc(on_device[m])
        _sync(device)
        return n / (time.perf_counter() - start)

    def embedded() -> float:
        folder = Path(tempfile.mkdtemp(prefix="decur-embed-bench-"))
        parts = folder / "out.parquet.parts"
        parts.mkdir()
        module = EmbedModule(encoders, projectors, args.projector[-1] * 3 // 4)
        writer = PartWriter(parts, args.rows_per_part, "float32", n, progress=False)
        engine = EngineConfig(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                              precision=args.precision)  # fmt: skip
        trainer = build_trainer(parts, engine, global_batch=args.batch, max_epochs=1, progress=False,
                                extra_callbacks=[writer])  # fmt: skip
        loader = DataLoader(_InMemory(images, n), batch_size=args.batch, num_workers=0)
        _sync(device)
        start = time.perf_counter()
        trainer.predict(module, loader, return_predictions=False)
        merge(parts, folder / "out.parquet", {"format": "decur-embeddings"}, rows=args.rows_per_part)
        _sync(device)
        rate = n / (time.perf_counter() - start)
        shutil.rmtree(folder)
        return rate

    bare()  # warm-up: allocator, kernels
    rounds = {"bare": [], "embed": []}
    for _ in range(args.rounds):  # alternating, so drift of the machine hits both alike
        rounds["bare"].append(bare())
        rounds["embed"].append(embedded())
    med = {k: statistics.median(v) for k, v in rounds.items()}
    return {
        "machine": _machine(device),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "decur": __version__,
        "torch": torch.__version__,
        "settings": vars(args),
        "samples_per_s": med,
        "rounds": rounds,
        "ratio": med["embed"] / med["bare"],
    }


def _markdown(r: dict) -> str:
    s = r["settings"]
    return "\n".join(
        [
            f"# Embedding throughput ({r['machine']})",
            "",
            f"{s['arch']}, S1 + S2 at {s['size']} px, batch {s['batch']}, {s['batches']} batches, precision "
            f"{s['precision']}, projector {s['projector']}; median of {s['rounds']} rounds; {r['date']}.",
            "",
            "| pass | samples/s |",
            "|---|---|",
            f"| bare encoders (forward, in memory) | {r['samples_per_s']['bare']:.1f} |",
            f"| decur embed (predict + projectors + parts + merge) | {r['samples_per_s']['embed']:.1f} |",
            "",
            f"Ratio embed / bare: **{r['ratio']:.2f}** (target ≥ 0.9).",
            "",
        ]
    )


def main() -> None:
    """Parse the arguments, measure, write ``embed-<device>[-tag].{json,md}``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--projector", type=int, nargs="+", default=[512, 512, 512])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--size", type=int, default=120)
    p.add_argument("--rows-per-part", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    result = measure(args)
    name = f"embed-{torch.device(args.device).type}" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{name}.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
