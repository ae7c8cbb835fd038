"""SSL4EO-S12 v1.1: the release's Zarr zips, season pairing, cloud filter, sharding, data check, pretraining."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from decur.cli import main
from decur.config import ConfigError, load_config
from decur.data.errors import DatasetError
from decur.data.sampling import shard_loader
from decur.data.ssl4eo_v11 import SSL4EOS12v11, full_batches

from .conftest import REPO
from .data.ssl4eo_v11.data import make_v11, write_shard

MODS = ["s1grd", "s2l1c", "s2l2a"]


@pytest.fixture(scope="module")
def split(module_tmp):
    return make_v11(module_tmp("v11"), files=4, samples=4, size=16)


def _timestamp(x: torch.Tensor) -> list[int]:
    """The fixture's fingerprint: band 0 of S2 is 1000 · t + small after the offset and 8-bit compression (uint8)."""
    return [round(float(v) / 255 * 10000 / 1000) for v in x[:, 0].float().mean(dim=(1, 2))]


def test_samples_pair_timestamps_across_sensors_and_skip_cloudy_ones(split):
    ds = SSL4EOS12v11(split, MODS, max_cloud_fraction=0.5)
    assert len(ds) == 16 and ds.samples_per_file == 4
    items = list(ds)
    assert len(items) == 16
    for s in items:
        assert s["s1grd"].shape == (2, 2, 16, 16) and s["s2l1c"].shape == (2, 13, 16, 16)
        t1, t2 = _timestamp(s["s2l1c"]), _timestamp(s["s2l2a"])
        assert t1 == t2 and t1[0] != t1[1] and 3 not in t1  # same seasons in every sensor, never the cloudy one
        assert s["s2l1c"].dtype == torch.uint8 and s["s1grd"].dtype == torch.float16  # shipped compact
        assert torch.isfinite(s["s1grd"]).all()
    anything = [t for s in SSL4EOS12v11(split, ["s2l1c"]) for t in _timestamp(s["s2l1c"])]
    assert 3 in anything  # without the filter the cloudy timestamp is drawn too
    again = list(SSL4EOS12v11(split, MODS, max_cloud_fraction=0.5))
    assert all(torch.equal(a["s1grd"], b["s1grd"]) for a, b in zip(items, again, strict=True))  # seeded


