"""``decur data download`` through torchgeo's own downloaders, served by a local stand-in on loopback.

torchgeo's classes keep their code (download, MD5 check, part concatenation, extraction); only where they point
is changed: their URL and MD5 attributes name archives built here from the fixture generators, in the layout each
release archive has (GeoNRW: city folders at the top; BigEarthNet v1: ``BigEarthNet-S1-v1.0/`` and
``BigEarthNet-v1.0/`` archives plus torchgeo's ``s2,s1`` split lists; SSL4EO-S12: ``<product>/<location>/...`` in
byte-split parts ``aa``, ``ab``). Never the network.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from decur.cli import main
from decur.datasets import DATASETS

from .data.bigearthnet.data import make_v1
from .data.geonrw.data import generate as make_geonrw
from .data.ssl4eo_s12.data import generate as make_ssl4eo

tgd = pytest.importorskip("torchgeo.datasets", reason="torchgeo is an optional extra: pip install decur[torchgeo]")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tar(archive: Path, folder: Path, *members: str) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for member in members:
            tar.add(folder / member, arcname=member)
    return archive


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the tests read the command's stderr
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:  # a client that hung up early
        pass


@pytest.fixture(scope="module")
def served(module_tmp) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder (the stand-in of torchgeo's sources): (base URL, folder)."""
    folder = module_tmp("sources")
    server = _QuietServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


@pytest.fixture(scope="module")
def geonrw_archive(served, module_tmp) -> Path:
    """GeoNRW's ``nrw_dataset.tar.gz``: every city's folder at the top of the archive."""
    tree = make_geonrw(module_tmp("geonrw-tree"), tile=24)
    return _tar(served[1] / "geonrw" / "nrw_dataset.tar.gz", tree, *sorted(p.name for p in tree.iterdir()))


def _point_geonrw(monkeypatch, served, archive: Path, md5: str | None = None) -> None:
    monkeypatch.setattr(tgd.GeoNRW, "url", f"{served[0]}/geonrw/{{}}")
    monkeypatch.setattr(tgd.GeoNRW, "md5", md5 or _md5(archive))


def test_geonrw_arrives_through_torchgeo_hash_checked_extracted_and_checked(
    served, geonrw_archive, monkeypatch, tmp_path, capsys
):
    _point_geonrw(monkeypatch, served, geonrw_archive)
    root = tmp_path / "new" / "geonrw"  # folders that do not exist yet
    assert main(["data", "download", "geonrw", str(root)]) == 0
    out = capsys.readouterr().out
    # the release layout decur reads: <city>/<E>_<N>_{rgb.jp2,dem.tif,seg.tif}, 40 train + 3 test cities
    assert len([p for p in root.iterdir() if p.is_dir()]) == 43
    assert sorted(p.name.split("_", 2)[2] for p in (root / "aachen").iterdir()) == ["dem.tif", "rgb.jp2", "seg.tif"]
    assert f"downloading geonrw (GeoNRW) with torchgeo into {root}" in out
    assert f"geonrw at {root}: 40 sample(s)" in out and "no problems found" in out  # data check, train split
    assert f"data.dataset=geonrw data.root={root}" in out and f"dataset=geonrw root={root}" in out
    # the archive torchgeo kept is the served one, byte for byte
    assert (root / "nrw_dataset.tar.gz").read_bytes() == geonrw_archive.read_bytes()


def test_a_bad_tile_in_the_archive_is_named_by_the_check_and_the_exit_status_is_1(
    served, module_tmp, monkeypatch, tmp_path, capsys
):
    tree = make_geonrw(module_tmp("geonrw-bad"), tile=24)
    bad = sorted((tree / "aachen").glob("*_dem.tif"))[0]
    bad.write_bytes(bad.read_bytes()[:200])  # cut, as an interrupted copy leaves it
    archive = _tar(served[1] / "geonrw-bad" / "nrw_dataset.tar.gz", tree, *sorted(p.name for p in tree.iterdir()))
    monkeypatch.setattr(tgd.GeoNRW, "url", f"{served[0]}/geonrw-bad/{{}}")
    monkeypatch.setattr(tgd.GeoNRW, "md5", _md5(archive))
    assert main(["data", "download", "geonrw", str(tmp_path / "g")]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s):" in out and bad.name in out


