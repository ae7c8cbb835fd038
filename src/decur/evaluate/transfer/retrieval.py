"""``task: retrieval``: cross-modal retrieval with a pretrained run's test-set embeddings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

from decur.augment import ViewPipeline
from decur.config import ConfigError
from decur.datasets import dataset_spec
from decur.evaluate.transfer.config import TransferConfig
from decur.evaluate.transfer.data import TransferData
from decur.evaluate.transfer.features import predict_all


def run_retrieval(run: TransferConfig, data: TransferData, output: Path, progress: bool) -> dict[str, Any]:
    """Cross-modal retrieval of the pretrained run's test-set embeddings (features extracted on the engine)."""
    # Lightning and the training module: only retrieval runs pay for them (transfer/__init__ imports this module)
    from decur.evaluate.module import EmbeddingModule
    from decur.evaluate.retrieval import pairwise_retrieval
    from decur.train.engine import build_trainer
    from decur.train.module import PretrainModule

    pretrained = PretrainModule.from_run(str(run.pretrained))
    use = run.modalities or [m for m in pretrained.model.modalities if m in data.bands]
    missing = sorted(set(use) - set(pretrained.model.modalities))
    if missing or len(use) < 2:
        raise ConfigError(
            f"transfer config field `modalities`: retrieval needs >= 2 modalities of the run "
            f"({pretrained.model.modalities}), got {use}"
        )
    module = EmbeddingModule(pretrained.model, {m: cast(ViewPipeline, pretrained.views[m]) for m in use})
    trainer = build_trainer(output, run.trainer, global_batch=run.batch_size, max_epochs=1, progress=progress)
    batch = run.eval_batch_size or (1 if dataset_spec(run.dataset).mixed_sizes else run.batch_size)
    got = predict_all(trainer, module, data.test, batch, run.num_workers)
    feats = {m: got[f"feat/{m}"] for m in use}
    embs = {m: got[f"emb/{m}"] for m in use}
    common = int(pretrained.objective.common_dim)
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(run),
        "setting": "pretrained",
        "common_dim": common,
        "test_samples": len(data.test),  # type: ignore[arg-type]
        "retrieval": pairwise_retrieval(feats, embs, common),
        "runs": [{"rank": trainer.global_rank}],
    }
    if trainer.is_global_zero:
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return summary
