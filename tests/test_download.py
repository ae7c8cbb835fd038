"""``decur data download``: SSL4EO-S12 v1.1 shards from a local stand-in of the Hub repository, never the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from decur.cli import main
from decur.data.download import V11_REPO
from decur.datasets import DATASETS

from .data.ssl4eo_v11.data import make_v11


@pytest.fixture(scope="module")
def mirror(module_tmp) -> Path:
    """The repository's layout: <split>/<FOLDER>/ssl4eos12_<split>_seasonal_data_<NNNNNN>.zarr.zip, 3 files."""
    root = module_tmp("hub")
    make_v11(root, files=3, samples=4, size=16)
    return root


def test_the_first_files_of_the_chosen_products_arrive_in_the_release_layout_and_are_checked(mirror, tmp_path, capsys):
    out = tmp_path / "ssl4eo"
    args = ["data", "download", "ssl4eo_s12_v11", str(out), "--files", "2", "--products", "s1grd,s2l1c"]
    assert main([*args, "--source", str(mirror)]) == 0
    for folder in ("S1GRD", "S2L1C"):
        assert sorted(p.name for p in (out / "train" / folder).iterdir()) == [
            "ssl4eos12_train_seasonal_data_000001.zarr.zip",
            "ssl4eos12_train_seasonal_data_000002.zarr.zip",
        ]
    assert not (out / "train" / "S2L2A").exists()
    text = capsys.readouterr().out
    assert f"data.root={out / 'train'}" in text and "problems" not in text.lower().replace("no problems", "")
    # re-run with more files: finished ones are kept, a leftover .partial is never taken for a finished file
    (out / "train" / "S1GRD" / "ssl4eos12_train_seasonal_data_000003.zarr.zip.partial").write_bytes(b"cut")
    kept = (out / "train" / "S1GRD" / "ssl4eos12_train_seasonal_data_000001.zarr.zip").stat().st_mtime_ns
    assert main([*args[:5], "3", *args[6:], "--source", str(mirror)]) == 0
    assert (out / "train" / "S1GRD" / "ssl4eos12_train_seasonal_data_000001.zarr.zip").stat().st_mtime_ns == kept
    third = out / "train" / "S1GRD" / "ssl4eos12_train_seasonal_data_000003.zarr.zip"
    assert third.read_bytes() == (mirror / "train" / "S1GRD" / third.name).read_bytes()
    assert not list((out / "train").rglob("*.partial"))


def test_offline_is_one_line_naming_the_repository_and_the_fix(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network in tests
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "download", "ssl4eo_s12_v11", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("decur: error:") and "Traceback" not in err and len(err.splitlines()) == 1
    assert f"huggingface.co/datasets/{V11_REPO}" in err and "--source" in err


@pytest.mark.parametrize("name", [n for n, spec in DATASETS.items() if spec.source and not spec.fetch])
def test_the_other_datasets_say_where_they_are_and_the_layout(name, tmp_path, capsys):
    assert main(["data", "download", name, str(tmp_path / "d")]) == 2
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{name}: get it from {DATASETS[name].source.url}") and str(tmp_path / "d") in out


def test_every_dataset_page_has_a_get_the_data_section_naming_its_command():
    from .conftest import REPO

    pages = {
        "ssl4eo_s12_v11": "ssl4eo-s12-v11.md", "ssl4eo_s12": "ssl4eo-s12.md", "bigearthnet": "bigearthnet.md",
        "geonrw": "geonrw.md", "sunrgbd": "rgbd.md", "nyuv2": "rgbd.md",
    }  # fmt: skip
    for name, page in pages.items():
        text = (REPO / "docs" / "datasets" / page).read_text()
        assert "## Get the data" in text and f"decur data download {name}" in text, page
