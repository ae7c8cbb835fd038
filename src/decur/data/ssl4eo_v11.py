"""SSL4EO-S12 v1.1: Zarr-v2 zip shards of 64 locations x 4 timestamps, streamed per (node, process, worker).

Layout of the release (Blumenstiel et al. 2025, arXiv:2503.00168; github.com/DLR-MF-DAS/SSL4EO-S12-v1.1)::

    <split>/S1GRD/ssl4eos12_<split>_seasonal_data_000001.zarr.zip   bands (sample, time, band, y, x) float16 dB
    <split>/S2L1C/...same file names...                              int16 DN, 13 bands, + cloud_mask (uint8)
    <split>/S2L2A/...                                                int16 DN, 12 bands, + cloud_mask
    <split>/S2RGB/...                                                uint8, 3 bands

Each file holds the same 64 locations (``sample`` coordinate) in every modality, 4 timestamps each, 264 x 264 px,
each timestamp its own chunk. Modalities are named here as the release's folders in lower case: ``s1grd``,
``s2l1c``, ``s2l2a``, ``s2rgb``.

Reading: xarray over the zip files, as the release documents, opens and checks every file. zarr 3 opens these
Zarr-v2 zips only through its ``ZipStore`` (the release's ``xr.open_zarr('x.zarr.zip')`` works with zarr 2 only);
``open_shard`` passes a ``ZipStore``, which zarr 2.11+ and zarr 3 both provide, so either works and nothing is
pinned. The pixel chunks themselves, most of a worker's work, are decoded by ``read_timestamps`` straight from
the memory-mapped zip into reused buffers when the file has the release's layout, through xarray otherwise.

Sampling: a timestamp is a season. Each sample returns ``views`` timestamps (drawn without replacement) per
modality, stacked ``V x C x H x W``, the same timestamps for every modality (the paper's season pairing, as the
v1.0 reader). With ``max_cloud_fraction`` the draw takes timestamps whose S2 cloud mask (non-zero pixels, from
S2L1C or S2L2A, whichever is loaded) covers at most that share of the tile; when fewer than ``views`` qualify, the
least cloudy ones.

Preprocessing as the v1.0 reader and the paper: S2 DN → 8 bit (``(x − 1000) / 10000 · 255``, see
``S2_OFFSET``); S1 clipped per image and band to its 2nd-98th percentile; S2RGB as stored. Like the packed
v1.0 store, workers ship S2 and S2RGB as ``uint8`` and S1 as ``float16`` (``decur.augment.as_float`` divides 8-bit
bands by 255 on the training device), and convert only the timestamps a sample uses. Standardisation uses the
release's values (``STATS``, converted to these units: S2 (DN − 1000) / 10000, S2RGB / 255, S1 dB), applied in
the view pipelines.

Sharding (``SSL4EOS12v11``, an ``IterableDataset``): every epoch the file list is permuted by (seed, epoch);
each process takes ``n_files // world_size`` whole files of it (the few left over rotate with the permutation, so
every process reads the same number of samples and no file is read twice in an epoch), and its loader workers split
those files round-robin. A worker reads one file at a time — a file's 64 locations are spread over the globe, so
a batch from one file is still a random sample of locations — and yields its locations in a seeded random order.
Deterministic for a given seed, world size and worker count; resumable at epoch boundaries (decur's pretraining
checkpoints at epoch ends): the epoch of a worker's n-th pass is ``start_epoch + n``.
"""

from __future__ import annotations

import json
import mmap
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from decur.data.errors import DatasetError
from decur.data.preprocess import cut_outliers, cut_outliers_half
from decur.datasets import SSL4EO_V11_PRODUCTS
from decur.geometry import as_float

