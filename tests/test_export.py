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
