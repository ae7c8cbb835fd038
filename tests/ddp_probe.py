"""``python -m tests.ddp_probe pretrain ...``: the real ``decur`` CLI, recording per rank what a DDP test checks.

Writes into ``$DECUR_PROBE``: ``indices-r<rank>-e<epoch>.txt`` (the sample indices the rank's sampler handed out),
``loss-r<rank>.txt`` (the global loss of every step), ``weights-r<rank>.pt`` (the final weights of the rank),
``files-r<rank>-e<epoch>-w<worker>.txt`` (the SSL4EO-S12 v1.1 shards a loader worker read).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from decur.cli import main
from decur.data import sampling, ssl4eo_v11
from decur.train import module

OUT = Path(os.environ["DECUR_PROBE"])
original_iter = sampling.SeededSampler.__iter__
original_step = module.PretrainModule.training_step


def recording_iter(self):
    items = list(original_iter(self))
    (OUT / f"indices-r{self.rank}-e{self.epoch}.txt").write_text(" ".join(str(i) for i, _ in items))
    return iter(items)


def recording_step(self, batch, idx):
    loss = original_step(self, batch, idx)
    with open(OUT / f"loss-r{self.global_rank}.txt", "a") as f:
        f.write(f"{float(loss.detach()):.9g}\n")
    return loss


original_files = ssl4eo_v11.SSL4EOS12v11.epoch_files


def recording_files(self, epoch, worker=0, workers=1):
    files = original_files(self, epoch, worker, workers)
    (OUT / f"files-r{self.rank}-e{epoch}-w{worker}.txt").write_text(" ".join(files))
    return files


def save_weights(self):
    torch.save(
        {k: v.detach().cpu() for k, v in self.model.state_dict().items()}, OUT / f"weights-r{self.global_rank}.pt"
    )


sampling.SeededSampler.__iter__ = recording_iter  # type: ignore[method-assign]
ssl4eo_v11.SSL4EOS12v11.epoch_files = recording_files  # type: ignore[method-assign]
module.PretrainModule.training_step = recording_step  # type: ignore[method-assign]
module.PretrainModule.on_train_end = save_weights  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