MODALITIES = SSL4EO_V11_PRODUCTS
"""decur name → (release folder, bands) (``decur.datasets.SSL4EO_V11_PRODUCTS``)."""
SAMPLES_PER_FILE = 64
# the release README's standardisation values, in the release's units (DN, dB, 8-bit)
_L1C_MEAN = [
    2607.345,
    2393.068,
    2320.225,
    2373.963,
    2562.536,
    3110.071,
    3392.832,
    3321.154,
    3583.77,
    1838.712,
    1021.753,
    3205.112,
    2545.798,
]
_L1C_STD = [
    786.523,
    849.702,
    875.318,
    1143.578,
    1126.248,
    1161.98,
    1273.505,
    1246.79,
    1342.755,
    576.795,
    45.626,
    1340.347,
    1145.036,
]
_L2A_MEAN = [
    1793.243,
    1924.863,
    2184.553,
    2340.936,
    2671.402,
    3240.082,
    3468.412,
    3563.244,
    3627.704,
    3711.071,
    3416.714,
    2849.625,
]
_L2A_STD = [
    1160.144,
    1201.092,
    1219.943,
    1397.225,
    1400.035,
    1373.136,
    1429.17,
    1485.025,
    1447.836,
    1652.703,
    1471.002,
    1365.307,
]
_RELEASE = {
    "s2l1c": (_L1C_MEAN, _L1C_STD),
    "s2l2a": (_L2A_MEAN, _L2A_STD),
    "s2rgb": ([100.708, 87.489, 61.932], [68.550, 47.647, 40.592]),
    "s1grd": ([-12.577, -20.265], [5.179, 5.872]),
}
S2_OFFSET = 1000
"""Digital-number offset of v1.1's S2L1C and S2L2A, removed before the 8-bit step: ``reflectance = (DN − 1000) / 1e4``.

Sentinel-2 products of processing baseline 04.00 and later (ESA, 25 January 2022; the whole archive since the
Collection-1 reprocessing) store ``DN = 10000 · reflectance + 1000`` (``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET`` =
−1000 in the product metadata). The v1.1 release does not say so in its README or loader, but its own statistics
(``_RELEASE``, from the release README) show it, in every file: the S2L1C means are v1.0's plus 1000–1028 DN in
all 13 bands, and B10 (cirrus, near-zero reflectance) has mean 1021.8 and std 45.6 against v1.0's 22.1 and 51.2 — a
std that small is only possible when (almost) every pixel of the release carries the offset (with a share *p* of
offset files the std would be at least 1000·√(p(1−p)), so *p* > 0.998). S2L2A's means, 1793 DN for B1, are likewise
about 1000 above L2A surface reflectance. Applying v1.0's ``x / 10000 · 255`` to the raw DN would shift every band
up by 25 levels of 8 bit and clip at a reflectance of 0.9. S2RGB (8-bit already) and S1GRD (dB) have no offset.
"""
_OFFSET = {"s2l1c": S2_OFFSET, "s2l2a": S2_OFFSET, "s2rgb": 0, "s1grd": 0}
_SCALE = {"s2l1c": 1e-4, "s2l2a": 1e-4, "s2rgb": 1 / 255, "s1grd": 1.0}
STATS: dict[str, tuple[list[float], list[float]]] = {
    m: ([(v - _OFFSET[m]) * _SCALE[m] for v in mean], [v * _SCALE[m] for v in std])
    for m, (mean, std) in _RELEASE.items()
}
"""Per-band mean/std in the units returned here (S2 (DN − 1000) / 10000, S2RGB / 255, S1 dB)."""


def open_shard(path: Path) -> Any:
    """The xarray dataset of one ``.zarr.zip`` file (Zarr v2 format), with zarr 2 or zarr 3.

    Raises:
        DatasetError: If the file is not a readable Zarr zip (the message names it).

    """
    import xarray as xr
    from zarr.storage import ZipStore

    try:
        return xr.open_zarr(ZipStore(str(path), mode="r"), consolidated=None, chunks=None)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        raise DatasetError(
            path, f"not a readable Zarr zip file ({type(err).__name__}: {err})", "re-download this file of the release"
        ) from None
    except Exception as err:  # zarr's own errors (GroupNotFoundError, ...) have no common base class
        raise DatasetError(
            path, f"not a Zarr-v2 group ({type(err).__name__}: {err})", "re-download this file of the release"
        ) from None


