"""``decur embed``: every sample's pooled features and its common / unique embedding, written as it is computed.

The forward pass runs on the training engine (``trainer.predict``: GPU, bf16, multi-process DDP). Each process
embeds its share of the samples (``r, r + w, ...``) and writes them in parts of ``rows_per_part`` rows to
``<out>.parts/`` (each part written aside and renamed, so a part is whole or absent); a killed run, re-run, embeds
only the samples no part holds. When every process is done, process 0 merges the parts into ``<out>`` in sample
order (parts read a few at a time: memory stays bounded by the part size), computes the per-dimension statistics
of the embedding, and removes the parts.

Columns (one row per sample; ``<m>`` is each modality):

- ``id``: the reader's sample id (SSL4EO-S12: ``<location>/<season folder>``; BigEarthNet: the S2 patch name);
- ``index``: the sample's position in the dataset;
- ``geometry`` (WKB polygon, longitude / latitude) and ``bbox`` (GeoParquet 1.1 covering), ``crs`` (the raster's
  own CRS): the footprint of the sample's georeferenced file; null for data without one (synthetic, RGB-D);
- ``feature_<m>``: the encoder's pooled feature (the input of linear probing and late fusion);
- ``common_<m>``, ``unique_<m>``: the projector's output split at ``common_dim`` (Eq. 2-3's dimensions), **raw**,
  as the projector gives them; the loss standardises them per dimension over a batch (BN(f(x)), Eq. 1), and the
  file's metadata holds each dimension's mean and standard deviation over all samples to do the same
  (``decur search`` does by default);
- ``fused``: the pooled features of every modality concatenated (late fusion), null when one is missing.

The file's metadata (``decur`` key) holds the weights' card (architecture, bands, input transforms, dimensions),
the data, the statistics and what each column means; ``geo`` is GeoParquet 1.1.0's.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from decur.config import ConfigError
from decur.data.paired import PairedFolders, read_image
from decur.data.ssl4eo_s12 import SSL4EOS12
from decur.data.ssl4eo_v11 import SSL4EOS12v11Locations
from decur.datasets import SSL4EO_V11_PRODUCTS, dataset_spec, resolve
from decur.embed.config import EmbedConfig, as_embed_error
from decur.embed.geo import bbox, corners_or_nan, geo_metadata, polygon_wkb
from decur.evaluate.start import Transformed, starting_point
from decur.evaluate.transfer import TransferConfig, TransferData, load_data
from decur.models.joint import projector_from_state
from decur.train.engine import build_trainer
from decur.weights import read_pretrained

FORMAT = "decur-embeddings"
VERSION = 1
WRITE = {"use_dictionary": ["id", "crs"], "compression": "zstd"}
"""Parquet settings: dictionary encoding only for the text columns (on float vectors it costs 7x the write time
and saves nothing), zstd compression."""


def embed(cfg: EmbedConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Embed every sample of ``cfg``'s dataset with ``cfg.source``'s encoders into ``out``.

    Args:
        cfg: A validated config.
        out: The file to write (``.parquet``; a folder for ``format: zarr``).
        overwrite: Replace an existing ``out`` (else it is refused).
        progress: Print samples/s and the ETA.

    Returns:
        ``{"rows", "out", "seconds", "columns", "resumed"}`` (on every process; ``rows`` is the merged count on 0).

    Raises:
        ConfigError: ``out`` exists, the parts of an unfinished run belong to other weights or data, or the
            weights do not fit the data.

    """
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists: pass --overwrite to replace it, or choose another --out")
    run = _transfer_run(cfg)
    data = _open_data(cfg, run)
    start = as_embed_error(lambda: starting_point(run, data))
    assert start.pretrained is not None
    pre = start.pretrained
    identity = {"source": str(Path(cfg.source or "").resolve()), "dataset": cfg.dataset, "split": cfg.split,
                "samples": len(data.test), "modalities": list(start.bands)}  # fmt: skip
    done = _resume(parts, identity, fresh=overwrite)
    todo = [i for i in range(len(data.test)) if i not in done]
    dataset = _Located(Transformed(data.test, start.transforms), data.test, list(start.bands), _shapes(data.test))
    common_dim = cfg.common_dim or pre.common_dim
    projectors = {m: _projector(pre.projectors[m]) for m in start.bands if m in pre.projectors and common_dim}
    if pre.projectors and not common_dim and progress:
        print(f"note: {cfg.source} records no common_dim: writing features only (give common_dim=N for the split)")
    for m, proj in projectors.items():
        width = [layer for layer in proj.modules() if isinstance(layer, nn.Linear)][-1].out_features
        if common_dim and common_dim > width:
            raise ConfigError(
                f"embed config field `common_dim`: {common_dim} common dimensions, but {m}'s projector gives {width}; "
                f"give common_dim=N with N < {width}"
            )
    module = EmbedModule(start.encoders(), projectors, int(common_dim or 0))
    writer = PartWriter(parts, cfg.rows_per_part, cfg.dtype, len(todo), progress)
    trainer = build_trainer(parts, cfg.trainer, global_batch=cfg.batch_size, max_epochs=1, progress=False,
                            extra_callbacks=[writer])  # fmt: skip
    rank, world = trainer.global_rank, trainer.world_size
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=todo[rank::world], num_workers=cfg.num_workers,
                        pin_memory=torch.cuda.is_available())  # fmt: skip
    started = time.perf_counter()
    if todo:
        trainer.predict(module, loader, return_predictions=False)
    if world > 1:
        trainer.strategy.barrier()
    summary: dict[str, Any] = {"out": str(out), "resumed": len(done), "rank": rank}
    if rank == 0:
        card = {"arch": pre.arch, "bands": start.bands, "common_dim": common_dim, "kind": pre.kind,
                "transforms": {m: t.to_card() for m, t in start.transforms.items()}}  # fmt: skip
        meta = {"format": FORMAT, "version": VERSION, "source": cfg.source, "card": card,
                "data": {k: v for k, v in asdict(cfg).items() if k not in ("trainer", "source")},
                "dtype": cfg.dtype, "values": VALUES}  # fmt: skip
        summary["rows"] = merge(parts, out, meta, cfg.format, cfg.rows_per_part)
        shutil.rmtree(parts)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


