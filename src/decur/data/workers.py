"""Work spread over processes whose every error reaches the caller, and stores written all or nothing.

Used by ``decur data pack`` (both stores). Two failure modes of ``multiprocessing.Pool`` are ruled out: an
exception that cannot be unpickled in the parent, and a worker that dies (killed, out of memory), both of which
leave ``Pool.imap`` waiting forever. ``concurrent.futures.ProcessPoolExecutor`` raises ``BrokenProcessPool``
for the second; every decur error pickles for the first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from decur.data.errors import DatasetError

T = TypeVar("T")
R = TypeVar("R")


def map_in_workers(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    chunksize: int = 1,
) -> Iterator[R]:
    """``fn`` over ``items`` in ``workers`` spawned processes (``0``: in this process), results in order.

    Raises:
        DatasetError: A worker process died (the message says so; the first bad file, when one is the cause, is
            raised as its own ``DatasetError`` instead).
        ValueError: ``workers`` is negative.

    """
    if workers < 0:
        raise ValueError(f"--workers must be 0 (this process) or more, got {workers}")
    if workers == 0:
        initializer(*initargs)
        yield from map(fn, items)
        return
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=initializer, initargs=initargs)
    try:
        yield from pool.map(fn, items, chunksize=chunksize)
    except BrokenProcessPool:
        raise DatasetError(
            "a worker process", "died while reading (killed, or out of memory)", "re-run with fewer --workers"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class PartialFiles:
    """Files written under ``NAME.partial`` names and renamed into place only when ``commit`` is called.

    Used as a context manager: leaving it without a commit (an error, Ctrl-C) removes every partial file, so a
    failed run leaves neither half-written outputs nor a damaged earlier store.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        """Where to write ``name`` until the commit."""
        self.names.append(name)
        return self.folder / f"{name}.partial"

    def commit(self) -> None:
        """Rename every partial file to its name (each rename atomic)."""
        for name in self.names:
            os.replace(self.folder / f"{name}.partial", self.folder / name)
        self.names = []

    def __enter__(self) -> PartialFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.names:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / f"{name}.partial").unlink()