def _release_layout(path: Path, variable: str, times: list[int]) -> tuple[dict, list[int], dict] | None:
    """``(zarray metadata, shape, {t: zip member})`` of ``variable`` in the release's layout, else ``None``.

    The release's layout: one stored (undeflated) chunk per timestamp holding every location, no filters, C order.
    """
    with zipfile.ZipFile(path) as zf:
        try:
            meta = json.loads(zf.read(f"{variable}/.zarray"))
        except KeyError:
            return None
        shape, chunks = list(meta["shape"]), list(meta["chunks"])
        if meta.get("zarr_format") != 2 or meta.get("filters") or meta.get("order", "C") != "C" or len(shape) < 2:
            return None
        if chunks != [shape[0], 1, *shape[2:]]:
            return None
        sep = meta.get("dimension_separator") or "."
        members: dict[int, zipfile.ZipInfo] = {}
        for t in times:
            try:
                members[t] = zf.getinfo(f"{variable}/" + sep.join(["0", str(t)] + ["0"] * (len(shape) - 2)))
            except KeyError:
                return None
            if members[t].compress_type != zipfile.ZIP_STORED:
                return None
    return meta, shape, members


def read_timestamps(
    path: Path, variable: str, times: list[int], buffers: dict[Any, np.ndarray] | None = None
) -> dict[int, np.ndarray] | None:
    """Timestamps ``times`` of ``variable`` (``(sample, time, ...)``), decoded straight from the zip's chunks.

    The release's layout -- one chunk per timestamp holding every location, zip members stored, not deflated --
    lets the codec decode a chunk from the memory-mapped file into a reused buffer: 6-10x faster than the same
    chunk through xarray and zarr's ``ZipStore`` (which copy it twice and allocate fresh pages each time;
    ``benchmarks/loader_throughput.py``), and reading chunks is most of a loader worker's work. Any other layout
    (other chunking, filters, a deflated member, a chunk never written) returns ``None``; the caller then reads
    through xarray, the documented way.

    Args:
        path: A ``.zarr.zip`` file.
        variable: ``bands`` or ``cloud_mask``.
        times: The timestamps to decode.
        buffers: Decode into these arrays, keyed ``(path.parent.name, variable, t)``, created on first use and
            overwritten by the next call with the same key: the caller must be done with (or have copied) the
            previous arrays. ``None``: fresh arrays.

    Returns:
        ``{t: array (sample, ...)}``, or ``None`` when the file is not in the release's layout.

    Raises:
        DatasetError: A chunk that does not decode (corrupt or truncated), naming the file and the chunk.

    """
    import numcodecs

    layout = _release_layout(path, variable, times)
    if layout is None:
        return None
    meta, shape, members = layout
    codec = numcodecs.get_codec(meta["compressor"]) if meta["compressor"] else None
    chunk_shape, dtype = (shape[0], *shape[2:]), np.dtype(meta["dtype"])
    out = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for t, info in members.items():
            if mm[info.header_offset : info.header_offset + 4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack_from("<HH", mm, info.header_offset + 26)
            start = info.header_offset + 30 + name_len + extra_len
            key = (path.parent.name, variable, t)
            buf = buffers.get(key) if buffers is not None else None
            if buf is None or buf.shape != chunk_shape or buf.dtype != dtype:
                buf = np.empty(chunk_shape, dtype)
                if buffers is not None:
                    buffers[key] = buf
            try:
                with memoryview(mm)[start : start + info.compress_size] as raw:
                    if codec is None:
                        buf.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
                    else:
                        codec.decode(raw, out=buf)
            except (RuntimeError, ValueError) as err:  # numcodecs: corrupt or truncated chunk
                raise DatasetError(
                    path, f"chunk {info.filename} cannot be decoded ({err})", "re-download this file of the release"
                ) from None
            out[t] = buf
    return out


def shard_files(root: Path, modalities: list[str]) -> list[str]:
    """The file names present for every modality (sorted).

    Raises:
        DatasetError: A modality folder is missing or empty, or a file exists for some modalities only.

    """
    names: dict[str, set[str]] = {}
    for m in modalities:
        folder = root / MODALITIES[m][0]
        if not folder.is_dir():
            raise DatasetError(
                folder,
                "modality folder is missing",
                f"point data.root at a split folder of the release (train/ or val/) holding {MODALITIES[m][0]}/",
            )
        names[m] = {p.name for p in folder.glob("*.zarr.zip")}
        if not names[m]:
            raise DatasetError(folder, "no .zarr.zip files", "download the modality's files of this split")
    every = set.union(*names.values())
    for m, have in names.items():
        missing = sorted(every - have)
        if missing:
            raise DatasetError(
                root / MODALITIES[m][0] / missing[0],
                f"missing for {m} ({len(missing)} file(s) in all)",
                "download it for every modality, or list only the modalities you have",
            )
    return sorted(every)


def open_shards(root: Path, name: str, modalities: list[str]) -> dict[str, Any]:
    """One shard of every modality, opened and checked against each other.

    Raises:
        DatasetError: Naming the first file that is not a readable Zarr zip, has no ``bands`` variable or the
            wrong band count, or holds other sample ids than the first modality's file of the shard.

    """
    shards: dict[str, Any] = {}
    first: tuple[str, list[str]] | None = None
    for m in modalities:
        folder, bands = MODALITIES[m]
        path = root / folder / name
        ds = open_shard(path)
        if "bands" not in ds:
            raise DatasetError(path, "no `bands` variable", "re-download this file of the release")
        if ds["bands"].shape[2] != bands:
            raise DatasetError(
                path,
                f"{ds['bands'].shape[2]} bands, {m} has {bands}",
                "check that the file belongs to this modality folder",
            )
        ids = [str(s) for s in ds["sample"].values]
        if first is None:
            first = (folder, ids)
        elif ids != first[1]:
            raise DatasetError(
                path,
                f"sample ids differ from {first[0]}/{name} (e.g. {ids[:2]} vs {first[1][:2]})",
                "re-download both files of this shard",
            )
        shards[m] = ds
    return shards


class SSL4EOS12v11(IterableDataset[dict[str, Tensor]]):
    """SSL4EO-S12 v1.1 samples ``{modality: V x C x H x W}``, streamed file by file (see the module docstring).

    Args:
        root: A split folder of the release (``train/`` or ``val/``).
        modalities: Any subset of ``s1grd``, ``s2l1c``, ``s2l2a``, ``s2rgb``.
        views: Timestamps per sample (one per augmented view).
        max_cloud_fraction: Skip timestamps whose S2 cloud mask covers more than this share (``None``: no filter).
        seed: Shuffle seed.
        timestamp_draw: ``sample``: each location's timestamps drawn on their own; ``file``: one draw per file and
            epoch shared by its locations (with ``max_cloud_fraction``, by the file's mean cloud share per
            timestamp), so only those timestamps' chunks are decoded — each chunk holds all 64 locations of one
            timestamp, so per-sample draws decode all 4.
        files: Restrict to these file names (default: every file present for all modalities).

    Raises:
        DatasetError: Missing folders or files (the message names them and the fix).

    """

    def __init__(
        self,
        root: str | Path,
        modalities: list[str],
        views: int = 2,
        max_cloud_fraction: float | None = None,
        seed: int = 0,
        files: list[str] | None = None,
        timestamp_draw: str = "sample",
    ) -> None:
        if timestamp_draw not in ("sample", "file"):
            raise ValueError(f"timestamp_draw must be 'sample' or 'file', got {timestamp_draw!r}")
        self.timestamp_draw = timestamp_draw
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown or not modalities:
            raise ValueError(f"SSL4EO-S12 v1.1 modalities are {list(MODALITIES)}, got {modalities}")
        self.root, self.modalities, self.views = Path(root), list(modalities), views
        self.max_cloud_fraction, self.seed = max_cloud_fraction, seed
        self.files = files if files is not None else shard_files(self.root, self.modalities)
        self._file_number = {name: i for i, name in enumerate(self.files)}
        self.stats = {m: STATS[m] for m in self.modalities}
        first = open_shard(self.root / MODALITIES[self.modalities[0]][0] / self.files[0])
        self.samples_per_file = int(first.sizes["sample"])  # 64 in the release
        self.rank, self.world_size, self.start_epoch, self.start_batch = 0, 1, 0, 0
        self.batches: tuple[int, int] | None = None  # (full batches per epoch, batch size) once a loader is built
        self._passes = 0
        self._buffers: dict[Any, np.ndarray] = {}

    def shard(self, rank: int, world_size: int, start_epoch: int = 0, start_batch: int = 0) -> SSL4EOS12v11:
        """Read process ``rank``'s share of ``world_size``; the first pass is epoch ``start_epoch``.

        The first pass starts after its first ``start_batch`` batches (a run resumed mid-epoch).
        """
        if world_size > len(self.files):
            raise DatasetError(
                self.root,
                f"{len(self.files)} file(s) cannot feed {world_size} processes",
                "use fewer processes or more files",
            )
        self.rank, self.world_size, self.start_epoch, self.start_batch = rank, world_size, start_epoch, start_batch
        return self

    @property
    def files_per_process(self) -> int:
        """Whole files each process reads per epoch."""
        return len(self.files) // self.world_size

    def __len__(self) -> int:
        """Samples this process reads per epoch (64 per file in the release).

        Once a loader is built: the samples of its full batches (each worker batches its own files' samples).
        """
        if self.batches is not None:
            return self.batches[0] * self.batches[1]
        return self.files_per_process * self.samples_per_file

    def epoch_files(self, epoch: int, worker: int = 0, workers: int = 1) -> list[str]:
        """The files worker ``worker`` of this process reads in ``epoch``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = [self.files[i] for i in torch.randperm(len(self.files), generator=g).tolist()]
        per = self.files_per_process
        mine = order[self.rank * per : (self.rank + 1) * per]
        return mine[worker::workers]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.start_epoch + self._passes
        skip = self._skipped_samples(worker, workers) if self._passes == 0 else 0
        self._passes += 1
        for name in self.epoch_files(epoch, worker, workers):
            if skip >= self.samples_per_file:  # a whole file the interrupted run had used: not even opened
                skip -= self.samples_per_file
                continue
            # the draws depend on (seed, epoch, file) only, not on which worker reads the file
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 7_919 + self._file_number[name])
            samples = self.read_file(name, g)
            for _ in range(skip):
                next(samples, None)
            skip = 0
            yield from samples

    def _skipped_samples(self, worker: int, workers: int) -> int:
        """Samples worker ``worker`` leaves out at the start of a resumed epoch: its share of ``start_batch``.

        The loader takes batches from its workers in turn, passing over a worker that has run out, so batch ``j``
        of the epoch came from the worker whose turn it was.
        """
        if not self.start_batch or self.batches is None:
            return 0
        size = self.batches[1]
        left = [len(range(w, self.files_per_process, workers)) * self.samples_per_file // size for w in range(workers)]
        taken = [0] * workers
        done = 0
        while done < self.start_batch and any(left):
            for w in range(workers):
                if left[w] and done < self.start_batch:
                    left[w] -= 1
                    taken[w] += 1
                    done += 1
        return taken[worker] * size

    def read_file(self, name: str, g: torch.Generator) -> Iterator[dict[str, Tensor]]:
        """All locations of one file in random order, each with its timestamps drawn from ``g``."""
        shards = open_shards(self.root, name, self.modalities)
        first = next(iter(shards.values()))
        n, times = int(first.sizes["sample"]), int(first.sizes["time"])
        if times < self.views:
            raise DatasetError(self.root / name, f"{times} timestamps, {self.views} views asked", "lower views")
        clouds = self._cloud_fractions(name, shards)
        if self.timestamp_draw == "file":
            chosen = self._draw_times(times, None if clouds is None else clouds.mean(0), g).expand(n, -1)
        else:
            chosen = torch.stack([self._draw_times(times, None if clouds is None else clouds[i], g) for i in range(n)])
        needed = sorted(set(chosen.flatten().tolist()))
        arrays = {m: self._timestamps(name, m, shards[m], "bands", needed) for m in self.modalities}
        for i in torch.randperm(n, generator=g).tolist():
            yield {
                m: torch.stack([_preprocess(m, arrays[m][t][i]) for t in chosen[i].tolist()]) for m in self.modalities
            }

    def _timestamps(self, name: str, m: str, shard: Any, variable: str, times: list[int]) -> dict[int, np.ndarray]:
        """``{t: (sample, ...)}`` of one modality's file: straight from the zip, else through xarray."""
        # the buffers are reused file after file: _preprocess copies what it ships
        direct = read_timestamps(self.root / MODALITIES[m][0] / name, variable, times, self._buffers)
        if direct is not None:
            return direct
        return {t: np.asarray(shard[variable].isel(time=t).values) for t in times}

    def _draw_times(self, times: int, cloud: np.ndarray | None, g: torch.Generator) -> Tensor:
        order = torch.randperm(times, generator=g)
        if cloud is None or self.max_cloud_fraction is None:
            return order[: self.views]
        clear = [t for t in order.tolist() if cloud[t] <= self.max_cloud_fraction]
        if len(clear) >= self.views:
            return torch.tensor(clear[: self.views])
        return torch.tensor(np.argsort(cloud, kind="stable")[: self.views].tolist())  # the least cloudy ones

    def _cloud_fractions(self, name: str, shards: dict[str, Any]) -> np.ndarray | None:
        """Per (sample, time) cloud share from the first loaded S2 product with a mask."""
        if self.max_cloud_fraction is None:
            return None
        for m in ("s2l1c", "s2l2a"):
            if m in shards and "cloud_mask" in shards[m]:
                masks = self._timestamps(name, m, shards[m], "cloud_mask", list(range(int(shards[m].sizes["time"]))))
                return np.stack([(masks[t] > 0).mean(axis=(1, 2)) for t in sorted(masks)], 1)
        return None


def _s2_lookup() -> np.ndarray:
    dn = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int64)  # every int16, indexed by its bits
    return _to_8bit(dn)