VALUES = (
    "feature_<m>: pooled encoder features; common_<m> / unique_<m>: the projector output's first common_dim / "
    "remaining dimensions, raw (standardise each dimension with stats[<m>] to get the training's BN(f(x))); "
    "fused: the feature_<m> concatenated in card.bands order"
)


class EmbedModule(L.LightningModule):
    """Pooled features and projector embeddings of each modality (eval mode, no gradients).

    Args:
        encoders: Modality → pooled-feature encoder.
        projectors: Modality → projector (absent for weights without one: no common / unique columns).
        common_dim: Leading embedding dimensions trained to agree across modalities.

    """

    def __init__(self, encoders: dict[str, nn.Module], projectors: dict[str, nn.Module], common_dim: int) -> None:
        super().__init__()
        self.encoders, self.projectors, self.common_dim = nn.ModuleDict(encoders), nn.ModuleDict(projectors), common_dim

    @torch.no_grad()
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``feature/<m>``, ``embedding/<m>`` (float32) and the batch's ``id``, ``index`` and footprint."""
        out: dict[str, Any] = {k: batch[k] for k in ("id", "index", "corners", "crs")}
        for m, encoder in self.encoders.items():
            present = batch[f"present/{m}"].bool()
            out[f"present/{m}"] = present
            every = bool(present.all())
            x = batch[m] if every else batch[m][present]  # a missing modality's placeholder is not encoded
            feat = encoder(x if len(x) else batch[m][:1]).float()[: len(x)]  # (but for the width, when none has it)
            out[f"feature/{m}"] = _scatter(feat, present)
            if m in self.projectors:
                out[f"embedding/{m}"] = _scatter(self.projectors[m](feat).float(), present)
        return out


def _scatter(rows: Tensor, present: Tensor) -> Tensor:
    """``rows`` of the present samples back at their places in the batch, zeros (written as nulls) elsewhere."""
    if len(rows) == len(present):
        return rows
    out = rows.new_zeros(len(present), rows.shape[1])
    out[present] = rows
    return out


