"""Every seed of a transfer run, one after the other, and their aggregate (see ``decur.evaluate.transfer``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from decur.evaluate.start import Transformed, starting_point
from decur.evaluate.transfer.config import TransferConfig
from decur.evaluate.transfer.data import load_data
from decur.evaluate.transfer.retrieval import run_retrieval
from decur.evaluate.transfer.seed import run_seed
from decur.train.engine import is_launcher, run_lock


def run_transfer(run: TransferConfig, output: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate once per seed (each in ``output/seed<k>``); mean and std over seeds.

    Args:
        run: The transfer config (validated here).
        output: Folder for the seed runs and the aggregate ``results.json``.
        progress: Show Lightning's progress bar.

    Returns:
        The aggregate written to ``output/results.json``.

    Raises:
        ConfigError: An invalid field, or a seed folder that holds a run with another config.

    """
    run.validate()
    output = Path(output)
    with run_lock(output):
        return _run_all(run, output, progress)


def _run_all(run: TransferConfig, output: Path, progress: bool) -> dict[str, Any]:

    data = load_data(run)
    if run.task == "retrieval":
        return run_retrieval(run, data, output, progress)
    start = starting_point(run, data)
    if is_launcher():
        print(start.describe())
    data = dataclasses.replace(
        data, train=Transformed(data.train, start.transforms), test=Transformed(data.test, start.transforms)
    )
    results = [run_seed(run, seed, data, start, output / f"seed{seed}", progress) for seed in run.seeds or [0]]
    summary: dict[str, Any] = {
        # what ran: pretrained weights bring their own architecture, whatever the config's `arch` says
        "config": {**dataclasses.asdict(run), "arch": start.arch},
        "arch": start.arch,
        "protocol": run.resolved_protocol,
        "setting": run.setting(),
        "input_transforms": {m: t.to_card() for m, t in start.transforms.items()},
        "pretrained_kind": start.pretrained.kind if start.pretrained else None,
        "runs": results,
    }
    for key, value in results[0]["test"].items():
        if isinstance(value, float):
            values = torch.tensor([r["test"][key] for r in results], dtype=torch.float64)
            summary[key] = {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0}
    if results[0].get("rank", 0) == 0:
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(summary, indent=2))
    return summary
