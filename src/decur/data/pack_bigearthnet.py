"""``decur data pack --dataset bigearthnet|bigearthnet_v2``: BigEarthNet's 14 small GeoTIFFs per patch → one store.

BigEarthNet-MM v1.0 has 590,326 patches (269,695 in the 19-class splits used for transfer), v2.0 549,488, each
as 12 S2 + 2 S1 single-band GeoTIFFs of 120 x 120 px or less: a fine-tuning epoch opens millions of small files.
The store keeps every split's samples, preprocessed exactly as the raw readers return them:

    index.json   format, version, patches per split, label names, band layout, patch names (S2) in store order
    s1.npy       float16 [n, 2, 120, 120]     VV, VH in dB, 2 % outliers cut per image
    s2.npy       uint8   [n, bands, 120, 120] the paper's 8-bit S2 (x / 10000 · 255, clipped), 20/60 m bands resampled
    labels.npy   uint8   [n, 19]              the 19-class multi-hot

``as_float`` of a packed sample equals the raw reader's sample up to float16 rounding of S1 (S2 and labels exactly).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from decur.data.bigearthnet import LABELS_19, BigEarthNetMM, BigEarthNetV2, check_modalities, sentinel_stats
from decur.data.errors import DatasetError
from decur.data.pack import refuse_existing_store
from decur.data.workers import PartialFiles, map_in_workers

FORMAT = "decur-bigearthnet-pack/1"
SPLITS = {"v1": ("train", "val", "test"), "v2": ("train", "validation", "test")}


def _reader(root: str, version: str, split: str, insert_b10: bool) -> BigEarthNetMM | BigEarthNetV2:
    if version == "v1":
        return BigEarthNetMM(root, split, insert_b10=insert_b10)
    return BigEarthNetV2(root, split, insert_b10=insert_b10)


def pack_bigearthnet(
    root: str | Path,
    out: str | Path,
    version: str = "v1",
    workers: int = 2,
    insert_b10: bool = True,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Pack every split of a BigEarthNet release folder into ``out`` (layout in the module docstring).

    All or nothing, as ``decur.data.pack.pack_ssl4eo_s12``: a bad file, a dead worker or Ctrl-C leaves ``out``
    as it was.

    Args:
        root: The release folder (v1.0: S2/S1 folders and split lists; v2.0: folders and ``metadata.parquet``).
        out: The store folder.
        version: ``v1`` (BigEarthNet-MM v1.0) or ``v2`` (reBEN).
        workers: Reading processes (``0``: this process).
        insert_b10: Insert the empty B10 (13 bands, the paper's choice).
        progress: Print patches/s and the ETA.
        overwrite: Replace a store already at ``out``.

    Raises:
        DatasetError: From the raw readers, naming the first bad file.

    """
    if version not in SPLITS:
        raise ValueError(f"version must be v1 or v2, got {version!r}")
    out = Path(out)
    refuse_existing_store(out, overwrite)
    readers = {s: _reader(str(root), version, s, insert_b10) for s in SPLITS[version]}
    jobs = [(s, i) for s, r in readers.items() for i in range(len(r))]
    n, bands = len(jobs), 13 if insert_b10 else 12
    out.mkdir(parents=True, exist_ok=True)
    with PartialFiles(out) as files:
        s1 = np.lib.format.open_memmap(files.path("s1.npy"), "w+", np.float16, (n, 2, 120, 120))
        s2 = np.lib.format.open_memmap(files.path("s2.npy"), "w+", np.uint8, (n, bands, 120, 120))
        labels = np.lib.format.open_memmap(files.path("labels.npy"), "w+", np.uint8, (n, len(LABELS_19)))
        start = time.perf_counter()
        init = (str(root), version, insert_b10)
        for done, (k, a, b, y) in enumerate(map_in_workers(_read, enumerate(jobs), workers, _init_worker, init, 16), 1):
            s1[k], s2[k], labels[k] = a, b, y
            if progress and (done % 200 == 0 or done == n):
                rate = done / (time.perf_counter() - start)
                print(f"\rpacked {done}/{n} patches, {rate:.0f}/s, ETA {(n - done) / rate / 60:.1f} min", end="")
        if progress:
            print()
        for array in (s1, s2, labels):
            array.flush()
        del s1, s2, labels, array
        _write_index(files, readers, version, insert_b10, root)
        files.commit()
    return out