class PartWriter(BasePredictionWriter):
    """Buffers a process's rows and writes a part file every ``rows`` rows (aside, then renamed: whole or absent)."""

    def __init__(self, folder: Path, rows: int, dtype: str, total: int, progress: bool) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.rows, self.total, self.progress = folder, rows, total, progress
        self.dtype = pa.float16() if dtype == "float16" else pa.float32()
        self.buffer: list[dict[str, Any]] = []
        self.done, self.started, self.last_print = 0, time.perf_counter(), 0.0
        self.common_dim = 0

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's rows; write a part when ``rows`` are buffered; show progress on process 0."""
        self.common_dim = int(cast(EmbedModule, pl_module).common_dim)
        self.buffer.append({k: v.cpu() if isinstance(v, Tensor) else v for k, v in prediction.items()})
        if sum(len(b["id"]) for b in self.buffer) >= self.rows:
            self._flush(trainer.global_rank)
        self.done += len(prediction["id"]) * trainer.world_size
        now = time.perf_counter()
        if self.progress and trainer.is_global_zero and (now - self.last_print > 10 or self.done >= self.total):
            rate = self.done / max(now - self.started, 1e-9)
            eta = max(self.total - self.done, 0) / max(rate, 1e-9) / 60
            print(f"embedded {min(self.done, self.total)}/{self.total} samples, {rate:.1f} samples/s, "
                  f"ETA {eta:.1f} min", flush=True)  # fmt: skip
            self.last_print = now

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write what is left in the buffer."""
        self._flush(trainer.global_rank)

    def _flush(self, rank: int) -> None:
        if not self.buffer:
            return
        table = rows_table(self.buffer, self.common_dim, self.dtype)
        self.buffer = []
        first = int(table["index"][0].as_py())
        path = self.folder / f"part-{rank:03d}-{first:010d}.parquet"
        aside = path.with_suffix(".partial")
        pq.write_table(table, aside, **WRITE)
        aside.replace(path)


def rows_table(batches: list[dict[str, Any]], common_dim: int, dtype: pa.DataType) -> pa.Table:
    """The rows of ``batches`` (``EmbedModule`` outputs) as an Arrow table with the columns of the module docstring."""
    ids = [i for b in batches for i in b["id"]]
    index = torch.cat([b["index"] for b in batches]).long().numpy()
    corners = torch.cat([b["corners"] for b in batches]).double().numpy()
    crs = [c for b in batches for c in b["crs"]]
    geoms, boxes = [], []
    for c in corners:
        ok = bool(np.isfinite(c).all())
        geoms.append(polygon_wkb(c) if ok else None)
        boxes.append(bbox(c) if ok else None)
    columns: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.string()),
        "index": pa.array(index, pa.int64()),
        "geometry": pa.array(geoms, pa.binary()),
        "bbox": pa.array(boxes, pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])),
        "crs": pa.array([c or None for c in crs], pa.string()),
    }
    mods = [k.split("/", 1)[1] for k in batches[0] if k.startswith("feature/")]
    present = {m: torch.cat([b[f"present/{m}"] for b in batches]).bool().numpy() for m in mods}
    for m in mods:
        columns[f"feature_{m}"] = _vectors(torch.cat([b[f"feature/{m}"] for b in batches]), present[m], dtype)
        if f"embedding/{m}" in batches[0]:
            z = torch.cat([b[f"embedding/{m}"] for b in batches])
            for name, part in ((f"common_{m}", z[:, :common_dim]), (f"unique_{m}", z[:, common_dim:])):
                if part.shape[1]:  # an all-common run has no unique column
                    columns[name] = _vectors(part, present[m], dtype)
    fused = torch.cat([torch.cat([b[f"feature/{m}"] for b in batches]) for m in mods], dim=1)
    columns["fused"] = _vectors(fused, np.logical_and.reduce([present[m] for m in mods]), dtype)
    return pa.table(columns)


def _vectors(x: Tensor, valid: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """``N x D`` rows as a fixed-size list column of ``dtype``, null where ``valid`` is false (never zeros)."""
    values = pa.array(x.numpy().astype(np.float16 if dtype == pa.float16() else np.float32).reshape(-1), dtype)
    mask = None if valid.all() else pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(values, int(x.shape[1]), mask=mask)


def merge(parts: Path, out: Path, meta: dict[str, Any], fmt: str = "parquet", rows: int = 4096) -> int:
    """The parts in ``parts`` merged into ``out`` in sample order, each sample once, with the metadata.

    Reads each part's ``index`` column first (the order), the vector columns once for the statistics, then writes
    ``rows`` rows at a time, holding at most a few parts in memory. ``out`` is written aside and renamed.

    Returns:
        The number of rows written.

    """
    files = sorted(parts.glob("part-*.parquet"))
    if not files:
        raise ConfigError(f"{parts}: no embedded rows to merge (an empty dataset?)")
    small = [pq.read_table(f, columns=["index", "bbox"]) for f in files]  # the order and the extent: one read
    index = [t["index"].to_numpy() for t in small]
    part_of = np.concatenate([np.full(len(ix), k) for k, ix in enumerate(index)])
    row_of = np.concatenate([np.arange(len(ix)) for ix in index])
    flat = np.concatenate(index)
    order = np.argsort(flat, kind="stable")
    keep = order[np.r_[True, np.diff(flat[order]) != 0]]  # a sample written twice (never expected) kept once
    schema = pq.read_schema(files[0])
    meta = {**meta, "stats": _stats(files, schema), "rows": len(keep)}
    boxes = [_part_bbox(t["bbox"]) for t in small]
    geo = geo_metadata([b for b in boxes if b is not None])
    cache: OrderedDict[int, pa.Table] = OrderedDict()

    def part(k: int) -> pa.Table:
        if k not in cache:
            cache[k] = pq.read_table(files[k])
            if len(cache) > 8:
                cache.popitem(last=False)
        cache.move_to_end(k)
        return cache[k]

    def chunks() -> Any:
        for s in range(0, len(keep), rows):
            sel = keep[s : s + rows]
            pieces, k0, start = [], part_of[sel[0]], 0
            for j in range(1, len(sel) + 1):
                if j == len(sel) or part_of[sel[j]] != k0:
                    pieces.append(part(int(k0)).take(pa.array(row_of[sel[start:j]])))
                    if j < len(sel):
                        k0, start = part_of[sel[j]], j
            yield pa.concat_tables(pieces)

    aside = out.with_name(out.name + ".partial")
    if fmt == "zarr":
        _write_zarr(aside, chunks(), meta, len(keep), schema)
    else:
        schema = schema.with_metadata({b"geo": json.dumps(geo).encode(), b"decur": json.dumps(meta).encode()})
        with pq.ParquetWriter(aside, schema, **WRITE) as writer:
            for table in chunks():
                writer.write_table(table.cast(schema), row_group_size=rows)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    aside.replace(out)
    return len(keep)


def _stats(files: list[Path], schema: pa.Schema) -> dict[str, dict[str, list[float]]]:
    """Per-dimension mean and standard deviation of every ``common_`` / ``unique_`` column over all rows."""
    names = [n for n in schema.names if n.startswith(("common_", "unique_"))]
    sums: dict[str, list[Any]] = {n: [0.0, 0.0, 0] for n in names}
    for f in files:
        table = pq.read_table(f, columns=names)
        for n in names:
            col = table[n].combine_chunks()
            col = col.filter(col.is_valid())
            if len(col) == 0:
                continue
            x = col.values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), -1)
            sums[n][0] += x.sum(0)
            sums[n][1] += (x**2).sum(0)
            sums[n][2] += len(x)
    out = {}
    for n, (s, q, count) in sums.items():
        if count == 0:
            continue
        mean = s / count
        std = np.sqrt(np.maximum(q / count - mean**2, 0.0) * count / max(count - 1, 1))
        out[n] = {"mean": mean.tolist(), "std": std.tolist()}
    return out


def _part_bbox(column: pa.ChunkedArray) -> dict[str, float] | None:
    boxes = column.combine_chunks()
    boxes = boxes.filter(boxes.is_valid())
    if len(boxes) == 0:
        return None
    values = {k: boxes.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax")}
    return {
        "xmin": float(values["xmin"].min()),
        "ymin": float(values["ymin"].min()),
        "xmax": float(values["xmax"].max()),
        "ymax": float(values["ymax"].max()),
    }


def _write_zarr(path: Path, tables: Any, meta: dict[str, Any], n: int, schema: pa.Schema) -> None:
    """The rows as a zarr group: one array per column, the metadata in the group's attributes.

    ``id``, ``index``, ``footprint`` (``N x 4 x 2`` lon/lat, NaN: none) and one ``N x D`` array per vector column.
    """
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update({"decur": meta})
    arrays: dict[str, Any] = {}
    at = 0
    for table in tables:
        k = len(table)
        columns = {"index": table["index"].to_numpy(), "footprint": _footprints(table)}
        for name in schema.names:
            if name.startswith(("feature_", "common_", "unique_", "fused")):
                col = table[name].combine_chunks()
                width = col.type.list_size
                x = np.full((k, width), np.nan, dtype=col.type.value_type.to_pandas_dtype())
                valid = col.is_valid().to_numpy(zero_copy_only=False)
                if valid.any():
                    x[valid] = col.filter(col.is_valid()).values.to_numpy(zero_copy_only=False).reshape(-1, width)
                columns[name] = x
        ids = np.array(table["id"].to_pylist(), dtype=object)
        for name, x in columns.items():
            if name not in arrays:
                arrays[name] = group.create_array(name, shape=(n, *x.shape[1:]), dtype=x.dtype,
                                                  chunks=(min(n, 4096), *x.shape[1:]))  # fmt: skip
            arrays[name][at : at + k] = x
        if "id" not in arrays:
            arrays["id"] = group.create_array("id", shape=(n,), dtype=str, chunks=(min(n, 4096),))
        arrays["id"][at : at + k] = ids
        at += k


def _footprints(table: pa.Table) -> np.ndarray:
    """Each row's four footprint corners from its WKB polygon (NaN without one)."""
    out = np.full((len(table), 4, 2), np.nan)
    for i, wkb in enumerate(table["geometry"].to_pylist()):
        if wkb is not None:
            out[i] = np.frombuffer(wkb[13:], dtype="<f8").reshape(-1, 2)[:4]
    return out


