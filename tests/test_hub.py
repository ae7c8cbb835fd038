"""Weights by name (release short names, torchgeo's enum names, hf:...) from pre-filled caches, never the network;
exports in the Hugging Face Hub's layout and back through ``MultimodalEncoder.from_pretrained``."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import load_file

from decur.cli import main
from decur.weights import hub
from decur.weights.joint import MultimodalEncoder

from .data import release_joint_state

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """huggingface_hub's cache in ``tmp_path``, offline: only what a test puts there can be found."""
    cache = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def put(repo: str, files: dict[str, Path]) -> None:
        """``files`` (name → local file or folder) as the snapshot of ``repo`` at ``main``, the Hub cache's layout."""
        root = cache / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(COMMIT)
        for name, src in files.items():
            target = root / "snapshots" / COMMIT / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, target) if src.is_dir() else shutil.copy(src, target)

    return put


def test_the_list_names_every_release_file_and_marks_what_decur_cannot_load(capsys):
    assert main(["import", "--list"]) == 0
    out = capsys.readouterr().out
    for name, entry in hub.RELEASE.items():
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert entry.file in line and (("cannot load" in line) == ("rda" in name)), name
    assert "torchgeo:ResNet50_Weights.SENTINEL2_ALL_DECUR" in out
    # the table against the release README's links: https://huggingface.co/wangyi111/DeCUR/resolve/main/<file>
    assert hub.RELEASE["rn50-ssl4eo-s12"].file == "rn50_ssl4eo-s12_joint_decur_ep100.pth"
    assert hub.RELEASE["mitb5-sunrgbd-hha"].file == "mitb5_sunrgbd_backbone_hha_decur_ep200.pth"
    assert hub.RELEASE["vits16-geonrw"].modalities == ("rgb", "dem")


def test_a_release_short_name_imports_from_the_hugging_face_cache(tmp_path, hf_cache, capsys):
    ckpt = tmp_path / "joint.pth"
    torch.save({"epoch": 99, "model": release_joint_state("resnet18"), "optimizer": {}}, ckpt)
    hf_cache("wangyi111/DeCUR", {"rn50_ssl4eo-s12_joint_decur_ep100.pth": ckpt})
    assert main(["import", "rn50-ssl4eo-s12", "--out", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "card.json").read_text())
    assert list(card["modalities"]) == ["s1", "s2"]  # named from the table: the joint file needs no --modalities
    assert card["source"]["name"] == "rn50-ssl4eo-s12" and COMMIT in card["source"]["path"]


def test_a_name_not_in_the_cache_offline_fails_in_one_line_saying_what_to_download(tmp_path, hf_cache, capsys):
    assert main(["import", "mitb2-sunrgbd", "--out", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "https://huggingface.co/wangyi111/DeCUR/resolve/main/mitb2_sunrgbd_rgb_hha_decur_ep200.pth" in err
    assert main(["import", "rn50-rda-geonrw", "--out", str(tmp_path / "w")]) == 1
    assert "deformable attention" in capsys.readouterr().err


def test_torchgeo_names_download_once_and_check_the_sha256_prefix(tmp_path, monkeypatch, capsys):
    """A local file URL stands in for torchgeo's; its name carries the first 8 hex digits of its sha256, as
    torchgeo's file names do (torchvision's check_hash)."""
    from decur.weights.formats import strip_prefix

    state = strip_prefix(release_joint_state("resnet18"), "module.backbone_2.")  # a 13-band backbone only
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    served = tmp_path / "served" / f"rn50_ssl4eo-s12_ms_decur_ep100-{digest[:8]}.pth"
    served.parent.mkdir()
    shutil.copy(plain, served)
    monkeypatch.setitem(hub.TORCHGEO, "ResNet50_Weights.SENTINEL2_ALL_DECUR", (served.as_uri(), "s2"))
    monkeypatch.setitem(sys.modules, "torchgeo.models", None)  # else torchgeo's own URL (the network) wins
    monkeypatch.setenv("DECUR_CACHE", str(tmp_path / "cache"))
    name = "torchgeo:ResNet50_Weights.SENTINEL2_ALL_DECUR"
    assert main(["import", name, "--out", str(tmp_path / "a")]) == 0
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert list(card["modalities"]) == ["s2"] and card["modalities"]["s2"]["transform"]["rule"] == "ssl4eo_release"
    served.unlink()  # the cached copy serves the second import
    assert main(["import", name, "--out", str(tmp_path / "b")]) == 0
    bad = tmp_path / "served" / "rn50_ssl4eo-s12_ms_decur_ep100-00000000.pth"
    shutil.copy(plain, bad)
    monkeypatch.setitem(hub.TORCHGEO, "ResNet50_Weights.SENTINEL2_ALL_DECUR", (bad.as_uri(), "s2"))
    assert main(["import", name, "--out", str(tmp_path / "c")]) == 1
    assert "not 00000000" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "weights" / bad.name).exists()  # a file with the wrong hash is not kept


@pytest.fixture
def export(tmp_path) -> Path:
    from decur.weights import import_weights

    ckpt = tmp_path / "joint.pth"
    torch.save({"epoch": 99, "model": release_joint_state("resnet18"), "optimizer": {}}, ckpt)
    import_weights(ckpt, tmp_path / "export", ["s1", "s2"])
    return tmp_path / "export"


def test_an_export_in_the_hub_layout_round_trips_through_from_pretrained(export, tmp_path, hf_cache):
    folder = tmp_path / "hub"
    assert main(["export", str(export), "--hub", str(folder)]) == 0
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "model.pth", "config.json", "README.md"}
    readme = (folder / "README.md").read_text()
    front = readme.split("---\n")[1]  # the Hub's YAML metadata block
    assert "library_name: decur" in front and "license: apache-2.0" in front and "  - sentinel-2" in front
    config = json.loads((folder / "config.json").read_text())
    assert config["modalities"]["s2"]["in_chans"] == 13 and config["modalities"]["s2"]["transform"]["steps"]
    # timm loads one encoder from the keys under <modality>.encoder. strictly, as the README says
    tensors = load_file(str(folder / "model.safetensors"))
    net = timm.create_model("resnet18", in_chans=13, num_classes=0)
    net.load_state_dict({k.split(".encoder.", 1)[1]: v for k, v in tensors.items() if k.startswith("s2.encoder.")})
    x = {"s1": torch.randn(2, 2, 32, 32), "s2": torch.rand(2, 13, 32, 32) * 3000}
    original = MultimodalEncoder.from_export(export, transforms=True)
    hf_cache("me/decur-rn18", {".": folder})
    for source in (folder, "hf:me/decur-rn18"):
        loaded = MultimodalEncoder.from_pretrained(source, transforms=True)
        torch.testing.assert_close(loaded(x), original(x))
    with torch.no_grad():
        direct = net.eval()(original.transforms["s2"](x["s2"]))
    torch.testing.assert_close(direct, original.encoders["s2"].eval()(original.transforms["s2"](x["s2"])))
    assert main(["export", str(export), "--hub", str(folder)]) == 1  # an existing folder needs --overwrite