def test_a_hash_that_differs_is_one_line_naming_the_url_and_the_target(
    served, geonrw_archive, monkeypatch, tmp_path, capsys
):
    _point_geonrw(monkeypatch, served, geonrw_archive, md5="0" * 32)
    root = tmp_path / "geonrw"
    assert main(["data", "download", "geonrw", str(root)]) == 1
    *progress, err = capsys.readouterr().err.strip().splitlines()
    assert all("B/s" in line for line in progress)  # torchvision's download bar, then the one error line
    assert err.startswith("decur: error:") and f"{served[0]}/geonrw/nrw_dataset.tar.gz" in err
    assert str(root) in err and "MD5" in err


def test_offline_is_one_line_naming_the_url_and_the_target(monkeypatch, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on: connection refused, as offline behind a firewall
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(tgd.GeoNRW, "url", f"http://127.0.0.1:{closed}/geonrw/{{}}")
    root = tmp_path / "geonrw"
    assert main(["data", "download", "geonrw", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"http://127.0.0.1:{closed}/geonrw/nrw_dataset.tar.gz" in err and str(root) in err
    assert "go online" in err


def test_without_torchgeo_one_line_says_how_to_install_it_and_where_the_data_are(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torchgeo.datasets", None)  # `import torchgeo.datasets` raises ImportError
    assert main(["data", "download", "bigearthnet", str(tmp_path / "ben")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'decur[torchgeo]'" in err and "https://bigearth.net" in err
    source = DATASETS["bigearthnet"].source
    root = tmp_path / "ben"
    assert err.startswith(f"decur: error: {root}: downloading bigearthnet goes through torchgeo's downloader")
    assert f"or get it from {source.url} ({source.licence}, {source.size}) and unpack it into {root} as" in err


def test_bigearthnet_v1_arrives_with_torchgeos_split_lists_and_is_read_by_decur(
    served, module_tmp, monkeypatch, tmp_path, capsys
):
    tree = make_v1(module_tmp("ben-tree"))
    sources = served[1] / "ben"
    s1 = _tar(sources / "BigEarthNet-S1-v1.0.tar.gz", tree, "BigEarthNet-S1-v1.0")
    s2 = _tar(sources / "BigEarthNet-S2-v1.0.tar.gz", tree, "BigEarthNet-v1.0")
    s2_of = {}  # torchgeo's lists hold "<S2 patch>,<S1 patch>" per line
    for folder in (tree / "BigEarthNet-S1-v1.0").iterdir():
        s2_of[folder.name] = json.loads((folder / f"{folder.name}_labels_metadata.json").read_text())[
            "corresponding_s2_patch"
        ]
    lists = {}
    for split in ("train", "val", "test"):
        wanted = set((tree / f"{split}.csv").read_text().split())
        rows = sorted(f"{s2},{s1}" for s1, s2 in s2_of.items() if s2 in wanted)
        path = sources / "splits" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{row}\n" for row in rows))
        lists[split] = {
            "url": f"{served[0]}/ben/splits/{split}.csv?inline=false",  # torchgeo's URLs carry a query
            "filename": f"bigearthnet-{split}.csv",
            "md5": _md5(path),
        }
    monkeypatch.setattr(tgd.BigEarthNet, "splits_metadata", lists)
    monkeypatch.setattr(
        tgd.BigEarthNet,
        "metadata",
        {
            "s1": {"url": f"{served[0]}/ben/{s1.name}", "md5": _md5(s1), "filename": s1.name,
                   "directory": "BigEarthNet-S1-v1.0"},
            "s2": {"url": f"{served[0]}/ben/{s2.name}", "md5": _md5(s2), "filename": s2.name,
                   "directory": "BigEarthNet-v1.0"},
        },
    )  # fmt: skip
    root = tmp_path / "ben"
    assert main(["data", "download", "bigearthnet", str(root)]) == 0
    out = capsys.readouterr().out
    lists_arrived = sorted(p.name for p in root.glob("bigearthnet-*.csv"))
    assert lists_arrived == ["bigearthnet-test.csv", "bigearthnet-train.csv", "bigearthnet-val.csv"]
    assert not (root / "train.csv").exists()  # decur read torchgeo's lists, not the release's
    assert f"bigearthnet at {root}: 8 sample(s)" in out and "no problems found" in out  # the 8 train patches
    assert f"dataset=bigearthnet root={root}" in out

    from decur.data.bigearthnet import BigEarthNetMM

    assert len(BigEarthNetMM(root, "test")) == 4  # torchgeo's test list, 4 "s2,s1" rows
    # again with --split val: nothing fetched again (the archives are there), the check walks the 2 val patches
    assert main(["data", "download", "bigearthnet", str(root), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert f"checking {root} (decur data check {root} --dataset bigearthnet --split val)" in out
    assert f"bigearthnet at {root}: 2 sample(s)" in out


def test_ssl4eo_s12_products_arrive_in_parts_concatenated_and_extracted(
    served, module_tmp, monkeypatch, tmp_path, capsys
):
    tree = make_ssl4eo(module_tmp("ssl4eo-tree"), size=264, locations=("0000000", "0000001"))
    sources = served[1] / "ssl4eo"
    checksums: dict[str, dict[str, str]] = {}
    for product, stem in (("s1", "s1_grd"), ("s2c", "s2_l1c"), ("s2a", "s2_l2a")):
        whole = _tar(module_tmp(f"whole-{product}") / f"{stem}.tar.gz", tree, product).read_bytes()
        half = len(whole) // 2
        checksums[product] = {}
        for suffix, part in (("aa", whole[:half]), ("ab", whole[half:])):
            path = sources / stem / f"{stem}.tar.gz.part{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(part)
            checksums[product][suffix] = _md5(path)
    monkeypatch.setattr(tgd.SSL4EOS12, "url", f"{served[0]}/ssl4eo/{{0}}/{{0}}.tar.gz.part{{1}}")
    monkeypatch.setattr(tgd.SSL4EOS12, "checksums", checksums)
    root = tmp_path / "ssl4eo"
    assert main(["data", "download", "ssl4eo_s12", str(root)]) == 0  # default products: s1,s2c (the paper's)
    out = capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["s1", "s2c"]
    assert f"downloading ssl4eo_s12 (SSL4EOS12 s1) with torchgeo into {root}" in out
    assert sorted(p.name for p in (root / "s1").iterdir()) == ["0000000", "0000001"]
    assert f"ssl4eo_s12 at {root}: 2 sample(s)" in out and "no problems found" in out
    assert f"data.dataset=ssl4eo_s12 data.root={root}" in out
    # the L2A product instead: the check reads s2a (12 bands), not the absent s2c
    l2a = tmp_path / "l2a"
    assert main(["data", "download", "ssl4eo_s12", str(l2a), "--products", "s1,s2a"]) == 0
    assert sorted(p.name for p in l2a.iterdir() if p.is_dir()) == ["s1", "s2a"]
    assert f"ssl4eo_s12 at {l2a}: 2 sample(s)" in capsys.readouterr().out


def test_ssl4eo_s12_refuses_a_product_torchgeo_does_not_have(tmp_path, capsys):
    assert main(["data", "download", "ssl4eo_s12", str(tmp_path / "x"), "--products", "s1,s2l1c"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--products ['s2l1c'] unknown" in err and "s1,s2c,s2a" in err