def test_file_draw_shares_one_season_pair_per_file_and_epoch(split):
    ds = SSL4EOS12v11(split, MODS, max_cloud_fraction=0.5, timestamp_draw="file")
    pairs = []
    for _ in range(3):  # three epochs
        items = list(ds)
        assert len(items) == 16
        per_file = [[tuple(_timestamp(s["s2l1c"])) for s in items[i : i + 4]] for i in range(0, 16, 4)]
        for file_pairs in per_file:
            assert len(set(file_pairs)) == 1  # every location of a file gets the same two timestamps
            t = file_pairs[0]
            assert t[0] != t[1] and 3 not in t  # distinct, never the cloudy one
        assert all(_timestamp(s["s2l1c"]) == _timestamp(s["s2l2a"]) for s in items)  # paired across sensors
        pairs += [p[0] for p in per_file]
    assert len(set(pairs)) > 1  # the pair changes between files and epochs
    with pytest.raises(ValueError, match="timestamp_draw"):
        SSL4EOS12v11(split, MODS, timestamp_draw="location")
    cfg = load_config(REPO / "configs" / "ssl4eo_s12_v11_three_sensors.yaml", [f"data.root={split}",
                                                                             "data.timestamp_draw=season"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"data\.timestamp_draw"):
        cfg.validate()


def test_preprocessing_is_the_papers_8_bit_s2_and_outlier_cut_s1():
    from decur.data.ssl4eo_v11 import _preprocess

    dn = np.array([[[1000, 6000, 11000, 13000, -5, 1039, 999, 0]]], dtype=np.int16)
    # (x - 1000) / 10000 · 255, half up, clipped: the release's +1000 DN offset removed first
    assert _preprocess("s2l1c", dn).tolist() == [[[0, 128, 255, 255, 0, 1, 0, 0]]]
    db = np.linspace(-30, 0, 100, dtype=np.float32).reshape(1, 10, 10).astype(np.float16)
    db[0, 0, 0] = np.nan
    s1 = _preprocess("s1grd", db).float()
    assert s1.dtype == torch.float32 and torch.isfinite(s1).all()
    assert float(s1.min()) > -30 and float(s1.max()) < 0  # 2 % cut on both ends


def test_s2_lookup_equals_the_formula_for_every_digital_number():
    from decur.data.ssl4eo_v11 import _preprocess

    every = np.arange(-32768, 32768, dtype=np.int64)
    expected = np.clip(np.floor((every - 1000) / 10000 * 255 + 0.5), 0, 255)
    assert (_preprocess("s2l2a", every.astype(np.int16)[None, None]).numpy()[0, 0] == expected).all()
    wide = np.array([[[1000, 6000, 11000, 40000]]], dtype=np.uint16)  # another integer type takes the formula
    assert _preprocess("s2l1c", wide).tolist() == [[[0, 128, 255, 255]]]


def test_release_statistics_lose_the_offset_and_match_v10():
    from decur.data.ssl4eo_s12 import STATS as V10
    from decur.data.ssl4eo_v11 import STATS

    mean, std = STATS["s2l1c"]
    # after removing 1000 DN, v1.1's L1C means are v1.0's within 30 DN (another sample of locations) in every band
    np.testing.assert_allclose(mean, V10["s2c"][0], atol=3e-3)
    assert std[10] == pytest.approx(45.626e-4) and STATS["s2rgb"][0][0] == pytest.approx(100.708 / 255)


@pytest.mark.parametrize("layout", ["blosc", "uncompressed", "deflated", "chunked_by_sample"])
def test_direct_chunk_reads_equal_xarray_or_fall_back(tmp_path, layout):
    import zipfile

    import xarray as xr

    from decur.data.ssl4eo_v11 import open_shard, read_timestamps

    rng = np.random.default_rng(0)
    path = tmp_path / "S2L1C" / "x.zarr.zip"
    if layout in ("blosc", "deflated"):
        write_shard(path, "S2L1C", ["0000001", "0000002", "0000003"], 8, rng)
    else:  # the same variables written with another encoding
        bands = rng.integers(0, 9000, (3, 4, 13, 8, 8)).astype(np.int16)
        chunks = (3, 1, 13, 8, 8) if layout == "uncompressed" else (1, 4, 13, 8, 8)
        ds = xr.Dataset({"bands": (("sample", "time", "band", "y", "x"), bands)})
        ds.to_zarr(tmp_path / "tree", zarr_format=2, encoding={"bands": {"chunks": chunks, "compressors": None}})
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted((tmp_path / "tree").rglob("*")):
                zf.write(f, f.relative_to(tmp_path / "tree").as_posix())
    if layout == "deflated":  # the same members, deflated
        with zipfile.ZipFile(path) as src:
            members = {i.filename: src.read(i) for i in src.infolist()}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    buffers: dict = {}
    direct = read_timestamps(path, "bands", [3, 1], buffers)
    if layout in ("deflated", "chunked_by_sample"):
        assert direct is None  # the caller reads through xarray
        return
    assert direct is not None and sorted(direct) == [1, 3]
    ds = open_shard(path)
    for t in (1, 3):
        assert np.array_equal(direct[t], ds["bands"].isel(time=t).values)
    again = read_timestamps(path, "bands", [1], buffers)
    assert again is not None and again[1] is buffers[("S2L1C", "bands", 1)]  # decoded into the same buffer


def test_a_corrupt_chunk_is_named(tmp_path):
    import zipfile

    from decur.data.ssl4eo_v11 import read_timestamps

    path = tmp_path / "S2L1C" / "x.zarr.zip"
    write_shard(path, "S2L1C", ["0000001", "0000002"], 8, np.random.default_rng(0))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("bands/0.2.0.0.0")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start : start + 16] = b"\xff" * 16  # the codec's header
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"x.zarr.zip.*bands/0.2.0.0.0 cannot be decoded"):
        read_timestamps(path, "bands", [2])


def test_shards_are_disjoint_per_process_and_worker_and_change_every_epoch(split):
    seen = {}
    for rank in range(2):
        ds = SSL4EOS12v11(split, MODS).shard(rank, 2)
        for worker in range(2):
            for epoch in range(2):
                seen[rank, worker, epoch] = ds.epoch_files(epoch, worker, 2)
    for epoch in range(2):
        files = [f for (r, w, e), fs in seen.items() if e == epoch for f in fs]
        assert sorted(files) == sorted(SSL4EOS12v11(split, MODS).files)  # each file once per epoch
    assert seen[0, 0, 0] != seen[0, 0, 1] or seen[1, 0, 0] != seen[1, 0, 1]
    assert full_batches(files_per_process=5, workers=2, batch_size=64) == 5  # 3 + 2 files of 64
    assert full_batches(files_per_process=3, workers=2, batch_size=48, per_file=64) == 3  # 128 // 48 + 64 // 48


