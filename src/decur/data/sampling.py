"""Sample-level randomness that does not depend on workers, hook order or interruptions.

The sampler shuffles as a function of (seed, epoch) and shards over processes (a ``DistributedSampler``; with one
process a seeded shuffle), and hands each index out together with a seed derived from (seed, epoch, index). The
dataset wrapper runs the dataset's ``__getitem__`` under that seed, in a forked RNG, so random choices made while
loading (e.g. SSL4EO-S12's season draw) repeat exactly after a resume, whatever the number of workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from decur.data.errors import DatasetError
from decur.data.ssl4eo_v11 import full_batches


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixing the run seed, the epoch and the sample index."""
    return ((seed * 1_000_003 + epoch) * 2_654_435_761 + index) % (2**63 - 1)


class SeededSampler(DistributedSampler):
    """Yields ``(index, seed)``; Lightning calls ``set_epoch`` before every epoch.

    ``skip`` indices are left out at the start of epoch ``skip_epoch`` (a run resumed mid-epoch continues after the
    batches it had done); its length stays the whole epoch's, as Lightning counts the resumed batches on.
    """

    skip, skip_epoch = 0, 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = super().__iter__()
        if self.skip and self.epoch == self.skip_epoch:
            indices = itertools.islice(indices, self.skip, None)
        for index in indices:
            yield index, sample_seed(self.seed, self.epoch, index)


class SeededDataset(Dataset[dict[str, Tensor]]):
    """Wraps a dataset so that ``dataset[(index, seed)]`` loads with the CPU generator seeded by ``seed``.

    Only the CPU generator is reseeded (loading draws nothing on accelerators): ``torch.manual_seed`` would also
    queue a lazy seeding of every accelerator backend, recording a stack trace each time — 1.2 ms per sample,
    more than generating a synthetic sample.

    With ``skip_log``, a sample whose files are bad (``DatasetError``) is replaced by the next good one and
    the error is appended to that file (from any worker process), to be reported when the run ends.
    """

    def __init__(self, dataset: Dataset[dict[str, Tensor]], skip_log: Path | None = None) -> None:
        self.dataset = dataset
        self.skip_log = skip_log

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> dict[str, Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        for attempt in range(len(self)):
            position = (index + attempt) % len(self)
            try:
                if seed is None:
                    return self.dataset[position]
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(seed)
                    return self.dataset[position]
            except DatasetError as err:
                if self.skip_log is None:
                    raise
                with open(self.skip_log, "a") as log:
                    log.write(f"sample {position}: {err}\n")
        raise DatasetError(getattr(self.dataset, "root", "dataset"), "every sample is bad", "run decur data check")


def seeded_loader(
    dataset: Dataset[dict[str, Tensor]],
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    num_replicas: int = 1,
    rank: int = 0,
    skip_log: Path | None = None,
    drop_last: bool = True,
    start_epoch: int = 0,
    start_batch: int = 0,
) -> DataLoader[dict[str, Tensor]]:
    """The training loader: ``SeededSampler`` over ``SeededDataset``, full batches only.

    Shuffle and per-sample randomness are functions of (seed, epoch, index) only, so a resumed run replays the same
    batches. The loader's own generator keeps its base-seed draw off the global RNG, whose per-epoch reseed (in the
    training module) then alone decides the views. Workers persist across epochs; memory is pinned where a GPU is.

    ``start_epoch``: the epoch a resumed run starts in. Lightning creates the persistent workers' iterator of a
    resumed run before it calls ``set_epoch``, so without this the first resumed epoch would replay epoch 0's order
    (seen with ``num_workers > 0``: the loss diverged from the uninterrupted run at the first resumed step).
    ``start_batch``: the batches of that epoch the interrupted run had done (a step checkpoint); they are skipped.
    """
    sampler = SeededSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=drop_last)
    sampler.set_epoch(start_epoch)
    sampler.skip, sampler.skip_epoch = start_batch * batch_size, start_epoch
    return DataLoader(
        SeededDataset(dataset, skip_log=skip_log),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def shard_loader(
    dataset: Any,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    num_replicas: int = 1,
    rank: int = 0,
    start_epoch: int = 0,
    start_batch: int = 0,
) -> DataLoader[dict[str, Tensor]]:
    """The training loader of a file-sharded iterable dataset (``decur.data.ssl4eo_v11.SSL4EOS12v11``).

    The dataset takes process ``rank``'s files of every epoch itself, and its workers split them; ``len`` is the
    exact number of full batches (each worker batches its own samples, the rest of a worker's samples is dropped).
    Workers persist across epochs: each worker counts its passes from ``start_epoch``, which is how the epoch
    advances inside worker processes.
    """
    dataset.seed = seed
    dataset.shard(rank, num_replicas, start_epoch, start_batch)
    batches = full_batches(dataset.files_per_process, num_workers, batch_size, dataset.samples_per_file)
    if batches < 1:
        raise DatasetError(
            dataset.root,
            f"{dataset.files_per_process} file(s) per process hold no full batch of {batch_size}",
            "lower data.batch_size or use fewer processes or loader workers",
        )
    dataset.batches = (batches, batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