def _to_8bit(dn: np.ndarray) -> np.ndarray:
    """Offset removed (``S2_OFFSET``), then the paper's ``x / 10000 · 255`` rounded half up, clipped to 8 bit."""
    return ((np.clip(dn.astype(np.int64) - S2_OFFSET, 0, 10000) * 255 + 5000) // 10000).astype(np.uint8)


_S2_8BIT = _s2_lookup()
"""The 8-bit value of every int16 digital number: one table lookup instead of five passes per image."""


def _preprocess(m: str, x: np.ndarray) -> Tensor:
    """One location-timestamp ``C x H x W`` as the loader ships it (converted to float on the training device).

    S2: the offset removed, then the paper's 8 bit, ``(x − 1000) / 10000 · 255`` rounded half up and clipped, as
    ``uint8`` (``as_float`` divides by 255); S2RGB: its ``uint8``; S1: NaN (no data) → the image's mean, the 2 %
    outliers cut per band, ``float16``.
    Always a copy: ``x`` may be a reused decode buffer.
    """
    if m == "s1grd":
        if x.dtype == np.float16 and not np.isnan(x).any():  # the release's type: the exact counting cut
            return cut_outliers_half(x).half()
        s1 = torch.from_numpy(x.astype(np.float32))
        return cut_outliers(torch.nan_to_num(s1, nan=float(s1.nanmean()))).half()
    if m == "s2rgb":
        return torch.from_numpy(x.astype(np.uint8))
    if x.dtype == np.int16:  # the release's S2 type
        return torch.from_numpy(np.take(_S2_8BIT, x.view(np.uint16)))
    return torch.from_numpy(_to_8bit(x))


def full_batches(files_per_process: int, workers: int, batch_size: int, per_file: int = SAMPLES_PER_FILE) -> int:
    """Full batches one process yields per epoch: each loader worker batches the samples of its own files."""
    workers = max(1, workers)
    return sum(len(range(w, files_per_process, workers)) * per_file // batch_size for w in range(workers))


TILE_METRES = 2640.0
"""A v1.1 tile's side on the ground: 264 pixels of 10 m, centred on the stored centre."""


class SSL4EOS12v11Locations(Dataset[dict[str, Tensor]]):
    """Every location of every shard, one timestamp each, by index (``decur embed``; training streams instead).

    Samples hold each modality as the training loader ships it, as float (S2 in 8-bit steps / 255 with the offset
    removed, S1 dB with its 2 % outliers cut, S2RGB / 255). ``locate`` gives the release's sample id with the
    timestamp, and the tile's footprint from the stored ``center_lat`` / ``center_lon`` and UTM ``crs``.

    Args:
        root: A split folder of the release (``train/`` or ``val/``).
        modalities: Of ``s1grd``, ``s2l1c``, ``s2l2a``, ``s2rgb``.
        timestamp: Which of each location's timestamps (0-3 in the release).

    Raises:
        DatasetError: Missing folders or files, or shards that disagree (``shard_files``, ``open_shards``).

    """

    def __init__(self, root: str | Path, modalities: list[str], timestamp: int = 0) -> None:
        self.root, self.modalities, self.timestamp = Path(root), list(modalities), timestamp
        self.files = shard_files(self.root, self.modalities)
        first = open_shards(self.root, self.files[0], self.modalities[:1])[self.modalities[0]]
        self.per_file = int(first.sizes["sample"])
        self._open: tuple[str, dict[str, Any]] | None = None  # the last file read, per worker process

    def __len__(self) -> int:
        return len(self.files) * self.per_file

    def _shards(self, index: int) -> tuple[dict[str, Any], int]:
        name = self.files[index // self.per_file]
        if self._open is None or self._open[0] != name:
            self._open = (name, open_shards(self.root, name, self.modalities))
        return self._open[1], index % self.per_file

    def __getitem__(self, index: int) -> dict[str, Tensor]:

        shards, i = self._shards(index)
        t = min(self.timestamp, int(next(iter(shards.values())).sizes["time"]) - 1)
        return {m: as_float(_preprocess(m, np.asarray(shards[m]["bands"][i, t].values))) for m in self.modalities}

    def locate(self, index: int) -> tuple[str, tuple[np.ndarray, str] | None]:
        """``<sample id>/<timestamp>`` and the tile's corners in lon / lat (from its centre and UTM CRS)."""
        shards, i = self._shards(index)
        ds = next(iter(shards.values()))
        name = f"{ds['sample'].values[i]}/{self.timestamp}"
        if not all(k in ds for k in ("center_lat", "center_lon", "crs")):
            return name, None
        from rasterio.warp import transform

        lat, lon, epsg = float(ds["center_lat"][i]), float(ds["center_lon"][i]), int(ds["crs"][i])
        crs = f"EPSG:{epsg}"
        (x,), (y,) = transform("EPSG:4326", crs, [lon], [lat])
        h = TILE_METRES / 2
        xs, ys = [x - h, x + h, x + h, x - h], [y - h, y - h, y + h, y + h]  # lower left, counter-clockwise
        lons, lats = transform(crs, "EPSG:4326", xs, ys)
        return name, (np.column_stack([lons, lats]), crs)


def pretrain_dataset(cfg: Any, **_: Any) -> SSL4EOS12v11:
    """The shards of ``cfg`` (a ``PretrainConfig``) as timestamp pairs of its products."""
    d = cfg.data
    return SSL4EOS12v11(
        str(d.root),
        [m.name for m in d.modalities],
        views=2,
        max_cloud_fraction=d.max_cloud_fraction,
        timestamp_draw=d.timestamp_draw,
    )
