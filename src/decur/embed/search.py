"""``decur search``: exact cosine top-k over the embeddings ``decur embed`` wrote, within or across modalities.

A query is a sample of the file (by ``id``) seen through one modality (``modality_from``); the candidates are every
sample seen through another (``modality_to``), in one space: ``common`` (the dimensions DeCUR aligns across
modalities: a SAR query finds optical scenes of the same place), ``unique`` (the dimensions kept apart: cross-modal
search should fail there), ``feature`` (pooled encoder features, within one modality) or ``fused``. Embedding
columns are standardised per dimension with the file's statistics, as the training's BN(f(x)) did over a batch
(``raw=True``: as stored), then L2-normalised. The file is read in row batches and the scores of one batch at a
time are kept only as long as the running top-k needs them: no all-pairs matrix, memory bounded by the batch.

``partner_ranks`` scores the space itself: every sample queries with one modality, and the rank of its own other
modality among all samples is counted (every candidate scoring at least as high, itself included), as
``decur.evaluate.retrieval.ranks`` does in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import Tensor

from decur.config import ConfigError
from decur.data.paired import read_image
from decur.data.transforms import InputTransform
from decur.embed.config import EmbedConfig
from decur.errors import DecurError
from decur.explain import render
from decur.models.joint import projector_from_state
from decur.weights import read_pretrained

SPACES = ("common", "unique", "feature", "fused")
TIE = 1e-12
"""Scores this close count as tied: a dot product summed in another order (block against block) may differ in its
last bits (float64), and a sample must never rank above its own partner's score by rounding alone."""


@dataclass
class Hit:
    """One neighbour: its rank, id, dataset index, cosine score and footprint centre (lon, lat; ``None``: none)."""

    rank: int
    id: str
    index: int
    score: float
    centre: tuple[float, float] | None


class Embeddings:
    """A file written by ``decur embed``, read column by column in row batches.

    Args:
        path: The ``.parquet`` file.
        batch_rows: Rows per batch read (the memory bound of a search).

    Raises:
        ConfigError: The file is missing or not written by ``decur embed``.

    """

    def __init__(self, path: str | Path, batch_rows: int = 8192) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such embeddings file (write one with `decur embed`)")
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as err:
            raise ConfigError(f"{self.path}: not a Parquet file ({err})") from None
        raw = (self.file.schema_arrow.metadata or {}).get(b"decur")
        if raw is None:
            raise ConfigError(f"{self.path}: no `decur` metadata; it was not written by `decur embed`")
        self.meta: dict[str, Any] = json.loads(raw)
        self.names = self.file.schema_arrow.names
        self.batch_rows = batch_rows
        self.rows = self.file.metadata.num_rows

    @property
    def modalities(self) -> list[str]:
        """The modalities with a feature column, in the file's order."""
        return [n.removeprefix("feature_") for n in self.names if n.startswith("feature_")]

    def column(self, space: str, modality: str | None) -> str:
        """The column of ``space`` for ``modality`` (``fused``: the one fused column).

        Raises:
            ConfigError: An unknown space, or a modality / space the file does not hold (naming what it holds).

        """
        if space not in SPACES:
            raise ConfigError(f"--space: {space!r} is not one of {list(SPACES)}")
        if space == "fused":
            return "fused"
        if modality not in self.modalities:
            raise ConfigError(f"{self.path}: no modality {modality!r}; it holds {self.modalities}")
        name = f"{space}_{modality}"
        if name not in self.names:
            raise ConfigError(
                f"{self.path}: no {space} column for {modality!r}: the weights had no projector (only features); "
                "use --space feature"
            )
        return name

    def batches(self, column: str, raw: bool = False) -> Iterator[tuple[int, Tensor, Tensor]]:
        """``(first row, rows x D unit vectors, valid rows)`` of ``column``, standardised with the file's statistics.

        A sample lacking the modality (a null) is a zero vector marked not valid.
        """
        stats = self.meta.get("stats", {}).get(column)
        mean = std = None
        if stats is not None and not raw:
            mean = torch.tensor(stats["mean"], dtype=torch.float64)
            std = torch.tensor(stats["std"], dtype=torch.float64).clamp_min(1e-12)
        at = 0
        for batch in self.file.iter_batches(batch_size=self.batch_rows, columns=[column]):
            col = batch.column(0)
            width = col.type.list_size
            x = torch.from_numpy(col.values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, width))
            valid = torch.from_numpy(col.is_valid().to_numpy(zero_copy_only=False))
            if mean is not None and std is not None:
                x = (x - mean) / std
            x = F.normalize(x, dim=1) * valid[:, None]
            yield at, x, valid
            at += len(x)

    def row_of(self, sample_id: str) -> int:
        """The row holding ``sample_id``.

        Raises:
            ConfigError: No such id (naming a few that exist).

        """
        at = 0
        first: list[str] = []
        for batch in self.file.iter_batches(batch_size=self.batch_rows, columns=["id"]):
            ids = batch.column(0).to_pylist()
            if sample_id in ids:
                return at + ids.index(sample_id)
            first += ids[: 3 - len(first)]
            at += len(ids)
        raise ConfigError(f"{self.path}: no sample with id {sample_id!r} (ids look like {first})")

    def vector(self, row: int, column: str, raw: bool = False) -> Tensor:
        """Row ``row`` of ``column`` as a standardised unit vector.

        Raises:
            ConfigError: The sample lacks this modality (its column is null there).

        """
        for at, x, valid in self.batches(column, raw):
            if at <= row < at + len(x):
                if not valid[row - at]:
                    raise ConfigError(f"{self.path}: row {row} has no {column} (the sample lacks that modality)")
                return x[row - at]
        raise IndexError(row)

    def describe(self, rows: list[int]) -> list[tuple[str, int, tuple[float, float] | None]]:
        """``(id, index, footprint centre)`` of each of ``rows``."""
        table = self.file.read(columns=["id", "index", "bbox"])
        out = []
        for r in rows:
            box = table["bbox"][r].as_py()
            centre = None if box is None else ((box["xmin"] + box["xmax"]) / 2, (box["ymin"] + box["ymax"]) / 2)
            out.append((table["id"][r].as_py(), int(table["index"][r].as_py()), centre))
        return out