def test_loader_yields_exactly_its_length_and_advances_epochs(split):
    ds = SSL4EOS12v11(split, ["s1grd", "s2l1c"])
    loader = shard_loader(ds, batch_size=4, num_workers=0, seed=3, num_replicas=2, rank=1)
    first = [b["s1grd"] for b in loader]
    second = [b["s1grd"] for b in loader]
    assert len(first) == len(second) == len(loader) == 2  # 2 of 4 files, one batch each
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # a new epoch, a new order
    resumed = shard_loader(SSL4EOS12v11(split, ["s1grd", "s2l1c"]), batch_size=4, num_workers=0, seed=3,
                           num_replicas=2, rank=1, start_epoch=1)  # fmt: skip
    assert all(torch.equal(a["s1grd"], b) for a, b in zip(resumed, second, strict=True))  # epoch 1 replayed
    with pytest.raises(DatasetError, match="no full batch of 16"):
        shard_loader(SSL4EOS12v11(split, ["s1grd"]), batch_size=16, num_workers=0, seed=0, num_replicas=2, rank=0)


def test_data_check_names_every_bad_file(split, tmp_path, capsys):
    bad = tmp_path / "train"
    shutil.copytree(split, bad)
    files = sorted((bad / "S2L1C").glob("*.zarr.zip"))
    files[0].write_bytes(b"not a zip")  # corrupt
    (bad / "S1GRD" / files[1].name).unlink()  # missing for one sensor
    write_shard(bad / "S2L2A" / files[2].name, "S2L2A", ["9999999", "1", "2", "3"], 16, np.random.default_rng(0))
    shutil.copy(bad / "S2L2A" / files[3].name, bad / "S2L1C" / files[3].name)  # 12 bands in the 13-band folder
    assert main(["data", "check", str(bad), "--dataset", "ssl4eo_s12_v11"]) == 1
    out = capsys.readouterr().out
    assert f"S2L1C/{files[0].name}: not a readable Zarr zip" in out
    assert f"S1GRD/{files[1].name}: missing" in out
    assert f"S2L2A/{files[2].name}: sample ids differ" in out
    assert f"S2L1C/{files[3].name}: 12 bands, s2l1c has 13" in out
    with pytest.raises(DatasetError, match="missing for s1grd"):
        SSL4EOS12v11(bad, MODS)
    assert main(["data", "check", str(split), "--dataset", "ssl4eo_s12_v11"]) == 0


def test_data_check_names_an_image_without_data(split, tmp_path, capsys):
    bad = tmp_path / "train"
    shutil.copytree(split, bad)
    shard = sorted((bad / "S1GRD").glob("*.zarr.zip"))[1]
    ids = [f"{1000 + i * 7:07d}" for i in range(4)]  # make_v11's ids of the second shard
    write_shard(shard, "S1GRD", ids, 16, np.random.default_rng(0), empty=(2, 1))
    assert main(["data", "check", str(bad), "--dataset", "ssl4eo_s12_v11"]) == 1
    out = capsys.readouterr().out
    assert f"S1GRD/{shard.name}: timestamp 1 of sample(s) [2] has a band that is NaN everywhere" in out


