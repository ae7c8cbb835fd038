"""Export → plain timm → same features; import from our files, torchgeo-style weights and checkpoints."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from decur.cli import main
from decur.config import load_config
from decur.train.module import PretrainModule
from decur.train.run import pretrain
from decur.weights import WeightsError, load_backbone

from .conftest import REPO


@pytest.fixture(scope="module")
def run(module_tmp):
    out = module_tmp("run")
    pretrain(load_config(REPO / "configs" / "smoke.yaml", ["trainer.max_epochs=1", "eval.enabled=false"]), out)
    return out


def test_export_round_trip_through_plain_timm(run, tmp_path, capsys):
    target = tmp_path / "optical.safetensors"
    assert main(["export", str(run), "--modality", "optical", "--out", str(target)]) == 0
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["arch"] == "resnet18" and card["in_chans"] == 13 and card["common_dim"] == 48
    assert card["transform"]["steps"][-1]["op"] == "standardize" and len(card["transform"]["steps"][-1]["mean"]) == 13
    assert len(card["config_sha256"]) == 64
    plain = timm.create_model("resnet18", pretrained=False, in_chans=13, num_classes=0)
    plain.load_state_dict(load_file(str(target)), strict=True)
    module = PretrainModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True)
    x = torch.randn(4, 13, 32, 32)
    plain.eval(), module.model.eval()
    torch.testing.assert_close(plain(x), module.model.features("optical", x))
    assert main(["export", str(run), "--modality", "lidar", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "it has ['optical', 'sar']" in capsys.readouterr().err


def test_load_backbone_from_every_source(run, tmp_path):
    module = PretrainModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True).eval()
    x = torch.randn(2, 2, 32, 32)
    expected = module.model.features("sar", x)
    main(["export", str(run), "--modality", "sar", "--out", str(tmp_path / "sar.safetensors")])
    # torchgeo's published DeCUR weights are timm state dicts saved with torch.save (classifier keys included)
    state = timm.create_model("resnet18", in_chans=2, num_classes=10).state_dict()
    state.update(load_file(str(tmp_path / "sar.safetensors")))
    torch.save(state, tmp_path / "torchgeo_style.pth")
    for source, kwargs in (
        (tmp_path / "sar.safetensors", {}),
        (tmp_path / "torchgeo_style.pth", {"names": ["sar"]}),
        (run, {"modality": "sar"}),
        (run / "checkpoints" / "last.ckpt", {"modality": "sar"}),
    ):
        encoder = load_backbone(source, in_chans=2, **kwargs).eval()
        torch.testing.assert_close(encoder(x), expected)
    with pytest.raises(WeightsError, match="takes 2 bands, not 3"):
        load_backbone(tmp_path / "sar.safetensors", in_chans=3)
    with pytest.raises(WeightsError, match="say which with modality="):
        load_backbone(run)


# ---- an output never replaces an input, a checkpoint or an earlier export unless asked (issue 39, rule 1) --------


def _digest(path):
    import hashlib

    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}  # fmt: skip


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_export_never_writes_over_the_runs_checkpoint_or_its_own_card(run, tmp_path, capsys):
    ckpt = run / "checkpoints" / "last.ckpt"
    before = _digest(ckpt)
    for out in (ckpt, tmp_path / "sar.json", tmp_path):
        assert main(["export", str(run), "--modality", "sar", "--out", str(out)]) == 1
        assert "FILE.safetensors" in _one_line(capsys)
    assert _digest(ckpt) == before
    for extra in ([], ["--overwrite"]):  # a checkpoint is never replaced, asked or not
        assert main(["export", str(run), "--out", str(ckpt), *extra]) == 1
        assert "is a training checkpoint" in _one_line(capsys) and _digest(ckpt) == before
    assert main(["export", str(run), "--out", str(run), "--overwrite"]) == 1  # asked, but it holds the input
    assert "holds the weights it is written from" in _one_line(capsys) and _digest(ckpt) == before


def test_an_existing_export_is_replaced_only_with_overwrite_and_then_whole(run, tmp_path, capsys):
    single = tmp_path / "sar.safetensors"
    assert main(["export", str(run), "--modality", "sar", "--out", str(single)]) == 0
    first = _digest(single) | _digest(single.with_suffix(".json"))
    assert main(["export", str(run), "--modality", "sar", "--out", str(single)]) == 1
    assert "exists; choose another path or pass --overwrite" in _one_line(capsys)
    assert _digest(single) | _digest(single.with_suffix(".json")) == first
    assert main(["export", str(run), "--modality", "sar", "--out", str(single), "--overwrite"]) == 0

    folder = tmp_path / "export"
    assert main(["export", str(run), "--out", str(folder)]) == 0
    kept = _digest(folder)
    assert main(["export", str(run), "--out", str(folder)]) == 1
    assert "--overwrite" in _one_line(capsys) and _digest(folder) == kept
    assert main(["import", str(single), "--out", str(folder), "--modalities", "sar"]) == 1
    assert "--overwrite" in _one_line(capsys) and _digest(folder) == kept  # the card was not replaced
    assert main(["import", str(folder / "sar.pth"), "--out", str(folder), "--modalities", "sar", "--overwrite"]) == 1
    assert "holds the weights it is written from" in _one_line(capsys) and _digest(folder) == kept
    before = {f.name: load_file(str(f)) for f in folder.glob("*.safetensors")}
    assert main(["export", str(run), "--out", str(folder), "--overwrite"]) == 0
    after = {f.name: load_file(str(f)) for f in folder.glob("*.safetensors")}  # (safetensors orders its header
    assert before.keys() == after.keys()  # metadata at random, so the bytes differ; the tensors may not)
    for name, tensors in before.items():
        assert all(torch.equal(t, after[name][k]) for k, t in tensors.items())
    assert not list(tmp_path.glob(".*"))  # nothing left aside


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_export_leaves_the_previous_one_intact_and_nothing_aside(run, tmp_path, monkeypatch, failure):
    from decur.weights import read_run, write_export

    folder = tmp_path / "export"
    write_export(read_run(run), folder)
    kept = _digest(folder)
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second modality's .pth: half of the export written
            raise failure
        return real(*args, **kwargs)

    real = torch.save
    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(type(failure)):
        write_export(read_run(run), folder, overwrite=True)
    assert _digest(folder) == kept and sorted(p.name for p in tmp_path.iterdir()) == ["export"]