def top_k(emb: Embeddings, query: Tensor, column: str, k: int = 10, raw: bool = False) -> list[tuple[int, float]]:
    """The ``k`` rows of ``column`` most cosine-similar to the unit vector ``query``: ``(row, score)``, best first."""
    best_scores = torch.empty(0, dtype=torch.float64)
    best_rows = torch.empty(0, dtype=torch.long)
    for at, x, valid in emb.batches(column, raw):
        scores = torch.cat([best_scores, (x @ query.double()).masked_fill(~valid, -torch.inf)])
        rows = torch.cat([best_rows, torch.arange(at, at + len(x))])
        keep = torch.topk(scores, min(k, len(scores))).indices
        best_scores, best_rows = scores[keep], rows[keep]
    order = torch.argsort(best_scores, descending=True, stable=True)
    return [(int(best_rows[i]), float(best_scores[i])) for i in order if best_scores[i] > -torch.inf]


def image_query(emb: Embeddings, image: Path, column: str, modality: str, raw: bool = False) -> Tensor:
    """The unit vector of ``column`` for an image file of ``modality``, through the file's own weights.

    The image (GeoTIFF, PNG or JPEG) holds the values the embedded data were read in (GeoTIFF DN / dB for the
    Sentinel readers and paired folders); the input transform the file records is applied, then the encoder (and
    projector), then the file's standardisation.

    Raises:
        ConfigError: The weights the file was written with cannot be read here, or the image has other bands.

    """
    card = emb.meta["card"]
    try:
        pre = read_pretrained(str(emb.meta.get("source")), None, None)
    except DecurError as err:
        raise ConfigError(f"--query {image}: the file's weights cannot be read ({err})") from None
    x = read_image(image)[None]
    transform = InputTransform.from_card(card["transforms"][modality])
    if x.shape[1] != len(transform.bands):
        raise ConfigError(f"--query {image}: {x.shape[1]} bands, the {modality} encoder takes {len(transform.bands)}")
    with torch.no_grad():
        feat = pre.encoder(modality).eval()(transform(x)).double()
        if column.startswith(("common_", "unique_")):
            z = projector_from_state(pre.projectors[modality]).eval().double()(feat)
            k = int(card["common_dim"])
            feat = z[:, :k] if column.startswith("common_") else z[:, k:]
    stats = emb.meta.get("stats", {}).get(column)
    if stats is not None and not raw:
        feat = (feat - torch.tensor(stats["mean"], dtype=torch.float64)) / torch.tensor(stats["std"]).double()
    return F.normalize(feat, dim=1)[0]


def search(
    path: str | Path,
    query_id: str,
    space: str = "common",
    modality_from: str | None = None,
    modality_to: str | None = None,
    k: int = 10,
    raw: bool = False,
) -> tuple[Embeddings, list[Hit]]:
    """The ``k`` nearest samples of ``query_id`` (module docstring); modalities default to the first two."""
    emb = Embeddings(path)
    mods = emb.modalities
    src = modality_from or mods[0]
    dst = modality_to or (mods[1] if len(mods) > 1 and space != "feature" else src)
    if Path(query_id).is_file():  # an image file rather than an id of the file
        query = image_query(emb, Path(query_id), emb.column(space, src), src, raw)
    else:
        query = emb.vector(emb.row_of(query_id), emb.column(space, src), raw)
    found = top_k(emb, query, emb.column(space, dst), k, raw)
    described = emb.describe([r for r, _ in found])
    hits = [Hit(i + 1, d[0], d[1], s, d[2]) for i, ((_, s), d) in enumerate(zip(found, described, strict=True))]
    return emb, hits


