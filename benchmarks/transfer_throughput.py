"""Transfer throughput: feature extraction and the fine-tuning step against the bare backbones (the overhead ratio).

    python benchmarks/transfer_throughput.py                         # ResNet-18, BigEarthNet shape, batch 64, CPU
    python benchmarks/transfer_throughput.py --device cuda --precision bf16 --arch resnet50 --batch 256 --tag resnet50

The step is the training code itself: :class:`decur.evaluate.module.TransferModule` around a late-fusion classifier
(S1 2 bands + S2 13 bands, 120 px, 19 labels, BigEarthNet-MM's shape), its optimiser (SGD, momentum 0.9) and loss,
on uniform random images held on the device. "Backbone" = forward + backward of the two encoders on the batch;
"fine-tuning step" = what a fine-tuning step does: standardise, encoders, head, loss, backward, optimiser step.
Ratio = fine-tuning samples/s / backbone samples/s. "Feature extraction" = linear probing's cached-feature pass
(eval mode, no gradients). Medians over ``--rounds`` alternating rounds of ``--repeats`` timed iterations after
``--warmup`` untimed ones. Results go to ``benchmarks/results/transfer-<device>[-tag].{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from decur import __version__
from decur.augment import ViewPipeline
from decur.evaluate.module import TransferModule
from decur.evaluate.transfer.config import TransferOptimConfig
from decur.models import LateFusionClassifier, create_encoder, encoder_width
from decur.train.host import tune_host

sys.path.insert(0, str(Path(__file__).parent))
from step_overhead import _machine, _sync, _timed

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it
BANDS = {"s1": 2, "s2": 13}


def measure(args: argparse.Namespace) -> dict:
    """Time backbone fwd+bwd, the fine-tuning step and feature extraction; returns the result dict."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    tune_host()
    encoders = {m: create_encoder(args.arch, c) for m, c in BANDS.items()}
    model = LateFusionClassifier(encoders, encoder_width(args.arch), 19)
    views = {m: ViewPipeline("none", c, 8, (1.0, 1.0), [0.5] * c, [0.25] * c) for m, c in BANDS.items()}
    module = TransferModule(model, views, False, TransferOptimConfig("sgd", 0.05, 0.0, "step"), 19).to(device)
    if args.channels_last:
        module = module.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(module.model.parameters(), lr=0.05, momentum=0.9)
    n, size = args.batch, args.size
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    batch = {m: torch.rand(n, c, size, size, device=device).contiguous(memory_format=fmt) for m, c in BANDS.items()}
    batch["label"] = (torch.rand(n, 19, device=device) < 0.2).float()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    )
    fixed = module.inputs(batch)

    def backbone_only() -> None:
        with autocast:
            out = sum(enc(fixed[m]).float().sum() for m, enc in module.model.encoders.items())
        out.backward()  # type: ignore[union-attr]
        module.model.zero_grad(set_to_none=True)

    def finetune_step() -> None:
        with autocast:
            loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def extract() -> None:
        with torch.no_grad(), autocast:
            module.predict_step(batch, 0)

    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer here: logging is a no-op
    backbone_times: list[float] = []
    step_times: list[float] = []
    extract_times: list[float] = []
    for _ in range(args.rounds):
        module.train()
        backbone_times += _timed(backbone_only, device, args.warmup, args.repeats)
        step_times += _timed(finetune_step, device, args.warmup, args.repeats)
        module.eval()
        extract_times += _timed(extract, device, args.warmup, args.repeats)
    _sync(device)
    backbone, step, extraction = (statistics.median(t) for t in (backbone_times, step_times, extract_times))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(device),
        "device_type": device.type,
        "versions": {"decur": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "args": vars(args),
        "backbone_samples_per_s": n / backbone,
        "finetune_step_samples_per_s": n / step,
        "overhead_ratio": backbone / step,
        "feature_extraction_samples_per_s": n / extraction,
    }


def _markdown(r: dict) -> str:
    a = r["args"]
    return "\n".join(
        [
            f"# Transfer throughput — {a['arch']}, BigEarthNet-MM shape (S1 2 + S2 13 bands, {a['size']} px, 19 "
            f"labels), batch {a['batch']}, {a['precision']}{', channels_last' if a['channels_last'] else ''}",
            "",
            f"{r['date']} · {r['machine']} · torch {r['versions']['torch']} · decur {r['versions']['decur']}",
            "",
            "| measure | value |",
            "|---|---|",
            f"| backbones only (2 fwd+bwd passes), samples/s | {r['backbone_samples_per_s']:.1f} |",
            f"| fine-tuning step, samples/s | {r['finetune_step_samples_per_s']:.1f} |",
            f"| overhead ratio (fine-tuning / backbone) | {r['overhead_ratio']:.3f} |",
            f"| feature extraction (eval, no grad), samples/s | {r['feature_extraction_samples_per_s']:.1f} |",
            "",
        ]
    )


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=120)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tag", default="")
    return p


def main() -> None:
    """Measure and write ``benchmarks/results/transfer-<device>[-tag].{json,md}``."""
    args = parser().parse_args()
    result = measure(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"transfer-{result['device_type']}{('-' + args.tag) if args.tag else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{stem}.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