def _write_index(files: PartialFiles, readers: dict[str, Any], version: str, insert_b10: bool, root: Any) -> None:
    offsets, position = {}, 0
    for split, reader in readers.items():
        offsets[split] = [position, position + len(reader)]
        position += len(reader)
    index = {
        "format": FORMAT,
        "version": version,
        "splits": offsets,
        "insert_b10": insert_b10,
        "labels": list(LABELS_19),
        "source": str(root),
        "names": [reader.locate(i)[0] for reader in readers.values() for i in range(len(reader))],
    }
    files.path("index.json").write_text(json.dumps(index, indent=1))


_READERS: dict[str, Any] = {}


def _init_worker(root: str, version: str, insert_b10: bool) -> None:
    for split in SPLITS[version]:
        _READERS[split] = _reader(root, version, split, insert_b10)


def _read(job: tuple[int, tuple[str, int]]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    k, (split, i) = job
    sample = _READERS[split][i]
    s2 = (sample["s2"] * 255).round().numpy().astype(np.uint8)
    return k, sample["s1"].numpy().astype(np.float16), s2, sample["label"].numpy().astype(np.uint8)


def is_packed_bigearthnet(root: str | Path) -> bool:
    """True when ``root`` holds a store written by ``pack_bigearthnet``."""
    index = Path(root) / "index.json"
    return index.is_file() and json.loads(index.read_text()).get("format") == FORMAT


class PackedBigEarthNet(Dataset[dict[str, Tensor]]):
    """One split of a ``pack_bigearthnet`` store: ``s1`` (float16), ``s2`` (uint8), ``label`` (float32 19-hot).

    Args:
        root: The store folder.
        split: ``train``, ``val`` / ``validation`` or ``test``.

    """

    def __init__(self, root: str | Path, split: str = "train", modalities: Sequence[str] = ("s1", "s2")) -> None:
        self.root = Path(root)
        self.modalities = check_modalities(modalities)
        index_path = self.root / "index.json"
        if not is_packed_bigearthnet(self.root):
            raise DatasetError(index_path, f"is not a {FORMAT} store", "run `decur data pack --dataset bigearthnet`")
        index = json.loads(index_path.read_text())
        names = {"val": "validation", "validation": "val"}
        key = split if split in index["splits"] else names.get(split, split)
        if key not in index["splits"]:
            raise DatasetError(index_path, f"has no split {split!r} (has {list(index['splits'])})", "pick one")
        self.start, self.stop = index["splits"][key]
        self.insert_b10 = bool(index["insert_b10"])
        self._arrays: dict[str, Any] | None = None  # opened lazily, once per worker process
        self._names: list[str] | None = None

    @property
    def stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Band statistics of the pretraining data (SSL4EO-S12), which the encoders were normalised with."""
        return sentinel_stats(self.insert_b10)

    def __len__(self) -> int:
        return self.stop - self.start

    def locate(self, index: int) -> tuple[str, None]:
        """Sample ``index``'s id (its S2 patch name, when the store records names) and no file (``decur embed``)."""
        if self._names is None:
            index_file = json.loads((self.root / "index.json").read_text())
            self._names = list(index_file.get("names", [])) or [f"{k:07d}" for k in range(self.stop)]
        return str(self._names[self.start + index]), None

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self._arrays is None:
            self._arrays = {m: np.load(self.root / f"{m}.npy", mmap_mode="r") for m in ("s1", "s2", "labels")}
        k = self.start + index
        a = self._arrays
        out = {m: torch.from_numpy(np.array(a[m][k])) for m in self.modalities}
        return {**out, "label": torch.from_numpy(np.array(a["labels"][k])).float()}


def pack_command(root: str, out: str, options: dict[str, Any]) -> tuple[Path, str]:
    """``decur data pack --dataset bigearthnet[_v2]``: the store (every split), and how a transfer config reads it."""
    version = "v2" if options["dataset"] == "bigearthnet_v2" else "v1"
    store = pack_bigearthnet(root, out, version, options.get("workers", 2), overwrite=bool(options.get("overwrite")))
    return store, "use it as `root` of decur transfer dataset=bigearthnet"
