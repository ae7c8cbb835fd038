"""`decur embed` and `decur search`: footprints against pyproj and shapely, values against the trained model, resume,
two processes, the real SSL4EO-S12 and BigEarthNet samples, and cross-modal search against in-memory ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from decur.cli import main
from decur.config import ConfigError, load_config
from decur.data.synthetic import SyntheticMultimodal
from decur.embed import EmbedConfig
from decur.embed.geo import polygon_wkb, raster_corners
from decur.train.run import pretrain

from .conftest import REAL_DATA, REPO

SSL4EO = REAL_DATA / "ssl4eo-s12"
BEN = REAL_DATA / "bigearthnet-mm-v1"


def _tif(path: Path, crs: str | None, transform: Affine, side: int = 12) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side + 2, count=1, dtype="uint16", crs=crs,
                       transform=transform) as dst:  # fmt: skip
        dst.write(np.zeros((1, side + 2, side), np.uint16))
    return path


def test_footprint_corners_of_a_utm_raster_equal_pyproj_s_and_the_wkb_is_shapely_s_polygon(tmp_path):
    """Corners through the affine transform (w = 12, h = 14 pixels of 10 m), reprojected by pyproj (another library
    than rasterio's warp), counter-clockwise from the lower left; the WKB parses to the same closed ring."""
    import shapely
    from pyproj import Transformer

    path = _tif(tmp_path / "utm.tif", "EPSG:32633", Affine(10, 0, 404400, 0, -10, 5342400))
    corners, crs = raster_corners(path)
    xs, ys = [404400, 404520, 404520, 404400], [5342260, 5342260, 5342400, 5342400]  # x0 + 10·w, y0 − 10·h
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(xs, ys)
    np.testing.assert_allclose(corners, np.column_stack([lon, lat]), rtol=0, atol=1e-9)
    assert crs == "EPSG:32633"
    polygon = shapely.from_wkb(polygon_wkb(corners))
    assert polygon.geom_type == "Polygon" and polygon.is_valid and polygon.exterior.is_ccw
    np.testing.assert_allclose(np.asarray(polygon.exterior.coords), np.vstack([corners, corners[:1]]), atol=0)


def test_a_rotated_lon_lat_grid_keeps_its_corners_and_a_plain_image_has_no_footprint(tmp_path):
    t = Affine(0.001, 0.0005, 10.0, 0.0005, -0.001, 50.0)  # x = 10 + 0.001 col + 0.0005 row, y = 50 + ...
    corners, _ = raster_corners(_tif(tmp_path / "rot.tif", "EPSG:4326", t))
    w, h = 12, 14
    expected = [(10 + 0.0005 * h, 50 - 0.001 * h), (10 + 0.001 * w + 0.0005 * h, 50 + 0.0005 * w - 0.001 * h),
                (10 + 0.001 * w, 50 + 0.0005 * w), (10, 50)]  # fmt: skip
    np.testing.assert_allclose(corners, expected, atol=1e-12)
    assert raster_corners(_tif(tmp_path / "plain.tif", None, Affine.identity())) is None


@pytest.fixture(scope="module")
def run(module_tmp) -> Path:
    """A small run that already separates its slices (48 steps, LARS at the demo's 6.0; about 20 s on 2 cores)."""
    out = module_tmp("embed") / "run"
    fields = ["trainer.max_epochs=3", "optim.lr_weights=6.0", "data.length=512", "data.batch_size=32"]
    pretrain(load_config(REPO / "configs" / "smoke.yaml", [*fields, "eval.enabled=false"]), out)
    return out


def _embed(source: Path, out: Path, *fields: str) -> int:
    return main(["embed", str(source), "--out", str(out), "samples=24", "image_size=32", "batch_size=8",
                 "rows_per_part=8", "num_workers=0", *fields])  # fmt: skip


def _expected(run: Path, samples: int = 24) -> dict[str, np.ndarray]:
    """What the trained model gives for the transfer test scenes (seed 20 000), through the training module."""
    from decur.train.module import PretrainModule

    module = PretrainModule.from_run(str(run)).eval()
    data = SyntheticMultimodal(samples, 32, seed=20_000)
    kc = int(module.objective.common_dim)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for m in ("optical", "sar"):
            x = torch.stack([data[i][m] for i in range(samples)])
            feat = module.model.features(m, module.views[m].normalize(x))
            z = module.model.projectors[m](feat)
            out[f"feature_{m}"], out[f"common_{m}"], out[f"unique_{m}"] = (
                feat.numpy(),
                z[:, :kc].numpy(),
                z[:, kc:].numpy(),
            )
    out["fused"] = np.concatenate([out["feature_optical"], out["feature_sar"]], axis=1)
    return out


def _column(table, name: str) -> np.ndarray:
    return np.stack(table[name].to_numpy(zero_copy_only=False)).astype(np.float64)


def test_embed_writes_every_sample_s_features_and_common_unique_split_in_order(run, tmp_path):
    out = tmp_path / "e.parquet"
    assert _embed(run, out) == 0
    table = pq.read_table(out)
    assert table["id"].to_pylist() == [f"{i:07d}" for i in range(24)] and table["index"].to_pylist() == list(range(24))
    expected = _expected(run)
    for name, value in expected.items():
        np.testing.assert_allclose(_column(table, name), value, rtol=1e-4, atol=1e-4, err_msg=name)
    meta = json.loads(table.schema.metadata[b"decur"])
    assert meta["card"]["common_dim"] == expected["common_sar"].shape[1] == 48  # smoke: 64 x 0.75
    for name in ("common_optical", "unique_sar"):  # statistics over every row, for the training's standardisation
        np.testing.assert_allclose(meta["stats"][name]["mean"], expected[name].mean(0), atol=1e-5)
        np.testing.assert_allclose(meta["stats"][name]["std"], expected[name].std(0, ddof=1), rtol=1e-4, atol=1e-6)
    assert table["geometry"].null_count == 24  # synthetic scenes lie nowhere
    assert not (tmp_path / "e.parquet.parts").exists()
    assert _embed(run, out) == 2  # an existing file is refused without --overwrite


def test_a_killed_embedding_resumes_writing_each_sample_once(run, tmp_path, monkeypatch):
    """The run dies after its second part; the re-run embeds only the samples no part holds (a half-written
    ``.partial`` part is ignored) and the file equals an uninterrupted run's."""
    from decur.embed import run as embed_run

    calls = {"n": 0}
    flush = embed_run.PartWriter._flush

    def dying(self, rank):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        flush(self, rank)

    out = tmp_path / "e.parquet"
    monkeypatch.setattr(embed_run.PartWriter, "_flush", dying)
    monkeypatch.setenv("DECUR_DEBUG", "1")
    with pytest.raises(RuntimeError, match="killed"):
        _embed(run, out)
    monkeypatch.setattr(embed_run.PartWriter, "_flush", flush)
    parts = tmp_path / "e.parquet.parts"
    assert len(list(parts.glob("part-*.parquet"))) == 2 and not out.exists()
    (parts / "part-000-0000000016.partial").write_bytes(b"half a file")
    seen = []
    original = embed_run.EmbedModule.predict_step
    monkeypatch.setattr(embed_run.EmbedModule, "predict_step",
                        lambda self, b, i: seen.extend(b["index"].tolist()) or original(self, b, i))  # fmt: skip
    assert _embed(run, out) == 0
    assert sorted(seen) == list(range(16, 24))  # only the third part's samples
    seen.clear()
    assert main(["embed", str(run), "--out", str(out), "--overwrite", "samples=24", "image_size=32", "batch_size=8",
                 "num_workers=0"]) == 0  # fmt: skip
    assert sorted(seen) == list(range(24))  # --overwrite: afresh, every sample
    table = pq.read_table(out)
    assert table["id"].to_pylist() == [f"{i:07d}" for i in range(24)]
    np.testing.assert_allclose(_column(table, "common_sar"), _expected(run)["common_sar"], rtol=1e-4, atol=1e-4)
    assert not parts.exists()


def test_parts_of_other_weights_or_data_are_not_mixed_in(run, tmp_path, monkeypatch, capsys):
    parts = tmp_path / "e.parquet.parts"
    parts.mkdir()
    (parts / "embed.json").write_text(json.dumps({"source": "/elsewhere", "dataset": "synthetic"}))
    assert _embed(run, tmp_path / "e.parquet") == 2
    err = capsys.readouterr().err
    assert "unfinished embedding of other" in err and "source" in err and "--overwrite" in err


def test_two_processes_write_the_rows_of_one(run, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    files = {}
    for devices in (1, 2):
        files[devices] = tmp_path / f"d{devices}.parquet"
        cmd = [sys.executable, "-m", "decur", "embed", str(run), "--out", str(files[devices]), "samples=21",
               "image_size=32", "batch_size=4", "rows_per_part=4", "num_workers=0", "trainer.accelerator=cpu",
               f"trainer.devices={devices}", *(["trainer.strategy=ddp"] if devices == 2 else [])]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = pq.read_table(files[1]), pq.read_table(files[2])
    assert two["id"].to_pylist() == one["id"].to_pylist() == [f"{i:07d}" for i in range(21)]  # 21: uneven shares
    for name in ("feature_optical", "common_sar", "unique_optical", "fused"):
        np.testing.assert_allclose(_column(two, name), _column(one, name), rtol=1e-4, atol=1e-4, err_msg=name)


def test_float16_and_zarr_hold_the_same_vectors(run, tmp_path):
    import zarr

    assert _embed(run, tmp_path / "a.parquet") == 0
    assert _embed(run, tmp_path / "b.zarr", "format=zarr", "dtype=float16") == 0
    table = pq.read_table(tmp_path / "a.parquet")
    group = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    assert group["common_sar"].dtype == np.float16 and list(group["id"][:]) == table["id"].to_pylist()
    np.testing.assert_allclose(group["common_sar"][:], _column(table, "common_sar"), rtol=2e-3, atol=2e-3)
    assert group.attrs["decur"]["card"]["common_dim"] == 48


@pytest.fixture(scope="module")
def release_export(module_tmp) -> Path:
    """The release's joint S1/S2 layout (ResNet-18 to stay fast) with small projectors, imported as an export."""
    from decur.models import projector
    from decur.weights import import_weights

    from .data import release_joint_state

    root = module_tmp("release")
    state = release_joint_state("resnet18")
    for prefix in ("projector1", "projector2"):
        state.update({f"module.{prefix}.{k}": v for k, v in projector(512, [64, 64]).state_dict().items()})
    torch.save({"epoch": 99, "model": state, "optimizer": {}}, root / "joint.pth")
    import_weights(root / "joint.pth", root / "export")
    return root / "export"


@pytest.mark.skipif(not BEN.is_dir(), reason=f"real BigEarthNet-MM sample not found at {BEN}")
def test_real_bigearthnet_patches_get_their_ids_and_valid_footprints(release_export, tmp_path, capsys):
    import geopandas as gpd
    from pyproj import Transformer

    root = tmp_path / "ben"
    for src, dst in (("BigEarthNet-S2-Example", "BigEarthNet-v1.0"), ("BigEarthNet-S1-Example", "BigEarthNet-S1-v1.0")):
        (root / dst).mkdir(parents=True)
        for patch in (BEN / src).iterdir():
            (root / dst / patch.name).symlink_to(patch)
    names = sorted(p.name for p in (BEN / "BigEarthNet-S2-Example").iterdir())
    (root / "test.csv").write_text("\n".join(names) + "\n")
    out = tmp_path / "ben.parquet"
    args = ["embed", str(release_export), "--out", str(out), "dataset=bigearthnet", f"root={root}", "num_workers=0"]
    assert main(args) == 2  # the release scripts' 7168 common dimensions do not fit this small projector:
    assert "common_dim" in capsys.readouterr().err
    assert main([*args, "common_dim=48"]) == 0
    frame = gpd.read_parquet(out)
    assert frame["id"].tolist() == names and frame.crs.to_string() == "OGC:CRS84"
    assert frame.geometry.is_valid.all() and not frame.geometry.isna().any()
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    for name, polygon in zip(frame["id"], frame.geometry, strict=True):  # BigEarthNet patches: 1.2 km, UTM
        with rasterio.open(root / "BigEarthNet-v1.0" / name / f"{name}_B02.tif") as src:
            b, epsg = src.bounds, src.crs.to_epsg()
        x, y = Transformer.from_crs(epsg, 4326, always_xy=True).transform(
            (b.left + b.right) / 2, (b.bottom + b.top) / 2
        )
        assert polygon.centroid.x == pytest.approx(x, abs=1e-4) and polygon.centroid.y == pytest.approx(y, abs=1e-4)
    assert {len(v) for v in frame["feature_s1"]} == {512} and len(frame["fused"][0]) == 1024  # ResNet-18, both
    assert {len(v) for v in frame["common_s2"]} == {48} and {len(v) for v in frame["unique_s1"]} == {16}


@pytest.mark.skipif(not SSL4EO.is_dir(), reason=f"real SSL4EO-S12 sample not found at {SSL4EO}")
def test_real_ssl4eo_location_is_embedded_from_its_earliest_season_with_the_file_s_extent(release_export, tmp_path):
    out = tmp_path / "s.parquet"
    assert main(["embed", str(release_export), "--out", str(out), "dataset=ssl4eo_s12", f"root={SSL4EO}",
                 "image_size=264", "num_workers=0", "common_dim=48"]) == 0  # fmt: skip
    table = pq.read_table(out)
    assert len(table["common_s2"][0]) == 48 and len(table["unique_s1"][0]) == 16  # the projector's 64, split at 48
    seasons = sorted(p.name for p in (SSL4EO / "s2c" / "0000200").iterdir())  # names start with the date
    assert table["id"].to_pylist() == [f"0000200/{seasons[0]}"]
    with rasterio.open(SSL4EO / "s2c" / "0000200" / seasons[0] / "B2.tif") as src:
        b = src.bounds  # EPSG:4326 already: the footprint is the file's extent itself
    box = table["bbox"][0].as_py()
    assert box == pytest.approx({"xmin": b.left, "ymin": b.bottom, "xmax": b.right, "ymax": b.top}, abs=1e-12)


def test_config_refuses_what_it_cannot_do_in_one_line():
    with pytest.raises(ConfigError, match="`format`"):
        EmbedConfig(source=".", format="csv").validate()
    with pytest.raises(ConfigError, match="`root`"):
        EmbedConfig(source=".", dataset="bigearthnet").validate()
    with pytest.raises(ConfigError, match="do not exist"):
        EmbedConfig(source="/no/such/run").validate()


# ---------------------------------------------------------------------------------------------------------- search


def _hand_built(tmp_path: Path, n: int = 40, noise: float = 0.05) -> Path:
    """An embeddings file whose sar → optical partners are known: common dims shared plus noise, unique dims
    independent (the truth of DeCUR's split), written through the writer's own merge."""
    import pyarrow as pa

    from decur.embed.run import merge, rows_table

    g = torch.Generator().manual_seed(0)
    shared = torch.randn(n, 6, generator=g)
    z = {m: torch.cat([shared + noise * torch.randn(n, 6, generator=g), torch.randn(n, 4, generator=g)], 1)
         for m in ("optical", "sar")}  # fmt: skip
    batch = {"id": [f"s{i:03d}" for i in range(n)], "index": torch.arange(n),
             "corners": torch.full((n, 4, 2), float("nan")), "crs": [""] * n}  # fmt: skip
    for m in z:
        batch[f"present/{m}"] = torch.ones(n, dtype=torch.bool)
        batch[f"feature/{m}"] = torch.randn(n, 3, generator=g)
        batch[f"embedding/{m}"] = z[m]
    parts = tmp_path / "h.parquet.parts"
    parts.mkdir()
    pq.write_table(rows_table([batch], 6, pa.float32()), parts / "part-000-0000000000.parquet")
    merge(parts, tmp_path / "h.parquet", {"format": "decur-embeddings", "data": {}}, rows=7)
    return tmp_path / "h.parquet"


def test_partner_ranks_in_blocks_equal_the_in_memory_ranks_and_find_partners_in_common_space(tmp_path):
    from decur.embed.search import Embeddings, partner_ranks
    from decur.evaluate.retrieval import ranks

    path = _hand_built(tmp_path)
    emb = Embeddings(path, batch_rows=7)  # blocks of 7 rows: every block boundary crossed
    table = pq.read_table(path)
    for space in ("common", "unique"):
        got = partner_ranks(emb, space, "sar", "optical")
        expected = ranks(
            torch.from_numpy(_column(table, f"{space}_sar")), torch.from_numpy(_column(table, f"{space}_optical"))
        )
        assert got.tolist() == expected.tolist(), space
    assert (partner_ranks(emb, "common", "sar", "optical") == 1).all()  # shared + 5 % noise: each finds its partner
    assert (partner_ranks(emb, "unique", "sar", "optical") == 1).float().mean() < 0.3


def test_search_returns_the_exact_top_k_of_a_brute_force_cosine(tmp_path, capsys):
    from decur.embed.search import search

    path = _hand_built(tmp_path)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"decur"])
    z = {m: _column(table, f"common_{m}") for m in ("sar", "optical")}
    stand = {m: (z[m] - np.array(meta["stats"][f"common_{m}"]["mean"])) / np.array(meta["stats"][f"common_{m}"]["std"])
             for m in z}  # fmt: skip
    unit = {m: s / np.linalg.norm(s, axis=1, keepdims=True) for m, s in stand.items()}
    scores = unit["optical"] @ unit["sar"][5]
    best = np.argsort(-scores)[:4]
    _, hits = search(path, "s005", "common", "sar", "optical", k=4)
    assert [h.id for h in hits] == [f"s{i:03d}" for i in best] and hits[0].id == "s005"
    np.testing.assert_allclose([h.score for h in hits], scores[best], atol=1e-9)
    assert main(["search", str(path), "--query", "s005", "--modality-from", "sar", "--modality-to", "optical",
                 "--k", "3", "--out", str(tmp_path / "q.png")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "s005" in printed and (tmp_path / "q.png").stat().st_size > 0
    assert main(["search", str(path), "--query", "nope"]) == 2
    assert "no sample with id 'nope'" in capsys.readouterr().err


def test_search_on_a_trained_run_finds_sar_partners_more_often_in_common_than_unique_space(run, tmp_path, capsys):
    """Every SAR scene queries the optical scenes: its own partner ranks far above chance in the common slice and
    near chance in the unique one (measured: median rank 37 against 61 of 128, chance 64.5)."""
    out = tmp_path / "e.parquet"
    assert _embed(run, out, "samples=128") == 0
    found = {}
    for space in ("common", "unique"):
        assert main(["search", str(out), "--evaluate", "--space", space, "--modality-from", "sar",
                     "--modality-to", "optical"]) == 0  # fmt: skip
        line = capsys.readouterr().out
        found[space] = float(line.split("median rank ")[1].split()[0])
    assert found["common"] < 0.75 * 64.5 and found["common"] < found["unique"] - 10, found


def _pairs(root: Path, stems: list[str], missing_s2: tuple[str, ...] = ()) -> Path:
    """Paired GeoTIFFs in UTM 33N (1.2 km tiles side by side), S1 dB and S2 DN, some stems without S2."""
    for stem in stems:
        k = int(stem.split("_")[1])  # each stem's pixels and place depend on its number only
        rng = np.random.default_rng(k)
        t = Affine(30, 0, 400000 + 1200 * k, 0, -30, 5300000)
        for m, bands, data in (
            ("s1", 2, rng.normal(-12, 4, (2, 40, 40))),
            ("s2", 13, rng.integers(0, 5000, (13, 40, 40))),
        ):
            if m == "s2" and stem in missing_s2:
                continue
            (root / m).mkdir(parents=True, exist_ok=True)
            with rasterio.open(root / m / f"{stem}.tif", "w", driver="GTiff", width=40, height=40, count=bands,
                               dtype="float32", crs="EPSG:32633", transform=t) as dst:  # fmt: skip
                dst.write(data.astype(np.float32))
    return root


def test_paired_folders_embed_every_stem_and_a_missing_modality_is_null_not_zeros(release_export, tmp_path, capsys):
    stems = [f"tile_{i}" for i in range(6)]
    _pairs(tmp_path / "all", stems, missing_s2=("tile_3",))
    _pairs(tmp_path / "complete", [s for s in stems if s != "tile_3"])
    for name in ("all", "complete"):
        assert main(["embed", str(release_export), "--out", str(tmp_path / f"{name}.parquet"), "dataset=paired_folders",
                     f"root={tmp_path / name}", "common_dim=48", "num_workers=0", "batch_size=4"]) == 0  # fmt: skip
    table = pq.read_table(tmp_path / "all.parquet")
    assert table["id"].to_pylist() == stems
    row = stems.index("tile_3")
    for name in ("feature_s2", "common_s2", "unique_s2", "fused"):
        assert table[name].null_count == 1 and not table[name][row].is_valid, name
    assert table["feature_s1"].null_count == 0 and table["geometry"].null_count == 0
    complete = pq.read_table(tmp_path / "complete.parquet")
    keep = [i for i in range(6) if i != row]
    for name in ("feature_s2", "common_s1", "fused"):  # the other samples are as if the stem were not there
        np.testing.assert_allclose(_column(table.take(keep), name), _column(complete, name), rtol=1e-5, atol=1e-5)
    box = table["bbox"][1].as_py()  # tile_1: x from 401 200 m, 1.2 km wide, in UTM 33N, as lon / lat
    from pyproj import Transformer

    xs, ys = [401200, 402400, 402400, 401200], [5298800, 5298800, 5300000, 5300000]  # the four corners
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(xs, ys)
    assert box["xmin"] == pytest.approx(min(lon), abs=1e-6) and box["ymax"] == pytest.approx(max(lat), abs=1e-6)
    from decur.embed.search import Embeddings, partner_ranks, partner_summary

    ranks = partner_ranks(Embeddings(tmp_path / "all.parquet"), "common", "s1", "s2")
    assert ranks[row] == 0 and (ranks[keep] >= 1).all() and (ranks[keep] <= 5).all()  # 5 candidates with S2
    assert partner_summary(ranks)["queries"] == 5
    assert main(["search", str(tmp_path / "all.parquet"), "--query", "tile_3", "--modality-from", "s2"]) == 2
    assert "lacks that modality" in capsys.readouterr().err


def test_an_image_file_queries_like_its_own_row(release_export, tmp_path, capsys):
    """A GeoTIFF of the data, given as the query, is embedded through the file's weights and transform: the same
    neighbours and scores as its id (and the quick-look shows the file)."""
    from decur.embed.search import search

    stems = [f"tile_{i}" for i in range(5)]
    _pairs(tmp_path / "d", stems)
    out = tmp_path / "d.parquet"
    assert main(["embed", str(release_export), "--out", str(out), "dataset=paired_folders", f"root={tmp_path / 'd'}",
                 "common_dim=48", "num_workers=0"]) == 0  # fmt: skip
    for space in ("common", "feature"):
        dst = "s2" if space == "common" else "s1"
        _, by_id = search(out, "tile_2", space, "s1", dst, k=5)
        _, by_image = search(out, str(tmp_path / "d" / "s1" / "tile_2.tif"), space, "s1", dst, k=5)
        assert [h.id for h in by_image] == [h.id for h in by_id]
        np.testing.assert_allclose([h.score for h in by_image], [h.score for h in by_id], atol=1e-4)
    png = tmp_path / "q.png"
    assert main(["search", str(out), "--query", str(tmp_path / "d" / "s1" / "tile_2.tif"), "--modality-from", "s1",
                 "--modality-to", "s2", "--k", "2", "--out", str(png)]) == 0  # fmt: skip
    assert png.stat().st_size > 0 and "tile_" in capsys.readouterr().out
