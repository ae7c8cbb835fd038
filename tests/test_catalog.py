"""The declarations of :mod:`decur.catalog` against their sources, and commands that start without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from decur import catalog

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "lightning", "numpy", "torchmetrics", "segmentation_models_pytorch")


@pytest.mark.parametrize("arch", [a for a in catalog.WIDTHS if not catalog.is_mit(a)])
def test_every_tabled_width_is_timms_num_features(arch: str) -> None:
    assert arch in timm.list_models()
    with torch.device("meta"):
        assert timm.create_model(arch, num_classes=0).num_features == catalog.WIDTHS[arch]


def test_mit_widths_are_segformers_last_stage() -> None:
    from segmentation_models_pytorch.encoders.mix_transformer import mix_transformer_encoders

    for arch in catalog.MIT_ARCHS:
        assert catalog.WIDTHS[arch] == mix_transformer_encoders[arch]["params"]["embed_dims"][-1]


def test_a_name_outside_the_table_is_looked_up_in_timm() -> None:
    catalog.check_arch("resnet200")  # a timm ResNet nobody tabled
    assert catalog.encoder_width("resnet200") == 2048
    for bad in ("resnet19", "convnext_tiny", "vit_small_patch15_224"):
        with pytest.raises(ValueError, match="not supported"):
            catalog.check_arch(bad)


def test_the_methods_name_their_loss_functions() -> None:
    from decur import losses

    for name, method in catalog.METHODS.items():
        assert callable(getattr(losses, method.loss)), name


def _imported_after(*args: str) -> set[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['decur', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('decur', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    return set(ast.literal_eval(out.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["validate", "configs"], ["validate", "configs/transfer_bigearthnet.yaml", "--kind", "transfer"]],
)
def test_help_and_validate_import_no_torch(args: list[str]) -> None:
    """``decur --help`` and ``decur validate`` answer in well under 2 s: nothing heavy before a check needs it."""
    assert _imported_after(*args) == set()