def partner_ranks(emb: Embeddings, space: str, modality_from: str, modality_to: str, raw: bool = False) -> Tensor:
    """For every row, the 1-based rank of its own ``modality_to`` vector among all rows' for its query.

    0: the sample lacks one of the two modalities; candidates lacking ``modality_to`` are not counted. The query
    is the row's ``modality_from`` vector; ties (within ``TIE``) count against it. One block of queries
    is scored against one block of candidates at a time.
    """
    q_col, g_col = emb.column(space, modality_from), emb.column(space, modality_to)
    own_scores, present = [], []  # one pass over both columns: each row's own score, and whether it has both
    for (_, q, a), (_, g, b) in zip(emb.batches(q_col, raw), emb.batches(g_col, raw), strict=True):
        own_scores.append((q * g).sum(1))
        present.append(a & b)
    own, both = torch.cat(own_scores), torch.cat(present)
    ranks = torch.zeros(emb.rows, dtype=torch.long)
    for qa, q, _ in emb.batches(q_col, raw):
        mine = own[qa : qa + len(q)]
        for _, g, valid in emb.batches(g_col, raw):
            ranks[qa : qa + len(q)] += (((q @ g.T) >= mine[:, None] - TIE) & valid[None, :]).sum(1)
    return ranks.masked_fill(~both, 0)


def partner_summary(ranks: Tensor) -> dict[str, float]:
    """recall@1 / @10, the median rank and their random floors, over the samples that have both modalities."""
    r = ranks[ranks > 0].double()
    n = r.numel()
    return {
        "queries": float(n),
        "recall@1": float((r <= 1).double().mean()),
        "recall@10": float((r <= 10).double().mean()),
        "median_rank": float(r.median()),
        "random_recall@1": 1 / n,
        "random_recall@10": min(1.0, 10 / n),
        "random_median_rank": (n + 1) / 2,
    }


def quicklook(
    emb: Embeddings, query: Hit, hits: list[Hit], modalities: tuple[str, str], out: Path, image: Tensor | None = None
) -> str | None:
    """A PNG of the query (its ``modalities[0]`` image) and its neighbours (their ``modalities[1]`` images).

    The images are read again from the dataset recorded in the file; where it cannot be opened (moved, another
    machine), the footprints are drawn instead. ``image``: the query's own image (an image query). Returns a note
    for the user, or ``None``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: list[Any] = []
    note = None
    try:
        data = _dataset(emb.meta)
        first = image if image is not None else data[query.index][modalities[0]]
        images = [first] + [data[h.index][modalities[1]] for h in hits]
    except Exception as err:  # the data are elsewhere: footprints only
        note = f"the images of {emb.meta.get('data', {}).get('root')} could not be read ({err}); drew footprints"
    shown = [query, *hits]
    if images:
        fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.6), squeeze=False)
        for ax, hit, image, m in zip(axes[0], shown, images, [modalities[0]] + [modalities[1]] * len(hits),
                                     strict=True):  # fmt: skip
            ax.imshow(render(m, torch.as_tensor(image)), cmap="gray")
            title = f"query ({m})\n{hit.id[-18:]}" if hit is query else f"#{hit.rank} {hit.score:.3f}\n{hit.id[-18:]}"
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    else:
        fig, ax = plt.subplots(figsize=(5, 5))
        for hit in shown:
            if hit.centre is not None:
                ax.plot(*hit.centre, "r*" if hit is query else "k.", ms=12 if hit is query else 6)
                ax.annotate(str(hit.rank) if hit is not query else "query", hit.centre, fontsize=7)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
    fig.suptitle(f"{emb.path.name}: {query.id}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return note


def _dataset(meta: dict[str, Any]) -> Any:
    """The raw reader of the embedded data (the file's ``data`` record), before any input transform."""
    from decur.embed.run import _open_data, _transfer_run  # (Lightning: only `--data` opens a dataset)

    fields = dict(meta["data"])
    cfg = EmbedConfig(**{k: v for k, v in fields.items() if k in EmbedConfig.__dataclass_fields__})
    cfg.source = meta.get("source")
    run = _transfer_run(cfg)
    return _open_data(cfg, run).test
