"""``decur data pack``: convert SSL4EO-S12's 15-26 small GeoTIFFs per season into two memory-mapped arrays.

Store layout (one folder)::

    index.json   ids, seasons per location, s2 product, tile size, format version, season pairing rule
    s1.npy       float16 [locations, 4, 2, size, size]   backscatter in dB, 2 % outliers already cut per image
    s2.npy       uint8   [locations, 4, bands, size, size] the paper's 8-bit S2 (x / 10000 · 255, clipped),
                                                           20/60 m bands already resampled to the 10 m grid

Why ``.npy`` memory maps: every (location, season) slab is contiguous, so a sample reads exactly the seasons it
draws with plain memory copies and no decoding; the OS page cache does the rest, and any number of loader workers
share it: the fastest of the read paths ``benchmarks/loader_throughput.py`` compares (raw GeoTIFF, HDF5, this
store; ``benchmarks/results/loader-cpu.md``). The paper's preprocessing is applied once, when packing. The cost is
no compression: S2 at 8 bit is 3.6 MB per location (4 seasons), S1 at float16 1.1 MB.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from decur.data.errors import DatasetError
from decur.data.ssl4eo_s12 import PAIRING, SSL4EOS12, STATS
from decur.data.workers import PartialFiles, map_in_workers

FORMAT = "decur-ssl4eo-s12-pack/2"
"""Format 2 pairs the S1 and S2 seasons by acquisition date; format 1 (decur before 2026-12) paired them by sorted
folder name, which pairs e.g. a December S1B scene with a June S2 scene, and is refused: re-pack."""
SEASONS = 4


def pack_ssl4eo_s12(
    root: str | Path,
    out: str | Path,
    s2_product: str = "s2c",
    size: int = 264,
    workers: int = 2,
    void_ids: list[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Pack a raw SSL4EO-S12 folder into ``out`` (see the module docstring for the layout).

    All or nothing: the arrays are written under ``.partial`` names and renamed, index last, only when every
    location was read; a bad file, a dead worker or Ctrl-C leaves ``out`` as it was.

    Args:
        root: The raw release folder.
        out: The store folder.
        s2_product: ``s2c`` (L1C) or ``s2a`` (L2A).
        size: Tile side in pixels.
        workers: Reading processes (``0``: this process).
        void_ids: Location ids to leave out.
        progress: Print locations/s and the ETA.
        overwrite: Replace a store already at ``out``.

    Raises:
        DatasetError: From the raw reader, naming the first bad file; a store already at ``out``.

    """
    out = Path(out)
    refuse_existing_store(out, overwrite)
    raw = SSL4EOS12(root, s2_product=s2_product, size=size, void_ids=void_ids or ())
    out.mkdir(parents=True, exist_ok=True)
    n, bands = len(raw), len(raw.s2_bands)
    counts = [0] * n
    start = time.perf_counter()
    init = (str(root), s2_product, size, list(void_ids or ()))
    with PartialFiles(out) as files:
        s1 = np.lib.format.open_memmap(files.path("s1.npy"), "w+", np.float16, (n, SEASONS, 2, size, size))
        s2 = np.lib.format.open_memmap(files.path("s2.npy"), "w+", np.uint8, (n, SEASONS, bands, size, size))
        for done, (i, a, b) in enumerate(map_in_workers(_read_location, range(n), workers, _init_worker, init, 4), 1):
            s1[i, : len(a)], s2[i, : len(b)] = a, b
            counts[i] = min(len(a), len(b))
            if progress and (done % 50 == 0 or done == n):
                rate = done / (time.perf_counter() - start)
                print(f"\rpacked {done}/{n} locations, {rate:.1f}/s, ETA {(n - done) / rate / 60:.1f} min", end="")
        if progress:
            print()
        s1.flush()
        s2.flush()
        del s1, s2
        index = {
            "format": FORMAT,
            "pairing": PAIRING,
            "ids": raw.ids,
            "seasons": counts,
            "s2_product": s2_product,
            "size": size,
        }
        files.path("index.json").write_text(json.dumps(index))
        files.commit()
    return out


def refuse_existing_store(out: Path, overwrite: bool) -> None:
    """A packed store is replaced only when asked.

    Raises:
        DatasetError: ``out`` holds a store (its ``index.json``) and ``overwrite`` is off.

    """
    if (out / "index.json").exists() and not overwrite:
        raise DatasetError(out, "already holds a packed store", "choose another folder or pass --overwrite")