def _resume(parts: Path, identity: dict[str, Any], fresh: bool) -> set[int]:
    """The sample indices an unfinished run of the same weights and data already wrote (none: a fresh run)."""
    record = parts / "embed.json"
    if fresh and parts.exists():
        shutil.rmtree(parts)
    if record.is_file():
        before = json.loads(record.read_text())
        if before != identity:
            changed = sorted(k for k in identity if before.get(k) != identity[k])
            raise ConfigError(
                f"{parts} holds the parts of an unfinished embedding of other {', '.join(changed)} "
                f"({', '.join(f'{k}={before.get(k)}' for k in changed)}): re-run that command to finish it, or pass "
                "--overwrite to start this one"
            )
        done: set[int] = set()
        for f in parts.glob("part-*.parquet"):
            done.update(pq.read_table(f, columns=["index"])["index"].to_pylist())
        return done
    parts.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(identity))
    return set()


def _projector(state: dict[str, Tensor]) -> nn.Module:

    return projector_from_state(state)


def _open_data(cfg: EmbedConfig, run: Any) -> Any:
    """The dataset to embed as a ``TransferData`` (its ``test`` set): its ``embed`` opener, else its transfer reader."""
    spec = dataset_spec(cfg.dataset)
    return resolve(spec.embed)(cfg, run) if spec.embed is not None else load_data(run)


