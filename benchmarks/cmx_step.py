"""CMX training step: samples/s, MFU, and where the time goes (encoders vs rectification/fusion vs decoder).

    python benchmarks/cmx_step.py                                   # CMX-B2, batch 2, 240 x 320, fp32, CPU
    python benchmarks/cmx_step.py --device cuda --precision bf16 --batch 8 --height 480 --width 480 \
        --peak-tflops 989 --tag b2-bf16                             # the paper's SUN-RGBD setting on one GPU

The step is the training code itself: :class:`decur.evaluate.module.TransferModule` around :class:`decur.models.CMX`
(two MiT branches, RGB + HHA, 37 + 1 classes, decoder 512), AdamW, cross-entropy, on random images held on the
device. The split is measured, not estimated, by timing forward + backward of three nested pieces on the same
batch: the two MiT branches alone (every stage, no fusion), the branches with rectification and fusion (the
decoder's inputs), and the whole model; the differences are the share of rectification/fusion and of the decoder.
Medians over ``--repeats`` timed iterations after ``--warmup`` untimed ones; FLOPs from PyTorch's FLOP counter
(matrix multiplications and convolutions). Results go to ``benchmarks/results/cmx-<device>[-tag].{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from decur import __version__
from decur.augment import ViewPipeline
from decur.evaluate.module import TransferModule
from decur.evaluate.transfer.config import TransferOptimConfig
from decur.models import CMX, create_mit
from decur.train.host import tune_host

sys.path.insert(0, str(Path(__file__).parent))
from step_overhead import _machine, _timed

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))  # tests redirect it
CLASSES = 38


def measure(args: argparse.Namespace) -> dict:
    """Time the pieces and the full step; returns the result dict."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    tune_host()
    model = CMX({m: create_mit(args.arch, 3) for m in ("rgb", "hha")}, CLASSES, args.decoder_dim)
    views = {m: ViewPipeline("none", 3, 8, (1.0, 1.0), [0.5] * 3, [0.25] * 3) for m in ("rgb", "hha")}
    module = TransferModule(model, views, False, TransferOptimConfig("adamw", 6e-5, 0.01, "poly"), CLASSES, 0).to(
        device
    )
    module.train()
    opt = torch.optim.AdamW(module.model.parameters(), lr=6e-5, weight_decay=0.01)
    n, h, w = args.batch, args.height, args.width
    batch = {m: torch.rand(n, 3, h, w, device=device) for m in ("rgb", "hha")}
    batch["mask"] = torch.randint(0, CLASSES, (n, h, w), device=device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    )
    x = module.inputs(batch)

    def encoders() -> None:
        with autocast:
            outs = [s for m in ("rgb", "hha") for s in model.encoders[m].forward_stages(x[m])]  # type: ignore[operator]
        sum(o.float().mean() for o in outs).backward()

    def fused() -> None:
        with autocast:
            outs = model.fused_stages(x)
        sum(o.float().mean() for o in outs).backward()

    def step() -> None:
        with autocast:
            loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer attached
    timings: dict[str, list[float]] = {"encoders": [], "fused": [], "step": []}
    pieces: dict[str, Callable[[], None]] = {"encoders": encoders, "fused": fused, "step": step}
    for name, fn in pieces.items():
        timings[name] = _timed(fn, device, args.warmup, args.repeats)
        opt.zero_grad(set_to_none=True)
    med = {k: statistics.median(v) for k, v in timings.items()}
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": _machine(device),
        "versions": {"torch": torch.__version__, "decur": __version__},
        "args": vars(args),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "seconds": med,
        "samples_per_s": n / med["step"],
        "split": {
            "encoders": med["encoders"] / med["step"],
            "rectification_fusion": max(0.0, med["fused"] - med["encoders"]) / med["step"],
            "decoder_loss_optimizer": max(0.0, med["step"] - med["fused"]) / med["step"],
        },
        "flops_per_step": flops,
        "achieved_tflops": flops / med["step"] / 1e12,
    }
    if args.peak_tflops:
        result["mfu"] = result["achieved_tflops"] / args.peak_tflops
    return result


def _markdown(r: dict) -> str:
    a, s = r["args"], r["split"]
    lines = [
        f"# CMX training step — {a['arch']} x 2 (RGB + HHA), batch {a['batch']}, {a['height']} x {a['width']}, "
        f"decoder {a['decoder_dim']}, {a['precision']}",
        "",
        f"{r['date']} · {r['machine']} · torch {r['versions']['torch']} · decur {r['versions']['decur']} · "
        f"{r['parameters_m']} M parameters",
        "",
        "| piece (forward + backward) | seconds | share of the step |",
        "|---|---|---|",
        f"| two MiT branches alone | {r['seconds']['encoders']:.3f} | {s['encoders']:.0%} |",
        f"| + rectification and fusion (4 stages) | {r['seconds']['fused']:.3f} | {s['rectification_fusion']:.0%} |",
        f"| full step (+ decoder, loss, AdamW) | {r['seconds']['step']:.3f} | {s['decoder_loss_optimizer']:.0%} |",
        "",
        f"Samples/s: {r['samples_per_s']:.2f} · {r['flops_per_step'] / 1e12:.2f} TFLOP per step · "
        f"{r['achieved_tflops']:.3f} TFLOP/s" + (f" · MFU {r['mfu']:.1%}" if "mfu" in r else ""),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--arch", default="mit_b2")
    p.add_argument("--decoder-dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H100 SXM bf16: 989)")
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    result = measure(args)
    name = f"cmx-{torch.device(args.device).type}" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