def test_hf_names_are_parsed_strictly():
    with pytest.raises(hub.WeightsError, match="hf:ORG/REPO"):
        hub.resolve("hf:not a repo")
    with pytest.raises(hub.WeightsError, match="torchgeo's DeCUR weights"):
        hub.resolve("torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO")


def test_every_pretrained_field_takes_a_name_and_a_local_path_of_that_name_wins(tmp_path, hf_cache, monkeypatch):
    """``read_pretrained`` (behind ``pretrained=``, ``source``, ``load_backbone``) resolves names like ``decur
    import``; a folder that happens to carry a release short name in the working directory is read as the folder."""
    from decur.weights import import_weights, read_pretrained

    ckpt = tmp_path / "joint.pth"
    torch.save({"epoch": 99, "model": release_joint_state("resnet18"), "optimizer": {}}, ckpt)
    hf_cache("wangyi111/DeCUR", {"rn50_ssl4eo-s12_joint_decur_ep100.pth": ckpt})
    pre = read_pretrained("rn50-ssl4eo-s12")
    assert pre.modalities == ["s1", "s2"] and pre.kind == "release-joint" and COMMIT in str(pre.source)
    import_weights(ckpt, tmp_path / "rn50-ssl4eo-s12", ["sar", "optical"])
    monkeypatch.chdir(tmp_path)
    assert read_pretrained("rn50-ssl4eo-s12").modalities == ["sar", "optical"]  # the local export, not the Hub's


def test_a_weights_file_replaced_in_place_is_read_again(tmp_path):
    """The read cache is keyed by path, modification time and size: a file rewritten within the same mtime tick
    (same mtime_ns, other size) is not served from the cache."""
    import os

    from decur.weights.formats import _load

    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, path)
    stamp = os.stat(path).st_mtime_ns
    assert _load(path)["a"].shape == (2,)
    torch.save({"a": torch.zeros(1000)}, path)
    os.utime(path, ns=(stamp, stamp))
    assert _load(path)["a"].shape == (1000,)


def test_the_torchgeo_table_holds_torchgeos_own_urls():
    """decur's fallback table (used without torchgeo) against torchgeo's weights enum: same URL per name."""
    tgm = pytest.importorskip("torchgeo.models", reason="torchgeo is an optional extra: pip install decur[torchgeo]")
    for key, (url, modality) in hub.TORCHGEO.items():
        enum_name, member = key.split(".")
        weights = getattr(getattr(tgm, enum_name), member)
        assert weights.url == url, key
        assert weights.meta["in_chans"] == {"s1": 2, "s2": 13}[modality], key