_RAW: SSL4EOS12 | None = None  # the raw reader of a packing worker process


def _init_worker(root: str, product: str, size: int, void_ids: list[str]) -> None:
    global _RAW
    _RAW = SSL4EOS12(root, s2_product=product, size=size, void_ids=void_ids)


def _read_location(index: int) -> tuple[int, np.ndarray, np.ndarray]:
    raw = _RAW
    assert raw is not None
    seasons = raw.seasons(index)
    s1 = np.stack([raw._read_s1(f).numpy() for f in seasons["s1"][:SEASONS]]).astype(np.float16)
    s2 = [(raw._read_s2(f) * 255).round().numpy() for f in seasons[raw.s2_product][:SEASONS]]
    return index, s1, np.stack(s2).astype(np.uint8)


def read_index(root: Path) -> dict[str, Any]:
    """The ``index.json`` of a packed store, checked for its format and season pairing rule.

    Raises:
        DatasetError: Not a store, unreadable, or packed by an older decur (seasons paired by sorted folder name).

    """
    path = root / "index.json"
    if not path.is_file():
        raise DatasetError(path, "is missing: not a packed store", "run `decur data pack` first")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(path, f"cannot be read as JSON ({err})", "re-pack with `decur data pack`") from None
    if index.get("format") == "decur-ssl4eo-s12-pack/1":
        raise DatasetError(
            path,
            "was packed by an older decur that paired S1 and S2 seasons by sorted folder name (wrong wherever a "
            "location mixes S1A and S1B scenes)",
            f"re-pack it with `decur data pack` (this decur pairs seasons by {PAIRING})",
        )
    if index.get("format") != FORMAT or index.get("pairing") != PAIRING:
        got = f"format {index.get('format')!r}, pairing {index.get('pairing')!r}"
        raise DatasetError(path, f"has {got}, expected format {FORMAT!r}, pairing {PAIRING!r}", "re-pack")
    return index


class PackedSSL4EOS12(Dataset[dict[str, Tensor]]):
    """SSL4EO-S12 from a ``pack_ssl4eo_s12`` store; samples equal ``SSL4EOS12``'s after ``as_float``.

    S2 comes as ``uint8`` and S1 as ``float16`` (``decur.augment.as_float`` converts them on the training
    device), to keep the traffic between loader workers and the training process small.

    Reads only the seasons a sample draws. Args as ``SSL4EOS12`` (``views``, ``pair_seasons``).
    """

    def __init__(self, root: str | Path, views: int = 2, pair_seasons: bool = True) -> None:
        self.root = Path(root)
        index = read_index(self.root)
        self.ids, self.counts = index["ids"], index["seasons"]
        self.s2_product, self.size = index["s2_product"], index["size"]
        self.views, self.pair_seasons = views, pair_seasons
        self._arrays: dict[str, Any] | None = None  # opened lazily, once per worker process

    @property
    def stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Band-wise mean and std per modality (as ``SSL4EOS12``)."""
        return {"s1": STATS["s1"], "s2": STATS[self.s2_product]}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self._arrays is None:
            self._arrays = {m: np.load(self.root / f"{m}.npy", mmap_mode="r") for m in ("s1", "s2")}
        count = self.counts[index]
        pick_s1 = torch.randint(0, count, (self.views,)).tolist()
        pick_s2 = pick_s1 if self.pair_seasons else torch.randint(0, count, (self.views,)).tolist()
        # S1 stays float16 and S2 uint8 (x / 255 on the device): 3.6x fewer bytes through worker queues than float32
        s1 = torch.from_numpy(np.stack([self._arrays["s1"][index, k] for k in pick_s1]))
        s2 = torch.from_numpy(np.stack([self._arrays["s2"][index, k] for k in pick_s2]))
        return {"s1": s1, "s2": s2}


def pack_command(root: str, out: str, options: dict[str, Any]) -> tuple[Path, str]:
    """``decur data pack --dataset ssl4eo_s12``: the store, and how a config reads it."""
    void = Path(options["void_ids"]).read_text().split() if options.get("void_ids") else None
    store = pack_ssl4eo_s12(
        root, out, options.get("s2_product", "s2c"), options.get("size", 264), options.get("workers", 2), void,
        overwrite=bool(options.get("overwrite")),
    )  # fmt: skip
    return store, "use it as data.root with data.dataset=ssl4eo_s12"