def open_paired_folders(cfg: EmbedConfig, run: Any) -> Any:
    """Paired folders for ``decur embed``: every stem, a modality it lacks left empty (``_shapes``)."""
    pre = read_pretrained(str(cfg.source), cfg.pretrained_modalities, None)
    used = cfg.modalities or pre.modalities
    folders = cfg.folders or {m: m for m in used}
    pairs = PairedFolders(str(cfg.root), {m: folders.get(m, m) for m in used}, keep_unpaired=True)
    bands = {m: pre.bands[m] for m in used if m in pre.bands}
    return TransferData(pairs, pairs, bands, {}, None, 0, 0, raw=True)


def open_ssl4eo_s12_v11(cfg: EmbedConfig, run: Any) -> Any:
    """SSL4EO-S12 v1.1 shards for ``decur embed``: one timestamp (``season``) of each location."""
    pre = read_pretrained(str(cfg.source), cfg.pretrained_modalities, None)
    used = [m for m in (cfg.modalities or pre.modalities) if m in SSL4EO_V11_PRODUCTS]
    if not used:
        raise ConfigError(
            f"embed config field `modalities`: the weights' {pre.modalities} are none of the v1.1 products "
            f"{list(SSL4EO_V11_PRODUCTS)}; name them with pretrained_modalities"
        )
    shards = SSL4EOS12v11Locations(str(cfg.root), used, cfg.season)
    bands = {m: SSL4EO_V11_PRODUCTS[m][1] for m in used}
    return TransferData(shards, shards, bands, {}, None, 0, 264)  # decur's units: the reader's steps are done


