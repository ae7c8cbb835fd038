"""Linear-probe mAP of one set of pretrained weights fed its own input transform and mismatched ones.

    python benchmarks/transform_mismatch.py runs/decur-synthetic      # the run `make demo` writes

Not a speed measurement: it answers "what happens if I feed weights inputs prepared by another rule" (issue 25,
docs/weights.md). The weights are read as every decur command reads them (:func:`decur.weights.read_pretrained`),
so the matching transform is the one recorded with them. Frozen encoders (eval mode) on the built-in synthetic
scenes (train and test sets of the run's evaluation), pooled features of all modalities concatenated, the same
logistic-regression probe as the built-in evaluation (:func:`decur.evaluate.probe.probe_map`), for:

- ``matched``: the recorded transform (decur's: standardised with the run's band statistics);
- ``release_8bit``: those standardised values as the official release stores them,
  ``floor(clip(z/4 + 1/2, 0, 1) * 255) / 255`` (what weights trained on decur's rule see when a user prepares data
  with the release's rule);
- ``unstandardised``: the reader's values without the standardisation (as torchgeo's ``DN/10000`` gives S2
  reflectances on a 0-1 scale to weights that expect z-scores).

The probe re-standardises the *features* (as the built-in evaluation does), so what is measured is what the
encoders lose, not a scale the head could undo. Results go to ``benchmarks/results/transform_mismatch.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from decur.config import load_config
from decur.data.build import build_dataset
from decur.data.transforms import InputTransform
from decur.evaluate.probe import probe_map
from decur.weights import read_pretrained

RESULTS = Path(os.environ.get("DECUR_BENCH_RESULTS", Path(__file__).parent / "results"))


def as_release_storage(t: InputTransform) -> InputTransform:
    """``t`` with its standardisation replaced by the release's 8-bit storage of the same statistics
    (``release_8bit``: ``floor(clip(z/4 + 1/2, 0, 1) * 255) / 255`` of the standardised value)."""
    steps = [{**s, "op": "release_8bit"} if s["op"] == "standardize" else s for s in t.steps]
    return dataclasses.replace(t, rule="ssl4eo_release", steps=steps)


@torch.no_grad()
def features(encoders: dict[str, torch.nn.Module], data: Dataset, prepare: Callable) -> Tensor:
    """Concatenated pooled features of every modality, inputs prepared by ``prepare(modality, raw)``."""
    out = []
    for batch in DataLoader(data, batch_size=128):
        out.append(torch.cat([enc(prepare(m, batch[m])) for m, enc in encoders.items()], dim=1))
    return torch.cat(out)


def measure(run: Path, train: int | None, test: int | None) -> dict:
    """mAP micro / macro per variant (module docstring)."""
    pre = read_pretrained(run)
    encoders = {m: pre.encoder(m).eval() for m in pre.modalities}
    cfg = load_config(run / "config.yaml")
    sizes = {"train": train or cfg.eval.train_samples, "test": test or cfg.eval.test_samples}
    sets = {split: build_dataset(cfg, seed_offset=offset, length=sizes[split])  # the built-in evaluation's scenes
            for split, offset in (("train", 1_000), ("test", 2_000))}  # fmt: skip
    matched = {m: pre.transforms[m] for m in pre.modalities}
    release = {m: as_release_storage(t) for m, t in matched.items()}
    variants: dict[str, Callable[[str, Tensor], Tensor]] = {
        "matched": lambda m, x: matched[m](x),
        "release_8bit": lambda m, x: release[m](x),
        "unstandardised": lambda m, x: x,
    }
    labels = {split: torch.cat([b["label"] for b in DataLoader(ds, batch_size=256)]) for split, ds in sets.items()}
    results = {}
    for name, prepare in variants.items():
        tr, te = (features(encoders, sets[s], prepare) for s in ("train", "test"))
        results[name] = probe_map(tr, labels["train"], te, labels["test"])
        print(f"{name:<15} mAP micro {results[name]['map_micro']:.3f}  macro {results[name]['map_macro']:.3f}")
    return {"run": str(run), "arch": pre.arch, "samples": sizes, "rules": {m: t.rule for m, t in matched.items()},
            "map": results}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a decur run folder pretrained on the built-in synthetic data")
    p.add_argument("--train", type=int, default=None, help="training scenes (default: the run's eval setting)")
    p.add_argument("--test", type=int, default=None)
    args = p.parse_args()
    result = measure(args.run, args.train, args.test)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transform_mismatch.json").write_text(json.dumps(result, indent=2))
    rows = "\n".join(f"| {n} | {r['map_micro']:.3f} | {r['map_macro']:.3f} |" for n, r in result["map"].items())
    (RESULTS / "transform_mismatch.md").write_text(
        f"# The same weights under the matching and mismatched input transforms\n\n{result['arch']} encoders of "
        f"`{result['run']}` (rules {result['rules']}), frozen; linear probe on {result['samples']} synthetic "
        f"scenes.\n\n| inputs | mAP micro | mAP macro |\n|---|---|---|\n{rows}\n"
    )


if __name__ == "__main__":
    main()