def test_three_sensor_config_pretrains_on_release_shards(split, tmp_path):
    from decur.train.run import pretrain

    overrides = [f"data.root={split}", "data.crop_size=16", "data.image_size=16", "data.batch_size=4",
                 "data.num_workers=0", "trainer.max_epochs=2", "trainer.devices=1", "trainer.strategy=auto",
                 "trainer.precision=32-true", "model.arch=resnet18", "model.projector=[32, 32]"]  # fmt: skip
    cfg = load_config(REPO / "configs" / "ssl4eo_s12_v11_three_sensors.yaml", overrides)
    summary = pretrain(cfg, tmp_path / "run")
    assert summary["global_step"] == 8 and np.isfinite(summary["final_loss"]["train/total"])  # 4 files x 2 epochs
    assert "train/common_1_3" in summary["final_loss"]
    wrong = "data.modalities=[{name: s2l2a, bands: 13}, {name: s1grd, bands: 2}]"
    with pytest.raises(ConfigError, match="s2l2a has 12 bands"):
        load_config(None, [*overrides, "data.dataset=ssl4eo_s12_v11", wrong]).validate()


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one_node", "two_nodes"])
def test_two_processes_read_disjoint_shards_and_keep_the_global_batch(split, tmp_path, layout):
    """`decur pretrain` on v1.1 shards under 2 gloo processes, each with 2 loader workers: one launch with 2
    devices, or two launches as two nodes of 1 device (``NODE_RANK``, ``MASTER_ADDR``, as on a cluster)."""
    import os
    import socket
    import subprocess
    import sys

    out, probe = tmp_path / "ddp", tmp_path / "probe"
    probe.mkdir()
    cmd = [sys.executable, "-m", "tests.ddp_probe", "pretrain", "--config",
           str(REPO / "configs" / "ssl4eo_s12_v11_three_sensors.yaml"), "--output", str(out), f"data.root={split}",
           "data.crop_size=16", "data.image_size=16", "data.batch_size=4", "data.num_workers=2",
           "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.strategy=ddp",
           "trainer.precision=32-true", "model.arch=resnet18", "model.projector=[32, 32]"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DECUR_PROBE": str(probe), "PYTHONPATH": str(REPO)}
    if layout == "one_node":
        done = subprocess.run([*cmd, "trainer.devices=2"], env=env, capture_output=True, text=True, timeout=600,
                              cwd=REPO)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        nodes = [subprocess.Popen([*cmd, "trainer.devices=1", "trainer.num_nodes=2"], cwd=REPO, text=True,
                                  env={**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                       "NODE_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for r in (0, 1)]  # fmt: skip
        logs = [n.communicate(timeout=600)[0] for n in nodes]
        for n, log in zip(nodes, logs, strict=True):
            assert n.returncode == 0, log[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 8  # 2 epochs x (2 files x 4 locations per process / 2 per process and step)
    all_files = set(SSL4EOS12v11(split, MODS).files)
    for epoch in (0, 1):
        read = {r: [f for w in (0, 1) for f in (probe / f"files-r{r}-e{epoch}-w{w}.txt").read_text().split()]
                for r in (0, 1)}  # fmt: skip
        assert len(read[0]) == len(read[1]) == 2 and not set(read[0]) & set(read[1])
        assert set(read[0]) | set(read[1]) == all_files  # every shard once per epoch, none twice
    losses = [[float(v) for v in (probe / f"loss-r{r}.txt").read_text().split()] for r in (0, 1)]
    assert len(losses[0]) == 8 and losses[0] == pytest.approx(losses[1], rel=1e-6)  # the same global loss


def _s1_timestamp(x: torch.Tensor) -> list[int]:
    """The fixture's S1 fingerprint: VV is about -20 + 3 t dB (the 2 % cut keeps the mean)."""
    return [round((float(v) + 20) / 3) for v in x[:, 0].float().mean(dim=(1, 2))]


def test_sar_views_come_from_the_same_timestamps_as_the_optical_ones(split):
    for s in SSL4EOS12v11(split, ["s1grd", "s2l1c"]):
        assert _s1_timestamp(s["s1grd"]) == _timestamp(s["s2l1c"])


def test_too_few_clear_timestamps_fall_back_to_the_least_cloudy(split):
    # cloud shares 0, 1/3, 2/3, 1: at most 0.2 leaves only timestamp 0, so the draw takes the two least cloudy
    for s in SSL4EOS12v11(split, MODS, max_cloud_fraction=0.2):
        assert sorted(_timestamp(s["s2l1c"])) == [0, 1]
    for s in SSL4EOS12v11(split, MODS, max_cloud_fraction=0.5):
        assert set(_timestamp(s["s2l1c"])) <= {0, 1}  # enough clear ones: only those


def test_an_uneven_file_count_gives_every_process_as_many_whole_files_and_rotates_the_rest(tmp_path):
    odd = make_v11(tmp_path, files=5, samples=2, size=8, folders=("S1GRD",))
    unread = set()
    for epoch in range(8):
        shares = [SSL4EOS12v11(odd, ["s1grd"]).shard(r, 2).epoch_files(epoch) for r in range(2)]
        assert [len(s) for s in shares] == [2, 2] and not set(shares[0]) & set(shares[1])  # 5 // 2 each, disjoint
        (left,) = set(SSL4EOS12v11(odd, ["s1grd"]).files) - set(shares[0]) - set(shares[1])
        unread.add(left)
    assert len(unread) > 1  # the file left over changes with the epoch's permutation


def test_draws_do_not_depend_on_which_worker_reads_a_file(split):
    from torch.utils.data import DataLoader

    def drawn(workers: int) -> set[bytes]:  # each sample by its content: location and the timestamps drawn for it
        loader = DataLoader(SSL4EOS12v11(split, ["s2l1c"]), batch_size=None, num_workers=workers)
        return {s["s2l1c"].numpy().tobytes() for s in loader}

    alone = drawn(0)
    assert len(alone) == 16 and drawn(2) == alone


def test_sar_no_data_is_filled_with_the_image_mean_before_the_cut():
    from decur.data.ssl4eo_v11 import _preprocess

    db = np.linspace(-18, -12, 400, dtype=np.float32).reshape(1, 20, 20)
    db[0, 10, 10] = np.nan  # a no-data pixel in the middle of the value range
    out = _preprocess("s1grd", db.astype(np.float16)).float()
    assert float(out[0, 10, 10]) == pytest.approx(float(np.nanmean(db)), abs=0.01)  # not 0 dB, not NaN


def test_a_resumed_epoch_skips_each_workers_share_of_the_batches_done(tmp_path):
    """3 files of 4 locations, 2 workers, batches of 4: worker 0 reads files 1 and 3 (2 batches), worker 1 file 2
    (1 batch); the loader takes w0, w1, w0. After 2 batches each worker skips 4 samples, after 3 w0 skips 8."""
    split = make_v11(tmp_path, files=3, samples=4, size=16)
    ds = SSL4EOS12v11(split, ["s1grd"])
    ds.batches = (3, 4)
    for start, want in ((0, (0, 0)), (1, (4, 0)), (2, (4, 4)), (3, (8, 4))):
        ds.shard(0, 1, 0, start)
        assert (ds._skipped_samples(0, 2), ds._skipped_samples(1, 2)) == want, start
    ds.shard(0, 1, 0, 2)
    assert ds._skipped_samples(0, 1) == 8  # one worker: every batch done is its own


def test_embed_reads_every_location_at_one_timestamp_with_its_stored_centre(split, tmp_path):
    """`decur embed` on the shards: one row per location (timestamp 1 asked), the values of the training module on
    the loader's units, and a 2.64 km footprint centred on the stored centre."""
    import pyarrow.parquet as pq
    import xarray as xr
    from pyproj import Transformer

    from decur.data.ssl4eo_v11 import _preprocess, open_shard
    from decur.geometry import as_float
    from decur.train.module import PretrainModule
    from decur.train.run import pretrain

    overrides = [f"data.root={split}", "data.crop_size=16", "data.image_size=16", "data.batch_size=4",
                 "data.num_workers=0", "trainer.max_epochs=1", "trainer.devices=1", "trainer.strategy=auto",
                 "trainer.precision=32-true", "model.arch=resnet18", "model.projector=[32, 32]",
                 "eval.enabled=false"]  # fmt: skip
    pretrain(load_config(REPO / "configs" / "ssl4eo_s12_v11_three_sensors.yaml", overrides), tmp_path / "run")
    out = tmp_path / "e.parquet"
    assert main(["embed", str(tmp_path / "run"), "--out", str(out), "dataset=ssl4eo_s12_v11", f"root={split}",
                 "season=1", "num_workers=0", "batch_size=3"]) == 0  # fmt: skip
    table = pq.read_table(out)
    first = sorted((split / "S1GRD").glob("*.zarr.zip"))[0]
    ds = open_shard(first)
    ids = [f"{s}/1" for s in ds["sample"].values]
    assert table.num_rows == 16 and table["id"].to_pylist()[:4] == ids
    module = PretrainModule.from_run(str(tmp_path / "run")).eval()
    for m, folder in (("s1grd", "S1GRD"), ("s2l2a", "S2L2A")):
        with xr.open_zarr(__import__("zarr").storage.ZipStore(str(split / folder / first.name), mode="r")) as shard:
            x = torch.stack([as_float(_preprocess(m, np.asarray(shard["bands"][i, 1].values))) for i in range(4)])
        with torch.no_grad():
            expected = module.model.features(m, module.views[m].normalize(x)).numpy()
        got = np.stack(table[f"feature_{m}"].to_numpy(zero_copy_only=False)[:4])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    for i in range(4):  # back in the tile's UTM zone (pyproj, not rasterio): a 2640 m square on the stored centre
        lat, lon, epsg = float(ds["center_lat"][i]), float(ds["center_lon"][i]), int(ds["crs"][i])
        to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
        cx, cy = to_utm.transform(lon, lat)
        ring = np.frombuffer(table["geometry"][i].as_py()[13:], dtype="<f8").reshape(-1, 2)[:4]
        xs, ys = to_utm.transform(ring[:, 0], ring[:, 1])
        np.testing.assert_allclose(xs, [cx - 1320, cx + 1320, cx + 1320, cx - 1320], atol=0.01)
        np.testing.assert_allclose(ys, [cy - 1320, cy - 1320, cy + 1320, cy + 1320], atol=0.01)