def open_ssl4eo_s12(cfg: EmbedConfig, run: Any) -> Any:
    """SSL4EO-S12 v1.0 locations for ``decur embed``, each as one season pair (``season``), stored values."""
    reader = SSL4EOS12(str(cfg.root), s2_product=cfg.s2_product, size=cfg.image_size, views=1, raw=True)
    seasons = _Season(reader, cfg.season)
    bands = {"s1": 2, "s2": len(reader.s2_bands)}
    bands = {m: c for m, c in bands.items() if m in (cfg.modalities or bands)}
    return TransferData(seasons, seasons, bands, reader.stats, None, 0, cfg.image_size, raw=True)


def _transfer_run(cfg: EmbedConfig) -> Any:
    """The transfer config of ``cfg``'s data and weights.

    For data no transfer reads (those with an ``embed`` opener): only the fields the starting point uses (not
    validated as a transfer).
    """
    if dataset_spec(cfg.dataset).embed is None:
        return cfg.transfer_run()
    return TransferConfig(dataset=cfg.dataset, root=cfg.root, pretrained=cfg.source, modalities=cfg.modalities,
                       pretrained_modalities=cfg.pretrained_modalities, input_transform=cfg.input_transform,
                       task="classification")  # fmt: skip


def _shapes(reader: Any) -> dict[str, tuple[int, ...]]:
    """Each modality's image shape, for the placeholder of a sample lacking it (paired folders keep such stems)."""
    files = getattr(reader, "files", None)
    if not isinstance(files, dict):
        return {}

    return {m: tuple(read_image(next(iter(f.values()))).shape) for m, f in files.items() if f}


class _Season(Dataset[dict[str, Tensor]]):
    """SSL4EO-S12 locations, each as one season pair (``season``, in date order), with ``locate``."""

    def __init__(self, reader: Any, season: int) -> None:
        self.reader, self.season = reader, season

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return cast(dict[str, Tensor], self.reader.read_season(index, self.season))

    def locate(self, index: int) -> tuple[str, Path | None]:
        return cast(tuple[str, Path | None], self.reader.locate(index, self.season))


class _Located(Dataset[dict[str, Any]]):
    """The modality images of ``dataset`` with the reader's ``id``, the sample's index and its footprint."""

    def __init__(
        self,
        dataset: Dataset[dict[str, Tensor]],
        reader: Any,
        modalities: list[str],
        shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.dataset, self.reader, self.modalities, self.shapes = dataset, reader, modalities, shapes or {}
        if not hasattr(reader, "locate"):
            raise ConfigError(f"{type(reader).__name__} cannot name its samples (no `locate`); decur embed needs ids")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        name, raster = self.reader.locate(index)
        corners, crs = corners_or_nan(raster)
        out: dict[str, Any] = {"id": name, "index": index, "corners": torch.from_numpy(corners), "crs": crs}
        for m in self.modalities:
            out[f"present/{m}"] = m in sample
            out[m] = sample[m] if m in sample else torch.zeros(self.shapes[m])  # a placeholder, never encoded
        return out
