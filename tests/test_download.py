"""``decur data download``: SSL4EO-S12 v1.1 shards from a local stand-in of the Hub repository, never the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from decur.cli import main
from decur.data.download import V11_REPO, download_v11
from decur.data.errors import DatasetError
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
    assert f"data.root={out / 'train'}" in text and "--split train --quick)" in text
    assert "problems" not in text.lower().replace("no problems", "")
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
    assert err.startswith(f"decur: error: https://huggingface.co/datasets/{V11_REPO}: cannot be reached")
    assert "--source" in err


def test_the_python_call_defaults_to_one_train_shard_of_all_four_products(mirror, tmp_path):
    split = download_v11(tmp_path / "d", source=mirror)
    assert split == tmp_path / "d" / "train"
    assert {p.name: [f.name for f in p.iterdir()] for p in split.iterdir()} == {
        folder: ["ssl4eos12_train_seasonal_data_000001.zarr.zip"] for folder in ("S1GRD", "S2L1C", "S2L2A", "S2RGB")
    }


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"products": ["s1grd", "s2x"]}, ["products ['s2x'] unknown", "products among ['s1grd', 's2l1c', 's2l2a',"]),
        ({"files": 0}, ["or 0 files", "--files >= 1"]),
        ({"split": "val"}, ["has no val shards for ['S1GRD', 'S2L1C', 'S2L2A', 'S2RGB']", "check --split"]),
    ],
)
def test_what_the_mirror_cannot_give_is_named_with_the_target(mirror, tmp_path, kwargs, words):
    with pytest.raises(DatasetError) as err:
        download_v11(tmp_path / "d", source=mirror, **kwargs)
    assert err.value.path == tmp_path / "d" and err.value.fix is not None
    for word in words:
        assert word in str(err.value)
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_the_hub_is_asked_for_the_release_repository_as_a_dataset(mirror, tmp_path, monkeypatch):
    """The Hub path with huggingface_hub's two calls stood in by the mirror: the arguments decur passes are the
    release's repository id, ``repo_type="dataset"`` and the file's path inside the repository."""
    import huggingface_hub

    calls: list[tuple] = []

    def list_repo_files(self, repo_id, *, repo_type=None, **kwargs):
        calls.append(("list", repo_id, repo_type))
        return sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*.zarr.zip"))

    def hf_hub_download(repo_id, filename, *, repo_type=None, **kwargs):
        calls.append(("get", repo_id, filename, repo_type))
        return str(mirror / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    split = download_v11(tmp_path / "d", products=["s2rgb"], files=2)
    name = "ssl4eos12_train_seasonal_data_00000{}.zarr.zip"
    assert calls == [("list", V11_REPO, "dataset")] + [
        ("get", V11_REPO, f"train/S2RGB/{name.format(i)}", "dataset") for i in (1, 2)
    ]
    assert sorted(p.name for p in (split / "S2RGB").iterdir()) == [name.format(1), name.format(2)]

    def refused(repo_id, filename, *, repo_type=None, **kwargs):
        raise OSError("403 Forbidden")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)
    with pytest.raises(DatasetError) as err:
        download_v11(tmp_path / "e", products=["s1grd"])
    target = tmp_path / "e" / "train" / "S1GRD" / name.format(1)
    assert str(err.value).startswith(f"https://huggingface.co/datasets/{V11_REPO}/blob/main/train/S1GRD/")
    assert f"cannot be downloaded into {target} (OSError)" in str(err.value) and "finished files are kept" in str(
        err.value
    )
    assert not list((tmp_path / "e").rglob("*.partial"))


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
